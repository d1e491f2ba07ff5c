"""The path a new user takes, on generated data: a local teacher with no
size flag, distil, export from the run folder alone, move the folder, load
it with SpeechBrain's ``EncoderClassifier`` and score two files."""

import shutil
import subprocess
import sys
from pathlib import Path

import torch
from recipe_runner import RECIPE_ROWS, REPO, row_id
from speechbrain.inference.speaker import SpeakerRecognition


def test_from_a_local_teacher_to_a_score_of_two_files(
    recipe_runner, tmp_path, monkeypatch
):
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    # 1-2. The row names a local teacher folder and no teacher size.
    assert "--teacher_source=" in row["test_debug_flags"]
    assert "--teacher_channels" not in row["test_debug_flags"]
    run = Path(
        recipe_runner.run(row, name="ecapa_to_small_export", debug=False)
    )
    # No misleading SpeechBrain notes in the run's log.
    log = (run / "log.txt").read_text()
    for note in (
        "torchvision is not available",
        "Load called, but CategoricalEncoder is not empty",
        "expect_len was never called",
    ):
        assert note not in log, note
    # 3. Export from the run folder alone.
    first = tmp_path / "first"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "recipes/VoxCeleb/TRKD/export_student.py"),
            str(run),
            f"--export_folder={first}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Exported the model to {first}" in result.stderr
    # 4. Move it.
    shutil.copytree(first, tmp_path / "shipped" / "student")
    shutil.rmtree(first)
    monkeypatch.chdir(tmp_path / "shipped")
    # 5. Load it, from a relative path.
    verifier = SpeakerRecognition.from_hparams(
        source="student", savedir=str(tmp_path / "loaded")
    )
    # 6. Score two files.
    wavs = sorted(Path(recipe_runner.values["data_folder"]).rglob("*.wav"))
    score, same = verifier.verify_files(str(wavs[0]), str(wavs[-1]))
    assert score.shape == (1,) and -1.0 <= score.item() <= 1.0
    assert same.dtype == torch.bool
    # The cards say what the weights are, and the names follow the sizes.
    card = (tmp_path / "shipped" / "student" / "README.md").read_text()
    assert "# ecapa16: a distilled speaker encoder" in card
    assert "| channels | 16 |" in card
    teacher = recipe_runner.teacher_export("finetune_teacher")
    teacher_card = (Path(teacher) / "README.md").read_text()
    assert "trained from scratch" in teacher_card
    assert "| channels | 32 |" in teacher_card
