"""The teacher-signal report: its figures against direct computations, and
the recipe script on a generated corpus, from the online teacher and from
an augmented teacher cache."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from recipe_runner import RECIPE_ROWS, row_id

from speechbrain_trkd.losses import kd_loss
from speechbrain_trkd.teacher_signal import (
    kd_term_sizes,
    posterior_statistics,
    signal_rows,
)
from speechbrain_trkd.training_run import run_script

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes/VoxCeleb/TRKD"


def test_posterior_statistics_match_a_direct_computation():
    """p_target, the non-target entropy, the 95 % class count and the
    confusion-set sizes, against numpy on random logits."""
    generator = torch.Generator().manual_seed(0)
    logits = 6 * torch.randn(20, 40, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 40, (20,), generator=generator)
    stats = posterior_statistics(logits, targets, 2.0, [0.5, 0.1])
    for i in range(20):
        z = logits[i].numpy() / 2.0
        p = np.exp(z - z.max())
        p /= p.sum()
        y = int(targets[i])
        assert stats["p_target"][i] == pytest.approx(p[y], rel=1e-9)
        q = np.delete(p, y) / (1 - p[y])
        assert stats["nontarget_entropy"][i] == pytest.approx(
            -(q * np.log(q)).sum(), rel=1e-9
        )
        ranked = np.sort(q)[::-1].cumsum()
        assert stats["classes_95"][i] == np.searchsorted(ranked, 0.95) + 1
        for tau in (0.5, 0.1):
            assert stats[f"conf_size@{tau:g}"][i] == (
                np.searchsorted(ranked, tau) + 1
            )


def test_kd_ratio_is_the_weighted_term_over_the_aam_loss():
    """The reported KD / AAM ratio is kd_weight x the KD loss / AAM, and
    a larger temperature lowers the target probability."""
    generator = torch.Generator().manual_seed(1)
    teacher = torch.rand(16, 30, generator=generator) * 2 - 1
    student = torch.rand(16, 30, generator=generator) * 0.1
    targets = torch.arange(16) % 30
    teacher[torch.arange(16), targets] = 1.0  # a teacher that is right
    rows = signal_rows(
        teacher, student, targets, 10.0, [1.0, 4.0], [0.0], [1.0], 0.3
    )
    expected = kd_loss(30 * student, 30 * teacher, temperature=4.0)
    assert rows[1]["kd/aam"] == pytest.approx(0.3 * float(expected) / 10.0)
    assert rows[1]["p_target"] < rows[0]["p_target"]
    terms = kd_term_sizes(
        30 * student, 30 * teacher, targets, 1.0, [1.0], {"trkd": {}}
    )
    assert terms["trkd_conf@1"] > 0 and terms["dkd_nontarget"] > 0


@pytest.mark.parametrize("cached", [False, True])
def test_the_script_reports_a_recipe_teacher(recipe_runner, tmp_path, cached):
    """teacher_signal.py on the generated corpus writes one row per
    (T, margin), with sane figures, a table and a figure."""
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    argv = [
        str(RECIPE_DIR.parents[2] / row["Hparam_file"]),
        *recipe_runner.corpus_flags(row["test_debug_flags"]),
        f"--output_folder={tmp_path / 'run'}",
        "--signal_crops=12",
        "--signal_temperatures=[1, 3]",
        "--signal_margins=[0, 0.2]",
        f"--signal_output={tmp_path / 'signal'}",
    ]
    if cached:
        argv += [
            f"--teacher_cache={tmp_path / 'cache'}",
            "--teacher_cache_augment=True",
            "--wav_augment=null",
        ]
    rows = run_script(RECIPE_DIR / "teacher_signal.py", argv)["rows"]
    assert [(r["temperature"], r["margin"]) for r in rows] == [
        (1.0, 0.0),
        (3.0, 0.0),
        (1.0, 0.2),
        (3.0, 0.2),
    ]
    for cold, warm in (rows[0:2], rows[2:4]):  # softer: flatter
        assert warm["nontarget_entropy"] > cold["nontarget_entropy"]
    for plain, margin in ((rows[0], rows[2]), (rows[1], rows[3])):
        assert margin["p_target"] < plain["p_target"]
    for r in rows:
        assert r["nontarget_entropy"] <= r["uniform_entropy"] + 1e-9
        assert r["uniform_entropy"] == pytest.approx(math.log(6 - 1))
        assert r["kd/aam"] > 0
    with open(tmp_path / "signal" / "teacher_signal.csv") as fin:
        assert len(list(csv.DictReader(fin))) == 4
    table = (tmp_path / "signal" / "teacher_signal.md").read_text()
    assert "| T | margin | top-1 |" in table
    assert ("cache views" in table) == cached
