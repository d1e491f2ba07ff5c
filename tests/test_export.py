"""An exported student loads with SpeechBrain's EncoderClassifier."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recipe_runner import RECIPE_ROWS, REPO, row_id
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.inference.speaker import EncoderClassifier
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier

from speechbrain_trkd.export import export_model


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


def _export(folder, label_file, channels=8):
    """An untrained ECAPA-TDNN exported by the recipe's export_model."""
    embedding_model = ECAPA_TDNN(
        80, channels=[channels] * 4 + [3 * channels], lin_neurons=16
    )
    export_model(
        embedding_model,
        Classifier(16, out_neurons=2),
        str(label_file),
        "models/ecapa.yaml",
        {"channels": channels, "emb_dim": 16, "out_n_neurons": 2},
        str(folder),
        {"title": "A test", "description": "Untrained."},
    )
    return embedding_model


def test_a_moved_export_loads_from_wherever_it_is(tmp_path, monkeypatch):
    """hyperparams.yaml names no folder: a copy loads after the original is
    deleted, from an absolute and from a relative path, with no override
    (before, its absolute pretrained_path failed with HFValidationError)."""
    labels = CategoricalEncoder()
    labels.update_from_iterable(["spk1", "spk2"])
    labels.save(tmp_path / "label_encoder.txt")
    embedding_model = _export(
        tmp_path / "first", tmp_path / "label_encoder.txt"
    )
    assert (
        "pretrained_path"
        not in (tmp_path / "first/hyperparams.yaml").read_text()
    )
    shutil.copytree(tmp_path / "first", tmp_path / "elsewhere" / "copy")
    shutil.rmtree(tmp_path / "first")
    monkeypatch.chdir(tmp_path / "elsewhere")
    for source in (str(tmp_path / "elsewhere" / "copy"), "copy"):
        encoder = EncoderClassifier.from_hparams(
            source=source, savedir=str(tmp_path / "loaded" / source[-4:])
        )
        loaded = encoder.mods.embedding_model.state_dict()
        for name, value in embedding_model.state_dict().items():
            assert torch.equal(loaded[name], value), (source, name)
        _, _, _, decoded = encoder.classify_batch(torch.randn(1, 16000))
        assert decoded[0] in ("spk1", "spk2")


def test_a_card_says_what_the_weights_are_and_edits_survive(tmp_path):
    """The card states the architecture, sizes and parameter count; a
    re-export keeps a card the user edited and writes the new one beside
    it (before, the edit and its metrics were overwritten)."""
    labels = CategoricalEncoder()
    labels.update_from_iterable(["spk1", "spk2"])
    labels.save(tmp_path / "label_encoder.txt")
    model = _export(tmp_path / "out", tmp_path / "label_encoder.txt")
    card = (tmp_path / "out" / "README.md").read_text()
    count = sum(p.numel() for p in model.parameters())
    assert "| architecture | ECAPA_TDNN |" in card
    assert "| channels | 8 |" in card
    assert f"| embedding model parameters | {count:,} |" in card
    _export(tmp_path / "out", tmp_path / "label_encoder.txt")
    assert not (tmp_path / "out" / "README.new.md").exists()
    edited = card.replace("Untrained.", "Untrained, and my own notes.")
    (tmp_path / "out" / "README.md").write_text(edited)
    _export(tmp_path / "out", tmp_path / "label_encoder.txt", channels=16)
    assert (tmp_path / "out" / "README.md").read_text() == edited
    assert (
        "| channels | 16 |" in (tmp_path / "out" / "README.new.md").read_text()
    )


def test_a_recipe_file_other_than_the_run_is_refused_naming_the_key(
    recipe_runner,
):
    """The recipe file with only --output_folder (the run was trained at
    --student_channels=16) is refused naming the key, not a raw size
    mismatch of fc.conv.weight."""
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    run = Path(
        recipe_runner.run(row, name="ecapa_to_small_export", debug=False)
    )
    command = [
        sys.executable,
        str(REPO / "recipes/VoxCeleb/TRKD/export_student.py"),
        str(REPO / "recipes/VoxCeleb/TRKD/hparams/ecapa_to_small.yaml"),
        f"--data_folder={recipe_runner.values['data_folder']}",
        f"--output_folder={run}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0
    assert "student_channels: 16 -> 512" in result.stderr
    assert f"export_student.py {run}" in result.stderr
    assert "size mismatch" not in result.stderr


def test_a_failed_export_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    """A full disk half-way through an export (the second weights file)
    leaves the earlier export untouched and nothing beside it; before, it
    left a .tmp file and a folder of new and old files."""
    labels = CategoricalEncoder()
    labels.update_from_iterable(["spk1", "spk2"])
    labels.save(tmp_path / "label_encoder.txt")
    folder = tmp_path / "exports" / "student"
    _export(folder, tmp_path / "label_encoder.txt")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    saves, real_save = [], torch.save

    def full_disk(state, path):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(28, "No space left on device")
        real_save(state, path)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="the folder is as it was"):
        _export(folder, tmp_path / "label_encoder.txt", channels=16)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["student"]


def test_a_resnet_folder_loads_with_the_sizes_its_weights_hold(tmp_path):
    """``load_pretrained_encoder(architecture="resnet")`` reads a ResNet's
    channels and blocks from its weights, as an ECAPA's (no sizes given)."""
    from speechbrain.lobes.models.ResNet import Classifier as ResNetHead
    from speechbrain.lobes.models.ResNet import ResNet

    from speechbrain_trkd.pretrained import load_pretrained_encoder

    model = ResNet(
        80, channels=[4, 8, 8, 16], block_sizes=[1, 2, 1, 1], lin_neurons=12
    )
    torch.save(model.state_dict(), tmp_path / "embedding_model.ckpt")
    head = ResNetHead(12, out_neurons=3)
    torch.save(head.state_dict(), tmp_path / "classifier.ckpt")
    encoder = load_pretrained_encoder(str(tmp_path), "cpu", "resnet")
    loaded = encoder.mods.embedding_model.state_dict()
    assert loaded.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded[name], value), name
