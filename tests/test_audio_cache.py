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
from speechbrain_trkd.run_lock import RunLock
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


def _train_student(corpus, folder, *extra, prep_folder=None):
    """One epoch of a tiny student on ``corpus``; its final weights."""
    argv = tiny_student_argv(
        corpus,
        folder,
        2,
        "--number_of_epochs=1",
        "--num_workers=0",
        *extra,
        prep_folder=prep_folder,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        brain = run_script(TRAIN_TRKD, argv)["brain"]
    return brain.modules.embedding_model.state_dict()


def test_recipe_option_trains_from_memory_alike(tmp_path, monkeypatch):
    """``--audio_cache``: the recipe decodes the corpus there once, then
    reads every crop and trial from memory (the preparation, done before,
    reads headers), and trains the same student as from the files (16-bit
    PCM: the copy is exact)."""
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
        corpus,
        tmp_path / "memory",
        f"--audio_cache={cache}",
        prep_folder=tmp_path / "first" / "prep",
    )
    assert from_files.keys() == from_memory.keys()
    for key, value in from_files.items():
        assert torch.equal(value, from_memory[key]), key


def _small_corpus(folder, seed):
    return make_synthetic_corpus(
        str(folder),
        n_train_speakers=2,
        n_dev_speakers=2,
        sessions_per_speaker=1,
        utterances_per_session=2,
        duration=(1.0, 1.5),
        seed=seed,
    )


def test_several_roots_decode_apart_and_serve_together(tmp_path, monkeypatch):
    """Each root of data_folder and train_folders is decoded once (one
    spelt twice counts once), and one block serves the files of all."""
    first, second = (_small_corpus(tmp_path / f"c{k}", k) for k in (1, 2))
    roots = f"{first.folder},{second.folder}"
    caches = audio_cache.decoded_corpus(
        roots,
        str(tmp_path / "cache"),
        train_folders=os.path.join(second.folder, "."),
    )
    assert len(caches) == 2 and len(os.listdir(tmp_path / "cache")) == 2
    paths = [
        os.path.join(c.folder, f)
        for c in (first, second)
        for f in audio_cache.list_audio_files(c.folder)
    ]
    monkeypatch.setattr(audio_io, "load", _refuse_disk)
    with audio_cache.reading_from(caches):
        crops = [read_crop(path, 0, 800, 16000) for path in paths]
    assert len(crops) == len(paths) and audio_cache._SERVED == []


def test_a_folder_of_another_corpus_or_in_use_is_refused(tmp_path):
    """A cache folder holding another corpus is refused, naming both; a
    build while another holds the folder stops instead of overwriting."""
    first, second = (_small_corpus(tmp_path / f"c{k}", k) for k in (1, 2))
    folder = str(tmp_path / "cache")
    audio_cache.build_audio_cache(first.folder, folder, num_workers=1)
    with pytest.raises(ValueError, match="holds the decoded corpus .*c1"):
        audio_cache.build_audio_cache(second.folder, folder, num_workers=1)
    busy = str(tmp_path / "busy")
    with RunLock(busy):
        with pytest.raises(RuntimeError, match="finish decoding"):
            audio_cache.build_audio_cache(first.folder, busy, num_workers=1)
    with pytest.raises(ValueError, match="is a file"):
        audio_cache.decoded_corpus(first.folder, first.trial_file)
