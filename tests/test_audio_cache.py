"""The decoded corpus: read from memory inside ``reading_from``, from disk
outside, by the plugin's crop and embedding readers alike."""

import os

import pytest
import torch
from speechbrain.dataio import audio_io

from speechbrain_trkd import audio_cache
from speechbrain_trkd.data import read_crop
from speechbrain_trkd.embeddings import compute_embeddings
from speechbrain_trkd.synthetic import make_synthetic_corpus


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
