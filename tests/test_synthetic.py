"""Tests of the synthetic VoxCeleb-layout speaker corpus."""

import csv
import glob
import os

import numpy as np
import pytest
import soundfile as sf

from speechbrain_trkd.synthetic import OPTIONS_FILE, make_synthetic_corpus
from speechbrain_trkd.synthetic_voice import draw_speaker_traits

SMALL = dict(
    n_train_speakers=3,
    n_dev_speakers=3,
    sessions_per_speaker=2,
    utterances_per_session=2,
    duration=(1.0, 1.5),
    trials_per_utterance=2,
    seed=7,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small corpus shared by the read-only tests."""
    return make_synthetic_corpus(
        str(tmp_path_factory.mktemp("corpus")), **SMALL
    )


def _files(folder):
    """Relative path -> bytes of every file the generator wrote."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, folder)] = handle.read()
    return out


def _read_trials(corpus):
    with open(corpus.trial_file, encoding="utf-8") as handle:
        return [line.split() for line in handle]


def test_layout_and_audio(corpus):
    paths = sorted(glob.glob(os.path.join(corpus.folder, "wav", "*")))
    speakers = [os.path.basename(p) for p in paths]
    assert speakers == list(corpus.train_speakers + corpus.dev_speakers)
    files = sorted(glob.glob(os.path.join(corpus.folder, "wav", "*/*/*.wav")))
    assert len(files) == corpus.n_utterances == 6 * 2 * 2
    total = 0.0
    for path in files:
        info = sf.info(path)
        assert info.samplerate == 16000
        assert info.channels == 1
        assert info.subtype == "PCM_16"
        assert 1.0 <= info.duration <= 1.5
        total += info.duration
        audio, _ = sf.read(path)
        assert np.all(np.isfinite(audio))
        assert 0.2 < np.max(np.abs(audio)) <= 1.0
    assert total == pytest.approx(corpus.total_seconds, abs=0.01)
    rel = os.path.relpath(files[0], os.path.join(corpus.folder, "wav"))
    assert rel.split(os.sep) == ["spk0001", "ses01", "00001.wav"]


def test_speakers_csv(corpus):
    path = os.path.join(corpus.folder, "speakers.csv")
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["speaker"] for r in rows] == list(
        corpus.train_speakers + corpus.dev_speakers
    )
    roles = {r["speaker"]: r["role"] for r in rows}
    assert all(roles[s] == "train" for s in corpus.train_speakers)
    assert all(roles[s] == "dev" for s in corpus.dev_speakers)
    for column in ("f0_mean", "formant_scale", "tilt", "jitter"):
        values = [float(r[column]) for r in rows]
        assert len(set(values)) == len(rows), column


def test_trials_well_formed(corpus):
    trials = _read_trials(corpus)
    assert len(trials) == corpus.n_trials
    wav = os.path.join(corpus.folder, "wav")
    dev = set(corpus.dev_speakers)
    pairs = set()
    for fields in trials:
        assert len(fields) == 3
        label, enrol, test = fields
        assert label in ("0", "1")
        assert enrol != test
        assert os.path.isfile(os.path.join(wav, enrol))
        assert os.path.isfile(os.path.join(wav, test))
        enrol_spk, test_spk = enrol.split("/")[0], test.split("/")[0]
        assert {enrol_spk, test_spk} <= dev
        assert (label == "1") == (enrol_spk == test_spk)
        pairs.add((enrol, test))
    assert len(pairs) == len(trials)
    labels = [fields[0] for fields in trials]
    assert labels.count("1") == labels.count("0")
    # Every dev utterance is enrolled, with targets from other sessions.
    enrolled = {fields[1] for fields in trials}
    assert len(enrolled) == 3 * 2 * 2
    for label, enrol, test in trials:
        if label == "1":
            assert enrol.split("/")[1] != test.split("/")[1]


def test_dev_speakers_never_in_training(corpus):
    in_trials = {
        path.split("/")[0]
        for fields in _read_trials(corpus)
        for path in fields[1:]
    }
    on_disk = set(os.listdir(os.path.join(corpus.folder, "wav")))
    assert in_trials == set(corpus.dev_speakers)
    assert on_disk - in_trials == set(corpus.train_speakers)


def test_deterministic(tmp_path, corpus):
    again = make_synthetic_corpus(str(tmp_path / "again"), **SMALL)
    first, second = _files(corpus.folder), _files(again.folder)
    assert first.keys() == second.keys()
    for name in first:
        if name != OPTIONS_FILE:  # it records its own folder
            assert first[name] == second[name], name
    other = make_synthetic_corpus(
        str(tmp_path / "other"), **{**SMALL, "seed": 8}
    )
    third = _files(other.folder)
    name = os.path.join("wav", "spk0001", "ses01", "00001.wav")
    assert third[name] != first[name]


def test_speaker_traits_independent_of_corpus_size():
    a = draw_speaker_traits("x", "train", seed=3, index=5)
    b = draw_speaker_traits("x", "train", seed=3, index=5)
    c = draw_speaker_traits("x", "train", seed=3, index=6)
    assert a == b
    assert a.f0_mean != c.f0_mean
    with pytest.raises(ValueError, match="role"):
        draw_speaker_traits("x", "test", seed=0)


def _f0_estimate(audio, rate):
    """Median autocorrelation pitch of the loudest 40 ms frames."""
    size = int(0.04 * rate)
    frames = np.lib.stride_tricks.sliding_window_view(audio, size)
    frames = frames[:: size // 2]
    energy = np.mean(frames**2, axis=1)
    frames = frames[energy > np.percentile(energy, 60)]
    frames = frames - frames.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(frames, 2 * size)) ** 2
    autocorr = np.fft.irfft(power)[:, :size]
    low, high = int(rate / 500), int(rate / 60)
    lags = low + np.argmax(autocorr[:, low:high], axis=1)
    return float(np.median(rate / lags))


def test_pitch_follows_speaker_traits(tmp_path):
    corpus = make_synthetic_corpus(
        str(tmp_path / "pitch"),
        n_train_speakers=8,
        n_dev_speakers=2,
        sessions_per_speaker=1,
        utterances_per_session=2,
        duration=(1.5, 1.5),
        trials_per_utterance=1,
        seed=11,
    )
    with open(os.path.join(corpus.folder, "speakers.csv")) as handle:
        rows = list(csv.DictReader(handle))
    declared, measured = [], []
    for row in rows:
        pattern = os.path.join(corpus.folder, "wav", row["speaker"], "*/*")
        estimates = [
            _f0_estimate(*sf.read(p)) for p in sorted(glob.glob(pattern))
        ]
        declared.append(float(row["f0_mean"]))
        measured.append(np.median(estimates))
    declared, measured = np.log(declared), np.log(measured)
    assert np.ptp(declared) > np.log(1.3)  # the voices really differ
    assert np.corrcoef(declared, measured)[0, 1] > 0.8


def test_reuse_same_options_and_regenerate(tmp_path):
    options = {**SMALL, "n_train_speakers": 1, "n_dev_speakers": 2}
    folder = str(tmp_path / "c")
    first = make_synthetic_corpus(folder, **options)
    wav = os.path.join(folder, "wav", "spk0001", "ses01", "00001.wav")
    stamp = os.stat(wav).st_mtime_ns
    again = make_synthetic_corpus(folder, **options)
    assert again == first
    assert os.stat(wav).st_mtime_ns == stamp
    bigger = make_synthetic_corpus(folder, **{**options, "n_dev_speakers": 3})
    assert len(bigger.dev_speakers) == 3
    assert len(os.listdir(os.path.join(folder, "wav"))) == 4


def test_foreign_folder_is_not_overwritten(tmp_path):
    os.makedirs(tmp_path / "wav" / "someone")
    with pytest.raises(FileExistsError, match="did not write"):
        make_synthetic_corpus(str(tmp_path), **SMALL)
    assert os.path.isdir(tmp_path / "wav" / "someone")


def test_other_sample_rate(tmp_path):
    corpus = make_synthetic_corpus(
        str(tmp_path / "narrow"),
        **{**SMALL, "n_train_speakers": 1, "sample_rate": 8000},
    )
    path = glob.glob(os.path.join(corpus.folder, "wav", "*/*/*.wav"))[0]
    audio, rate = sf.read(path)
    assert rate == 8000 and np.all(np.isfinite(audio))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"n_train_speakers": 0}, "n_train_speakers"),
        ({"n_dev_speakers": 1}, "n_dev_speakers"),
        ({"sessions_per_speaker": 1, "utterances_per_session": 1}, "2 utt"),
        ({"duration": (2.0, 1.0)}, "duration"),
        ({"sample_rate": 4000}, "sample_rate"),
        ({"snr_db": (30.0, 5.0)}, "snr_db"),
        ({"trials_per_utterance": 0}, "trials_per_utterance"),
    ],
)
def test_bad_options(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic_corpus(str(tmp_path), **{**SMALL, **bad})
