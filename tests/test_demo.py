"""The offline demo: reproducible on a machine, and honest about its spread."""

import csv
import filecmp
import os
import sys

RECIPE = os.path.join(
    os.path.dirname(__file__), "..", "recipes", "VoxCeleb", "TRKD"
)
sys.path.insert(0, RECIPE)
import demo  # noqa: E402

TINY = [
    "--synthetic_corpus={n_train_speakers: 6, n_dev_speakers: 3, "
    "sessions_per_speaker: 2, utterances_per_session: 3, "
    "duration: [2.0, 4.5], seed: 1}",
    "--methods=[trkd]",
    "--student_seeds=[1, 2]",
    "--scratch_teacher_overrides={teacher_name: t, pretrainer: null, "
    "freeze_backbone: False, backbone_lr_scale: 1.0, channels: 16, "
    "number_of_epochs: 1, lr: 0.002, lr_final: 0.0002}",
    "--common_overrides={seed: 1, batch_size: 4, num_workers: 0, "
    "sentence_len: 2.0, seg_dur: 2.0, concat_original: False, "
    "verification_backends: [cosine], verification_batch_size: 8}",
]


def run_tiny_demo(folder):
    """Runs the demo on a tiny corpus into ``folder``; returns its runs."""
    student = (
        "--student_overrides={student_name: s, student_channels: 16, "
        f"wav_augment: null, teacher_cache: {folder}/teacher_cache, "
        "number_of_epochs: 1, lr: 0.002, lr_final: 0.0002}"
    )
    hparams = os.path.join(RECIPE, "hparams", "demo.yaml")
    return demo.main([hparams, f"--output_folder={folder}", student] + TINY)


def test_the_demo_repeats_itself_and_reports_the_seed_spread(tmp_path):
    first = run_tiny_demo(str(tmp_path / "first"))
    second = run_tiny_demo(str(tmp_path / "second"))

    def measures(runs):
        return [{k: v for k, v in r.items() if k != "time_s"} for r in runs]

    assert measures(first) == measures(second)
    for seed in ("1", "2"):
        scores = os.path.join("students", "trkd", seed, "scores")
        scores = os.path.join(scores, "O_cosine.txt")
        assert filecmp.cmp(
            tmp_path / "first" / scores,
            tmp_path / "second" / scores,
            shallow=False,
        )
    with open(tmp_path / "first" / "results.csv", newline="") as fin:
        rows = list(csv.DictReader(fin))
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("teacher", "1"),
        ("student trkd", "1"),
        ("student trkd", "2"),
    ]
    table = (tmp_path / "first" / "results.md").read_text()
    student_line = next(
        line for line in table.splitlines() if "student trkd" in line
    )
    assert "| 2 |" in student_line and " ± " in student_line
