"""Runs every recipe hparams file for two debug batches on generated data."""

import pytest
from recipe_runner import RECIPE_ROWS, REPO, row_id


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
