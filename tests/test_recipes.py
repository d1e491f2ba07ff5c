"""Runs every recipe hparams file for two debug batches on generated data."""

import pytest
from recipe_runner import RECIPE_ROWS, REPO, TRAIN_TRKD, row_id

from speechbrain_trkd.training_run import run_script


def test_every_hparams_file_has_a_row():
    """Adding an hparams file without a test row fails here."""
    hparams_dir = REPO / "recipes" / "VoxCeleb" / "TRKD" / "hparams"
    on_disk = {p.stem for p in hparams_dir.glob("*.yaml")}
    assert on_disk == {row_id(r) for r in RECIPE_ROWS}


@pytest.mark.parametrize("row", RECIPE_ROWS, ids=row_id)
def test_recipe_debug_run(recipe_runner, row):
    """The row's script runs 2 debug batches and writes its outputs."""
    recipe_runner.run(row)


def test_bf16_distillation(recipe_runner):
    """--precision=bf16 trains the student, teacher included, under autocast."""
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    recipe_runner.run(
        row, name="ecapa_to_small_bf16", extra_flags=("--precision=bf16",)
    )


def test_batch_of_one_fails_at_hparams_load(tmp_path):
    """Training with batch size 1 stops before any data is touched."""
    hparams_file = REPO / "recipes" / "VoxCeleb" / "TRKD" / "hparams"
    with pytest.raises(ValueError, match="batch_size=1: a training batch"):
        run_script(
            TRAIN_TRKD,
            [
                str(hparams_file / "ecapa_to_small.yaml"),
                f"--data_folder={tmp_path}/nothing",
                f"--output_folder={tmp_path}/out",
                "--batch_size=1",
            ],
        )
    assert not (tmp_path / "out" / "train_log.txt").exists()


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--kd_weight=abc", "kd_weight='abc': give a finite number"),
        ("--number_of_epochs=0", "number_of_epochs=0: train at least one"),
        ("--lr=-1", "lr=-1: give a finite number >= 0"),
    ],
)
def test_unusable_numbers_fail_at_hparams_load(tmp_path, flag, message):
    """A number the run cannot use stops it before preparation (no folder
    of prepared data, no teacher), naming the key."""
    hparams_file = REPO / "recipes" / "VoxCeleb" / "TRKD" / "hparams"
    with pytest.raises(ValueError, match=message):
        run_script(
            TRAIN_TRKD,
            [
                str(hparams_file / "ecapa_to_small.yaml"),
                f"--data_folder={tmp_path}/nothing",
                f"--output_folder={tmp_path}/out",
                f"--prep_folder={tmp_path}/prep",
                flag,
            ],
        )
    assert not (tmp_path / "prep").exists()
