"""A run checkpoint never runs code, whatever the environment says."""

import os
import re

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from recipe_runner import REPO

HPARAMS = REPO / "recipes" / "VoxCeleb" / "TRKD" / "hparams"


class Payload:
    """Unpickling this writes a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize(
    "hparams_file", ["ecapa_to_small.yaml", "finetune_teacher.yaml"]
)
def test_a_poisoned_run_checkpoint_runs_nothing(
    tmp_path, monkeypatch, hparams_file
):
    """With TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, a checkpoint file holding a
    pickle payload is refused by the recipe's checkpointer, naming the
    file, and the payload does not run."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    overrides = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "run"),
        "out_n_neurons": 3,
    }
    overrides.update(
        {"student_channels": 8, "teacher_channels": 8}
        if hparams_file.startswith("ecapa")
        else {"channels": 8, "teacher_source": str(tmp_path)}
    )
    with open(HPARAMS / hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    checkpointer = hparams["checkpointer"]
    checkpoint = checkpointer.save_checkpoint()
    poisoned = checkpoint.paramfiles["classifier"]
    marker = tmp_path / "payload_ran"
    torch.save({"weight": Payload(marker)}, poisoned)
    with pytest.raises(
        ValueError, match=re.escape(f"{poisoned} cannot be loaded")
    ):
        checkpointer.recover_if_possible()
    assert not marker.exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"


def test_a_truncated_run_checkpoint_is_named(tmp_path):
    """A damaged file of a run checkpoint is named by its path."""
    overrides = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "run"),
        "out_n_neurons": 3,
        "student_channels": 8,
        "teacher_channels": 8,
    }
    with open(HPARAMS / "ecapa_to_small.yaml", encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    checkpoint = hparams["checkpointer"].save_checkpoint()
    damaged = checkpoint.paramfiles["embedding_model"]
    with open(damaged, "r+b") as fout:
        fout.truncate(100)
    with pytest.raises(
        ValueError, match=re.escape(f"{damaged} cannot be loaded")
    ):
        hparams["checkpointer"].recover_if_possible()
