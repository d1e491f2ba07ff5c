"""Tests of the VoxCeleb data preparation (recipes/VoxCeleb/TRKD)."""

import csv
import functools
import http.server
import importlib.util
import math
import os
import pathlib
import re
import shutil
import threading

import pytest
import soundfile as sf
from speechbrain.utils.distributed import run_on_main

from speechbrain_trkd import trials as trial_files
from speechbrain_trkd.synthetic import make_synthetic_corpus

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OPENSPK = SHARED / "data" / "openspk"

_spec = importlib.util.spec_from_file_location(
    "voxceleb_prepare",
    REPO / "recipes" / "VoxCeleb" / "TRKD" / "voxceleb_prepare.py",
)
prep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prep)

COLUMNS = ["ID", "duration", "wav", "start", "stop", "spk_id"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four training and three dev speakers, 2 x 2 utterances each."""
    return make_synthetic_corpus(
        str(tmp_path_factory.mktemp("corpus")),
        n_train_speakers=4,
        n_dev_speakers=3,
        sessions_per_speaker=2,
        utterances_per_session=2,
        duration=(2.2, 3.4),
        trials_per_utterance=1,
        seed=3,
    )


def _read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def _trials(path):
    with open(path, encoding="utf-8") as handle:
        return [line.split() for line in handle if line.strip()]


def test_csv_content(corpus, tmp_path):
    paths = prep.prepare_voxceleb(
        corpus.folder, str(tmp_path), corpus.trial_file, seg_dur=1.0
    )
    assert set(paths) == {"train", "dev", "enrol", "test"}
    train, dev = _read(paths["train"]), _read(paths["dev"])
    wav_root = os.path.join(corpus.folder, "wav")
    for row in train + dev:
        assert os.path.isabs(row["wav"]) and os.path.isfile(row["wav"])
        start, stop = int(row["start"]), int(row["stop"])
        assert stop - start == 16000  # every utterance is >= 2.2 s
        assert float(row["duration"]) == pytest.approx(1.0)
        assert stop <= sf.info(row["wav"]).frames
        rel = os.path.relpath(row["wav"], wav_root).replace(os.sep, "/")
        assert row["spk_id"] == rel.split("/")[0]
        assert row["ID"] == f"{os.path.splitext(rel)[0]}_{start}_{stop}"
    ids = [row["ID"] for row in train + dev]
    assert len(set(ids)) == len(ids)
    # Train and dev segments tile each utterance's whole seconds.
    for utterance in {row["wav"] for row in train + dev}:
        starts = sorted(
            int(row["start"]) for row in train + dev if row["wav"] == utterance
        )
        n_full = sf.info(utterance).frames // 16000
        assert starts == [i * 16000 for i in range(n_full)]

    trials = _trials(corpus.trial_file)
    for split, column in (("enrol", 1), ("test", 2)):
        rows = _read(paths[split])
        assert sorted(row["ID"] for row in rows) == sorted(
            {fields[column] for fields in trials}
        )
        for row in rows:
            assert row["wav"] == os.path.join(wav_root, row["ID"])
            assert int(row["start"]) == 0
            assert int(row["stop"]) == sf.info(row["wav"]).frames
            assert row["spk_id"] == row["ID"].split("/")[0]


def test_trial_speakers_excluded_from_training(corpus, tmp_path):
    paths = prep.prepare_voxceleb(
        corpus.folder, str(tmp_path), corpus.trial_file, seg_dur=1.0
    )
    train_spk = {row["spk_id"] for row in _read(paths["train"])}
    dev_spk = {row["spk_id"] for row in _read(paths["dev"])}
    assert train_spk == set(corpus.train_speakers)
    assert dev_spk <= train_spk
    assert not train_spk & set(corpus.dev_speakers)


def test_split_ratio(corpus, tmp_path):
    paths = prep.prepare_voxceleb(
        corpus.folder,
        str(tmp_path / "a"),
        corpus.trial_file,
        splits=["train", "dev"],
        split_ratio=[70, 30],
        seg_dur=0.5,
        min_dur=0.5,
    )
    assert set(paths) == {"train", "dev"}
    assert not os.path.exists(tmp_path / "a" / "enrol.csv")
    train, dev = _read(paths["train"]), _read(paths["dev"])
    for speaker in corpus.train_speakers:
        n_train = sum(row["spk_id"] == speaker for row in train)
        n_dev = sum(row["spk_id"] == speaker for row in dev)
        total = n_train + n_dev
        assert total >= 16  # 4 utterances of >= 2.2 s in 0.5 s segments
        assert n_dev == math.floor(0.3 * total + 0.5)
    paths = prep.prepare_voxceleb(
        corpus.folder,
        str(tmp_path / "b"),
        corpus.trial_file,
        splits=["train", "dev"],
        split_ratio=[100, 0],
        seg_dur=0.5,
        min_dur=0.5,
    )
    assert _read(paths["dev"]) == []
    assert len(_read(paths["train"])) == len(train) + len(dev)


def test_short_utterances(corpus, tmp_path):
    # seg_dur longer than every utterance: each becomes one whole segment,
    # unless it is shorter than min_dur.
    paths = prep.prepare_voxceleb(
        corpus.folder,
        str(tmp_path / "whole"),
        corpus.trial_file,
        splits=["train"],
        seg_dur=4.0,
        min_dur=1.0,
    )
    rows = _read(paths["train"])
    assert len(rows) == 4 * 4
    for row in rows:
        assert int(row["start"]) == 0
        assert int(row["stop"]) == sf.info(row["wav"]).frames
    paths = prep.prepare_voxceleb(
        corpus.folder,
        str(tmp_path / "none"),
        corpus.trial_file,
        splits=["train"],
        seg_dur=4.0,
        min_dur=3.9,
    )
    assert _read(paths["train"]) == []


def test_skip_when_same_options_redo_when_different(corpus, tmp_path):
    kwargs = dict(
        data_folder=corpus.folder,
        save_folder=str(tmp_path),
        verification_lists=corpus.trial_file,
        seg_dur=1.0,
    )
    paths = prep.prepare_voxceleb(**kwargs)
    stamps = {k: os.stat(p).st_mtime_ns for k, p in paths.items()}
    prep.prepare_voxceleb(**kwargs)
    assert {k: os.stat(p).st_mtime_ns for k, p in paths.items()} == stamps
    # A data folder written differently (trailing slash) is the same option.
    prep.prepare_voxceleb(**{**kwargs, "data_folder": corpus.folder + "/"})
    assert os.stat(paths["train"]).st_mtime_ns == stamps["train"]

    prep.prepare_voxceleb(**{**kwargs, "seg_dur": 0.5, "min_dur": 0.5})
    rows = _read(paths["train"])
    assert all(int(r["stop"]) - int(r["start"]) == 8000 for r in rows)
    # A missing output is redone even with the same options.
    os.remove(paths["test"])
    prep.prepare_voxceleb(**{**kwargs, "seg_dur": 0.5, "min_dur": 0.5})
    assert os.path.isfile(paths["test"])
    # skip_prep does nothing at all.
    shutil.rmtree(tmp_path)
    out = prep.prepare_voxceleb(**kwargs, skip_prep=True)
    assert out == paths and not tmp_path.exists()


def test_run_on_main(corpus, tmp_path):
    paths = run_on_main(
        prep.prepare_voxceleb,
        kwargs={
            "data_folder": corpus.folder,
            "save_folder": str(tmp_path),
            "verification_lists": [corpus.trial_file],
            "seg_dur": 1.0,
        },
    )
    assert os.path.isfile(paths["train"])


def _second_corpus(corpus, folder):
    """Copies two training speakers of `corpus` under new names."""
    for index, speaker in enumerate(corpus.train_speakers[:2]):
        shutil.copytree(
            os.path.join(corpus.folder, "wav", speaker),
            os.path.join(folder, "wav", f"extra{index}"),
        )
    return str(folder)


def test_multiple_folders(corpus, tmp_path):
    other = _second_corpus(corpus, tmp_path / "vox2")
    single = prep.prepare_voxceleb(
        corpus.folder, str(tmp_path / "one"), corpus.trial_file, seg_dur=1.0
    )
    n_single = len(_read(single["train"]))
    for index, folders in enumerate(
        [f"{corpus.folder},{other}", [corpus.folder, other]]
    ):
        paths = prep.prepare_voxceleb(
            folders, str(tmp_path / f"p{index}"), corpus.trial_file, seg_dur=1
        )
        train = _read(paths["train"])
        speakers = {row["spk_id"] for row in train}
        assert speakers == set(corpus.train_speakers) | {"extra0", "extra1"}
        assert sum(r["wav"].startswith(other) for r in train) > 0
        assert len(train) > n_single
    # The same corpus twice: every utterance would be duplicated.
    with pytest.raises(ValueError, match="Two audio files"):
        prep.prepare_voxceleb(
            [corpus.folder, corpus.folder],
            str(tmp_path / "dup"),
            [corpus.trial_file],
        )


def test_url_verification_list(corpus, tmp_path):
    listed = tmp_path / "lists" / "veri_test2.txt"
    listed.parent.mkdir()
    shutil.copy(corpus.trial_file, listed)
    save = tmp_path / "save"
    paths = prep.prepare_voxceleb(
        corpus.folder, str(save), listed.as_uri(), seg_dur=1.0
    )
    downloaded = save / "veri_test2.txt"
    assert downloaded.read_text() == listed.read_text()
    local = prep.prepare_voxceleb(
        corpus.folder, str(tmp_path / "local"), str(listed), seg_dur=1.0
    )
    for split in paths:
        assert _read(paths[split]) == _read(local[split])
    with pytest.raises(FileNotFoundError, match="Could not download"):
        prep.fetch_verification_list(
            (tmp_path / "nowhere.txt").as_uri(), str(tmp_path / "x")
        )
    with pytest.raises(ValueError, match="both be downloaded"):
        prep.prepare_voxceleb(
            corpus.folder,
            str(tmp_path / "clash"),
            ["file:///a/O.txt", "file:///b/O.txt"],
        )


def test_http_verification_list(tmp_path, monkeypatch):
    """An http list comes through a local server; a failed or interrupted
    download names the URL and leaves no file to be taken for the list."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "O.txt").write_text("1 a/b/1.wav a/c/2.wav\n")
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(served)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    save = tmp_path / "save"
    try:
        local = prep.fetch_verification_list(f"{base}/O.txt", str(save))
        assert pathlib.Path(local).read_text() == "1 a/b/1.wav a/c/2.wav\n"
        with pytest.raises(FileNotFoundError, match=f"{base}/H.txt"):
            prep.fetch_verification_list(f"{base}/H.txt", str(save))
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in save.iterdir()) == ["O.txt"]

    def interrupted(source, dest, **kwargs):
        pathlib.Path(dest).write_text("1 a/b/1.wav")
        raise ConnectionResetError("connection reset")

    monkeypatch.setattr(trial_files, "download_file", interrupted)
    with pytest.raises(
        FileNotFoundError, match=r"connection reset.*--verification_lists="
    ):
        prep.fetch_verification_list(f"{base}/E.txt", str(save))
    assert sorted(p.name for p in save.iterdir()) == ["O.txt"]


def test_extension_fallback(corpus, tmp_path):
    # A list naming .flac files resolves to the .wav files on disk.
    renamed = tmp_path / "flac_list.txt"
    lines = [
        " ".join([f[0], f[1].replace(".wav", ".flac"), f[2]])
        for f in _trials(corpus.trial_file)
    ]
    renamed.write_text("\n".join(lines) + "\n")
    paths = prep.prepare_voxceleb(
        corpus.folder, str(tmp_path / "p"), str(renamed), splits=["enrol"]
    )
    rows = _read(paths["enrol"])
    assert all(r["ID"].endswith(".flac") for r in rows)
    assert all(r["wav"].endswith(".wav") for r in rows)


def test_missing_data_folder(tmp_path):
    missing = str(tmp_path / "no_such_corpus")
    with pytest.raises(FileNotFoundError, match="no_such_corpus does not"):
        prep.prepare_voxceleb(missing, str(tmp_path / "p"), "O.txt")


def test_folder_without_wav(tmp_path, corpus):
    (tmp_path / "bare").mkdir()
    with pytest.raises(FileNotFoundError, match="has no wav/ subfolder"):
        prep.prepare_voxceleb(
            str(tmp_path / "bare"), str(tmp_path / "p"), corpus.trial_file
        )


def test_empty_folder(tmp_path, corpus):
    session = tmp_path / "empty" / "wav" / "id0001" / "sess"
    session.mkdir(parents=True)
    with pytest.raises(ValueError, match="No readable audio file under"):
        prep.prepare_voxceleb(
            str(tmp_path / "empty"), str(tmp_path / "p"), corpus.trial_file
        )
    (session / "00001.m4a").write_bytes(b"\0")
    with pytest.raises(ValueError, match="found only 1 .m4a files"):
        prep.prepare_voxceleb(
            str(tmp_path / "empty"), str(tmp_path / "p"), corpus.trial_file
        )


def test_missing_trial_list(corpus, tmp_path):
    missing = str(tmp_path / "veri_test2.txt")
    with pytest.raises(
        FileNotFoundError,
        match=r"veri_test2.txt not found: .*--verification_lists=\[",
    ):
        prep.prepare_voxceleb(corpus.folder, str(tmp_path / "p"), missing)


def test_trial_names_missing_file(corpus, tmp_path):
    lines = open(corpus.trial_file).read().splitlines()
    lines.insert(2, "0 spk0005/ses01/00001.wav spk0006/ses09/00042.wav")
    broken = tmp_path / "broken.txt"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(FileNotFoundError) as error:
        prep.prepare_voxceleb(corpus.folder, str(tmp_path / "p"), str(broken))
    message = str(error.value)
    assert "broken.txt, line 3" in message
    assert "spk0006/ses09/00042.wav is not on disk" in message


def test_malformed_trial_line(corpus, tmp_path):
    broken = tmp_path / "malformed.txt"
    broken.write_text("1 spk0005/ses01/00001.wav\n")
    with pytest.raises(ValueError, match="malformed.txt, line 1"):
        prep.prepare_voxceleb(corpus.folder, str(tmp_path / "p"), str(broken))


def test_no_training_speaker(corpus, tmp_path):
    every = tmp_path / "all.txt"
    speakers = corpus.train_speakers + corpus.dev_speakers
    every.write_text(
        "".join(
            f"1 {s}/ses01/00001.wav {s}/ses02/00001.wav\n" for s in speakers
        )
        + f"0 {speakers[0]}/ses01/00001.wav {speakers[1]}/ses01/00001.wav\n"
    )
    with pytest.raises(ValueError, match="No training speaker"):
        prep.prepare_voxceleb(corpus.folder, str(tmp_path / "p"), str(every))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"splits": ["train", "eval"]}, "Unknown splits"),
        ({"split_ratio": [90]}, "split_ratio"),
        ({"split_ratio": [0, 0]}, "split_ratio"),
        ({"seg_dur": 0}, "seg_dur"),
        ({"min_dur": 5.0}, "min_dur"),
        ({"verification_lists": []}, "one or more"),
    ],
)
def test_bad_options(corpus, tmp_path, bad, message):
    kwargs = dict(
        data_folder=corpus.folder,
        save_folder=str(tmp_path),
        verification_lists=corpus.trial_file,
    )
    with pytest.raises(ValueError, match=message):
        prep.prepare_voxceleb(**{**kwargs, **bad})


@pytest.mark.skipif(
    not (OPENSPK / "wav").is_dir(),
    reason=f"real corpus not found at {OPENSPK} (shared data absent)",
)
def test_openspk(tmp_path):
    lists = [str(OPENSPK / "trials" / f"{n}.txt") for n in ("O", "H")]
    paths = prep.prepare_voxceleb(str(OPENSPK), str(tmp_path), lists)
    train = _read(paths["train"])
    train_speakers = {row["spk_id"] for row in train}
    assert len(train_speakers) == 450
    with open(OPENSPK / "speakers.csv", encoding="utf-8") as handle:
        roles = {r["speaker"]: r["role"] for r in csv.DictReader(handle)}
    assert train_speakers == {s for s, r in roles.items() if r == "train"}
    assert {row["spk_id"] for row in _read(paths["dev"])} <= train_speakers
    enrol = {row["ID"] for row in _read(paths["enrol"])}
    test = {row["ID"] for row in _read(paths["test"])}
    for path in lists:
        trials = _trials(path)
        assert all(f[1] in enrol and f[2] in test for f in trials)
    dev_speakers = {i.split("/")[0] for i in enrol | test}
    assert dev_speakers == {s for s, r in roles.items() if r == "dev"}


def test_train_folders_restrict_the_training_speakers(corpus, tmp_path):
    """The paper's protocol: trial lists on one root (VoxCeleb1), training
    speakers from another (VoxCeleb2 dev) only; the option is recorded."""
    other = _second_corpus(corpus, tmp_path / "vox2")
    paths = prep.prepare_voxceleb(
        corpus.folder,
        str(tmp_path / "prep"),
        corpus.trial_file,
        seg_dur=1.0,
        train_folders=other,
    )
    train = _read(paths["train"]) + _read(paths["dev"])
    assert {row["spk_id"] for row in train} == {"extra0", "extra1"}
    assert all(row["wav"].startswith(other) for row in train)
    trial_utts = {
        utt for line in _trials(corpus.trial_file) for utt in line[1:]
    }
    assert {row["ID"] for row in _read(paths["test"])} <= trial_utts
    assert all(r["wav"].startswith(corpus.folder) for r in _read(paths["test"]))
    with open(tmp_path / "prep" / prep.OPTIONS_FILE) as handle:
        assert '"train_folders"' in handle.read()
    # Without the option, the options file is as before (no such key).
    plain = prep.prepare_voxceleb(
        corpus.folder, str(tmp_path / "plain"), corpus.trial_file, seg_dur=1.0
    )
    with open(tmp_path / "plain" / prep.OPTIONS_FILE) as handle:
        assert "train_folders" not in handle.read()
    assert {r["spk_id"] for r in _read(plain["train"])} == set(
        corpus.train_speakers
    )


def test_trial_list_needs_both_kinds_of_trial(corpus, tmp_path):
    """A list without target (or without non-target) trials fails at
    preparation, naming it, not after training when the EER is computed."""
    lines = _trials(corpus.trial_file)
    for label in ("0", "1"):
        only = tmp_path / f"only{label}.txt"
        only.write_text(
            "".join(" ".join(t) + "\n" for t in lines if t[0] == label)
        )
        kind = "target" if label == "0" else "non-target"
        with pytest.raises(ValueError, match=rf"only{label}.txt has no {kind}"):
            prep.prepare_voxceleb(
                corpus.folder, str(tmp_path / f"p{label}"), str(only)
            )


def test_wrong_sample_rate_fails_at_preparation(corpus, tmp_path):
    """A training file at another rate is named at preparation."""
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.folder, copy)
    speaker = corpus.train_speakers[0]
    odd = next((copy / "wav" / speaker).rglob("*.wav"))
    data, rate = sf.read(odd)
    sf.write(odd, data, rate // 2)
    with pytest.raises(
        ValueError, match=rf"{odd.name} is sampled at {rate // 2}"
    ):
        prep.prepare_voxceleb(
            str(copy),
            str(tmp_path / "p"),
            str(copy / "trials" / "O.txt"),
            sample_rate=rate,
        )


def test_a_changed_corpus_is_prepared_again(corpus, tmp_path):
    """Files removed from (or added to) the data folder after preparation
    make it run again: a deleted speaker is no longer listed."""
    copy = tmp_path / "corpus"
    shutil.copytree(corpus.folder, copy)
    trials = str(copy / "trials" / "O.txt")
    first = prep.prepare_voxceleb(
        str(copy), str(tmp_path / "p"), trials, split_ratio=[75, 25]
    )
    gone = corpus.train_speakers[0]
    assert gone in {r["spk_id"] for r in _read(first["train"])}
    shutil.rmtree(copy / "wav" / gone)
    again = prep.prepare_voxceleb(
        str(copy), str(tmp_path / "p"), trials, split_ratio=[75, 25]
    )
    assert gone not in {r["spk_id"] for r in _read(again["train"])}
    extra = copy / "wav" / gone / "ses01"
    extra.mkdir(parents=True)
    shutil.copy(next((copy / "wav").rglob("*.wav")), extra / "00001.wav")
    back = prep.prepare_voxceleb(
        str(copy), str(tmp_path / "p"), trials, split_ratio=[75, 25]
    )
    assert gone in {r["spk_id"] for r in _read(back["train"])}


def test_a_corpus_too_small_for_the_split_is_named_at_preparation(
    corpus, tmp_path
):
    """Four segments per speaker and a 10 % dev share leave dev empty: the
    preparation says so with the counts and a split_ratio that works (it
    was "dev.csv has no rows" when the training data was loaded)."""
    with pytest.raises(
        ValueError,
        match=r"dev split is empty.*at most \d+ "
        r"per speaker.*--split_ratio=\[\d+, \d+\]",
    ) as error:
        prep.prepare_voxceleb(
            corpus.folder, str(tmp_path / "p"), corpus.trial_file
        )
    ratio = re.search(r"--split_ratio=\[(\d+), (\d+)\]", str(error.value))
    paths = prep.prepare_voxceleb(
        corpus.folder,
        str(tmp_path / "p"),
        corpus.trial_file,
        split_ratio=[int(ratio[1]), int(ratio[2])],
    )
    assert _read(paths["dev"])
