"""Distillation with DDP: two CPU processes, gloo backend, under torchrun.

SpeechBrain turns BatchNorm into SyncBatchNorm under DDP, which refuses CPU
tensors; DistillationBrain keeps plain BatchNorm on CPU. The teacher stays
out of the DDP wrapping.
"""

import json
import sys
from pathlib import Path

from recipe_runner import RECIPE_ROWS, row_id


def test_torchrun_two_cpu_processes(recipe_runner):
    """A 2-process gloo run trains, checkpoints and scores on rank 0."""
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    output = recipe_runner.run(
        row,
        name="ecapa_to_small_ddp",
        launcher=(
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
        ),
        extra_flags=("--distributed_backend=gloo",),
        debug=False,
    )
    metrics = json.loads((Path(output) / "metrics.json").read_text())
    assert set(metrics) == {"O"}
    checkpoints = list((Path(output) / "save").glob("CKPT*"))
    assert checkpoints, "rank 0 saved no checkpoint"
