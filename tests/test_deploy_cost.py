"""The deployment cost benchmark runs end to end on a tiny setting."""

import csv
import sys

import pytest
from recipe_runner import REPO

pytest.importorskip("onnxruntime", reason="needs the deploy extra")
sys.path.insert(0, str(REPO / "benchmarks"))
import deploy_cost  # noqa: E402


def test_tiny_cost_table(tmp_path):
    deploy_cost.main(
        [
            "--models", "ecapa128", "ecapa256",
            "--durations", "0.5", "1",
            "--repeats", "2",
            "--warmup", "0",
            "--threads", "1", "2",
            "--output_folder", str(tmp_path),
        ]
    )  # fmt: skip
    with open(tmp_path / "deploy.csv", newline="") as fin:
        rows = list(csv.DictReader(fin))
    n = len(deploy_cost.BACKENDS)
    assert [(r["model"], r["backend"]) for r in rows[1 : 1 + n]] == [
        ("student ECAPA-128", b) for b in deploy_cost.BACKENDS
    ]
    assert len(rows) == 2 * (1 + 2 * n)  # two thread counts
    assert {r["threads"] for r in rows[: 1 + 2 * n]} == {"1"}
    assert {r["threads"] for r in rows[1 + 2 * n :]} == {"2"}
    assert rows[2 + 2 * n]["latency_0.5s_ratio"] == "1.000"
    assert rows[1]["latency_0.5s_ratio"] == "1.000"  # the reference
    small, large = rows[1], rows[1 + n]
    assert float(small["params_M"]) < float(large["params_M"])
    assert float(small["macs_2s_G"]) < float(large["macs_2s_G"])
    for int8 in rows[3], rows[4]:  # dynamic, static
        assert float(int8["size_MB"]) < float(rows[2]["size_MB"])
    assert all(float(r["latency_1s_ms"]) > 0 for r in rows)
    text = (tmp_path / "deploy.md").read_text()
    assert "python benchmarks/deploy_cost.py --models ecapa128" in text
    assert "| student ECAPA-256 | onnx_int8 | 1 |" in text
    assert "| student ECAPA-256 | onnx_waveform | 2 |" in text
