"""An exported student loads with SpeechBrain's EncoderClassifier."""

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import torch
from recipe_runner import RECIPE_ROWS, REPO, row_id
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.inference.speaker import EncoderClassifier
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier


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


def test_moved_export_loads_with_a_pretrained_path_override(tmp_path):
    """hyperparams.yaml keeps its !ref to pretrained_path: a folder moved
    (or uploaded) loads with the override the model card documents."""
    spec = importlib.util.spec_from_file_location(
        "export_student", REPO / "recipes/VoxCeleb/TRKD/export_student.py"
    )
    export_student = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_student)
    labels = CategoricalEncoder()
    labels.update_from_iterable(["spk1", "spk2"])
    labels.save(tmp_path / "label_encoder.txt")
    embedding_model = ECAPA_TDNN(80, channels=[8] * 4 + [24], lin_neurons=16)
    folder = export_student.export_model(
        embedding_model,
        Classifier(16, out_neurons=2),
        str(tmp_path / "label_encoder.txt"),
        "models/ecapa.yaml",
        {"channels": 8, "emb_dim": 16, "out_n_neurons": 2},
        str(tmp_path / "first"),
        {"title": "A test", "description": "Untrained."},
    )
    text = (Path(folder) / "hyperparams.yaml").read_text()
    assert "!ref <pretrained_path>/embedding_model.ckpt" in text
    moved = tmp_path / "moved"
    Path(folder).rename(moved)
    encoder = EncoderClassifier.from_hparams(
        source=str(moved),
        savedir=str(tmp_path / "loaded"),
        overrides={"pretrained_path": str(moved)},
    )
    loaded = encoder.mods.embedding_model.state_dict()
    for name, value in embedding_model.state_dict().items():
        assert torch.equal(loaded[name], value), name
