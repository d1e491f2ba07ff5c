"""The decoded corpus: read from memory inside ``reading_from``, from disk
outside, by the plugin's crop and embedding readers alike."""

import contextlib
import io
import os

import pytest
import torch
from recipe_runner import TRAIN_TRKD, tiny_student_argv
from speechbrain.dataio import audio_io

from speechbrain_trkd import audio_cache
from speechbrain_trkd.data import read_crop
from speechbrain_trkd.embeddings import compute_embeddings
from speechbrain_trkd.synthetic import make_synthetic_corpus
from speechbrain_trkd.training_run import run_script


@pytest.fixture(scope="module")
def corpus_and_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    corpus = make_synthetic_corpus(
        str(root / "corpus"),
        n_train_speakers=2,
        n_dev_speakers=2,
        sessions_per_speaker=1,
        utterances_per_session=2,
        duration=(1.0, 1.5),
    )
    cache = audio_cache.build_audio_cache(
        corpus.folder, str(root / "cache"), num_workers=1
    )
    files = audio_cache.list_audio_files(corpus.folder)
    return [os.path.join(corpus.folder, f) for f in files], cache


def _refuse_disk(*args, **kwargs):
    raise AssertionError("a cached file was decoded from disk")


def test_cached_files_are_read_from_memory(corpus_and_cache, monkeypatch):
    paths, cache = corpus_and_cache
    direct = read_crop(paths[0], 100, 4100, 16000)
    monkeypatch.setattr(audio_io, "load", _refuse_disk)
    monkeypatch.setattr(audio_io, "info", _refuse_disk)
    with audio_cache.reading_from(cache):
        cached = read_crop(paths[0], 100, 4100, 16000)
        embeddings = compute_embeddings(
            lambda wavs, lens: wavs.abs().mean(1, keepdim=True),
            paths,
            2,
            device="cpu",
        )
    assert (cached - direct).abs().max() <= 0.5 / 32768 + 1e-7
    assert embeddings.shape == (len(paths), 1)
    with pytest.raises(AssertionError, match="decoded from disk"):
        read_crop(paths[0], 100, 4100, 16000)  # the block is closed


def test_files_outside_the_cache_are_read_from_disk(corpus_and_cache, tmp_path):
    _, cache = corpus_and_cache
    other = str(tmp_path / "other.wav")
    audio_io.save(other, 0.1 * torch.ones(1, 1600), 16000)
    with audio_cache.reading_from(cache):
        crop = read_crop(other, 0, 800, 16000)
        assert audio_cache.audio_info(other).format != "cache"
    assert torch.allclose(crop, torch.full((800,), 0.1), atol=1e-4)


def _train_student(corpus, folder, *extra):
    """One epoch of a tiny student on ``corpus``; its final weights."""
    argv = tiny_student_argv(
        corpus, folder, 2, "--number_of_epochs=1", "--num_workers=0", *extra
    )
    with contextlib.redirect_stdout(io.StringIO()):
        brain = run_script(TRAIN_TRKD, argv)["brain"]
    return brain.modules.embedding_model.state_dict()


def test_recipe_option_trains_from_memory_alike(tmp_path, monkeypatch):
    """``--audio_cache``: the recipe decodes the corpus there once, then
    reads every header, crop and trial from memory, and trains the same
    student as from the files (16-bit PCM: the copy is exact)."""
    corpus = make_synthetic_corpus(
        str(tmp_path / "corpus"),
        n_train_speakers=2,
        n_dev_speakers=2,
        sessions_per_speaker=2,
        utterances_per_session=3,
        duration=(1.2, 1.6),
    )
    from_files = _train_student(corpus, tmp_path / "files")
    cache = str(tmp_path / "decoded")
    _train_student(corpus, tmp_path / "first", f"--audio_cache={cache}")
    assert len(audio_cache.AudioCache(cache)) == len(
        audio_cache.list_audio_files(corpus.folder)
    )
    monkeypatch.setattr(audio_io, "load", _refuse_disk)
    monkeypatch.setattr(audio_io, "info", _refuse_disk)
    from_memory = _train_student(
        corpus, tmp_path / "memory", f"--audio_cache={cache}"
    )
    assert from_files.keys() == from_memory.keys()
    for key, value in from_files.items():
        assert torch.equal(value, from_memory[key]), key
