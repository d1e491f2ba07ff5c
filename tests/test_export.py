"""An exported student loads with SpeechBrain's EncoderClassifier."""

import shlex
import subprocess
import sys
from pathlib import Path

import torch
from recipe_runner import RECIPE_ROWS, REPO, row_id
from speechbrain.inference.speaker import EncoderClassifier


def test_export_student_loads_with_encoder_classifier(recipe_runner, tmp_path):
    """Train 1 tiny epoch, export, load with from_hparams(source=folder)."""
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    output = Path(
        recipe_runner.run(row, name="ecapa_to_small_export", debug=False)
    )
    export_folder = tmp_path / "exported"
    # The same hparams and overrides as the training run, as a user would.
    hparams_text = (output / "hyperparams.yaml").read_text()
    assert "kd_method: trkd" in hparams_text
    command = [
        sys.executable,
        str(REPO / "recipes/VoxCeleb/TRKD/export_student.py"),
        str(output / "hyperparams.yaml"),
        f"--export_folder={export_folder}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{shlex.join(command)}:\n{result.stderr[-3000:]}"
    )
    for name in (
        "hyperparams.yaml",
        "embedding_model.ckpt",
        "classifier.ckpt",
        "label_encoder.txt",
        "README.md",
    ):
        assert (export_folder / name).is_file(), name

    encoder = EncoderClassifier.from_hparams(
        source=str(export_folder), savedir=str(tmp_path / "loaded")
    )
    saved = torch.load(export_folder / "embedding_model.ckpt")
    loaded = encoder.mods.embedding_model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    wavs = torch.randn(2, 16000)
    assert encoder.encode_batch(wavs).shape == (2, 1, 192)
    _, _, _, labels = encoder.classify_batch(wavs)
    speakers = (output / "save" / "label_encoder.txt").read_text()
    assert all(f"'{label}'" in speakers for label in labels)
