"""Data preparation for VoxCeleb and corpora in its layout.

Reads ``<data_folder>/wav/<speaker>/<session>/<utterance>.<ext>`` (any audio
format soundfile reads: wav, flac, ogg/opus, ...), from one folder or several
(e.g. VoxCeleb1 + VoxCeleb2), and writes SpeechBrain CSV files with the
columns ``ID, duration, wav, start, stop, spk_id``:

- ``train.csv`` / ``dev.csv``: fixed-length segments of the training
  speakers' utterances, ``dev.csv`` holding a share of every training
  speaker's segments for the validation classification error;
- ``enrol.csv`` / ``test.csv``: the whole utterances named by the
  verification lists, with the trial-list path as ``ID``.

Training speakers are the speakers of ``wav/`` that appear in no
verification list (the VoxCeleb convention). Verification lists are the
official VoxCeleb1-O/E/H files (``veri_test2.txt``, ``list_test_all2.txt``,
``list_test_hard2.txt``) or any list in their format, given as paths or URLs.

Download: https://www.robots.ox.ac.uk/~vgg/data/voxceleb/

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import json
import math
import os
import random

import soundfile
from speechbrain.utils.logger import get_logger

from speechbrain_trkd.audio_cache import audio_info
from speechbrain_trkd.trials import (
    as_path_list,
    canonical_source,
    check_distinct_downloads,
    fetch_verification_list,
    read_trials,
)

logger = get_logger(__name__)

OPTIONS_FILE = "prepare_options.json"
CSV_COLUMNS = ["ID", "duration", "wav", "start", "stop", "spk_id"]
SPLIT_FILES = {
    "train": "train.csv",
    "dev": "dev.csv",
    "enrol": "enrol.csv",
    "test": "test.csv",
}
# File extensions soundfile reads (RAW needs explicit parameters: left out).
AUDIO_EXTENSIONS = frozenset(
    {fmt.lower() for fmt in soundfile.available_formats() if fmt != "RAW"}
    | {"opus", "oga", "aif"}
)


def prepare_voxceleb(
    data_folder,
    save_folder,
    verification_lists,
    splits=("train", "dev", "enrol", "test"),
    split_ratio=(90, 10),
    seg_dur=3.0,
    min_dur=1.0,
    random_seed=1234,
    skip_prep=False,
    train_folders=None,
    sample_rate=None,
):
    """Writes the train, dev, enrol and test CSV files of a VoxCeleb corpus.

    Training utterances are cut into consecutive, non-overlapping segments
    of ``seg_dur`` seconds (the remainder shorter than ``seg_dur`` is
    dropped); an utterance shorter than ``seg_dur`` but at least ``min_dur``
    long gives one segment covering all of it. The segments of each
    training speaker are shuffled and shared between train and dev by
    ``split_ratio`` (a speaker's only segment stays in train). ``start`` and
    ``stop`` are sample indices; ``duration`` is in seconds.

    Enrol and test rows are whole utterances (``start`` 0, ``stop`` the
    number of samples) whose ``ID`` is the path written in the trial list
    (relative to ``wav/``), so that scores can be matched to trials. A
    trial path whose file is missing but exists with another audio
    extension (e.g. ``.wav`` in the list, ``.flac`` on disk) resolves to
    that file.

    The work is skipped when ``save_folder`` holds the requested CSV files
    written with the same options (saved in ``prepare_options.json``, with
    a fingerprint of the data folders: file count and total size, so that
    added or removed files make it run again).

    Arguments
    ---------
    data_folder : str or list of str
        Corpus root holding ``wav/``, or several roots as a list or a
        comma-separated string (e.g. ``"/data/vox1,/data/vox2"``).
    save_folder : str
        Folder for the CSV files, the options file and downloaded lists.
    verification_lists : str or list of str
        Trial lists (lines ``label enrol test``, paths relative to
        ``wav/``), each a local path or an http(s)/file URL (downloaded
        into ``save_folder``); several as a list or a comma-separated
        string. Their speakers are excluded from training.
    splits : sequence of str
        Which of ``train``, ``dev``, ``enrol``, ``test`` to write.
    split_ratio : sequence of two numbers
        Relative shares of train and dev segments per training speaker,
        e.g. ``(90, 10)``.
    seg_dur : float
        Length of the training segments in seconds.
    min_dur : float
        Utterances shorter than this (seconds) are left out of training.
    random_seed : int
        Seed of the train/dev shuffle.
    skip_prep : bool
        If True, do nothing and return the CSV paths.
    train_folders : str or list of str, optional
        The roots whose speakers train the model (default: every data
        folder). The paper's VoxCeleb protocol trains on VoxCeleb2 dev
        alone: ``data_folder`` VoxCeleb1 (the trial lists' audio) and
        ``train_folders`` VoxCeleb2 dev. A root here that is not a data
        folder is scanned too.
    sample_rate : int, optional
        When given, every training and trial file must have this rate;
        the first one that does not is named (from the file headers, so
        before any training).

    Returns
    -------
    dict
        Split name to CSV path, for the requested splits.

    Raises
    ------
    FileNotFoundError
        A data folder, its ``wav/`` folder or a verification list is
        missing, or a trial names a file that is not on disk.
    ValueError
        No audio under a data folder, malformed trial lines, bad options or
        no training speaker left.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2,
    ...     n_dev_speakers=2, sessions_per_speaker=2,
    ...     utterances_per_session=1, duration=(1.5, 1.5),
    ...     trials_per_utterance=1)
    >>> paths = prepare_voxceleb(
    ...     corpus.folder, os.path.join(tmp, "prep"), corpus.trial_file,
    ...     seg_dur=1.0, split_ratio=[75, 25])
    >>> sorted(paths)
    ['dev', 'enrol', 'test', 'train']
    >>> open(paths["enrol"]).readline().strip()
    'ID,duration,wav,start,stop,spk_id'
    """
    splits = _check_splits(splits)
    paths = {
        split: os.path.join(save_folder, SPLIT_FILES[split]) for split in splits
    }
    if skip_prep:
        return paths
    sources = as_path_list(verification_lists)
    _check_numbers(split_ratio, seg_dur, min_dur)
    options = {
        "data_folder": [os.path.abspath(f) for f in as_path_list(data_folder)],
        "verification_lists": [canonical_source(s) for s in sources],
        "splits": splits,
        "split_ratio": [float(r) for r in split_ratio],
        "seg_dur": float(seg_dur),
        "min_dur": float(min_dur),
        "random_seed": int(random_seed),
    }
    folders = train_roots = options["data_folder"]
    if train_folders:
        train_roots = [os.path.abspath(f) for f in as_path_list(train_folders)]
        options["train_folders"] = train_roots
        folders = folders + [r for r in train_roots if r not in folders]
    options["corpus"] = corpus_fingerprint(folders)
    if _already_prepared(save_folder, options, paths):
        logger.info(f"Skipping preparation, {save_folder} is up to date")
        return paths

    os.makedirs(save_folder, exist_ok=True)
    # Outdated options must not survive a run that fails half-way.
    if os.path.isfile(os.path.join(save_folder, OPTIONS_FILE)):
        os.remove(os.path.join(save_folder, OPTIONS_FILE))
    audio = scan_audio_files(folders)
    check_distinct_downloads(sources)
    list_files = [fetch_verification_list(s, save_folder) for s in sources]
    trial_files = _trial_utterances(list_files, audio)
    if "train" in splits or "dev" in splits:
        _write_training_csvs(
            paths, audio, train_roots, trial_files, options, sample_rate
        )
    for split in ("enrol", "test"):
        if split in splits:
            rows = [
                _whole_utterance_row(rel, trial_files[rel][0], sample_rate)
                for rel in sorted(trial_files)
                if split in trial_files[rel][1]
            ]
            _write_csv(paths[split], rows)

    with open(
        os.path.join(save_folder, OPTIONS_FILE), "w", encoding="utf-8"
    ) as handle:
        json.dump(options, handle, indent=2)
    return paths


def _write_training_csvs(
    paths, audio, train_roots, trial_files, options, sample_rate
):
    """Writes the train and dev segment CSVs of ``paths``: the audio under
    the training roots of speakers that no trial list names."""
    trial_speakers = {rel.split("/")[0] for rel in trial_files}
    by_speaker = {}
    for rel, path in audio.items():
        speaker = rel.split("/")[0]
        in_train_root = any(
            path.startswith(os.path.join(root, "")) for root in train_roots
        )
        if in_train_root and speaker not in trial_speakers:
            by_speaker.setdefault(speaker, []).append(path)
    if not by_speaker:
        raise ValueError(
            f"No training speaker in {train_roots}: every speaker "
            f"appears in the verification lists {options['verification_lists']}"
        )
    train_share = options["split_ratio"][0] / sum(options["split_ratio"])
    rows = _segment_rows(
        by_speaker,
        options["seg_dur"],
        options["min_dur"],
        train_share,
        options["random_seed"],
        sample_rate,
    )
    if "dev" in paths and not rows[1] and options["split_ratio"][1] > 0:
        raise ValueError(_empty_dev_message(rows[0], options))
    for split, split_rows in zip(("train", "dev"), rows, strict=True):
        if split in paths:
            _write_csv(paths[split], split_rows)
    logger.info(
        f"{len(by_speaker)} training speakers: {len(rows[0])} train "
        f"and {len(rows[1])} dev segments"
    )


def _empty_dev_message(train_rows, options):
    """Why the dev split is empty although split_ratio asks for one, with
    the counts and the values that work.

    Example
    -------
    >>> rows = [["a", "", "", 0, 1, "s1"], ["b", "", "", 0, 1, "s1"]]
    >>> print(_empty_dev_message(rows, {"split_ratio": [90.0, 10.0],
    ...                                 "seg_dur": 3.0}))
    The dev split is empty: 2 segments of 3.0 s from 1 training speakers,
    at most 2 per speaker, and split_ratio [90.0, 10.0] gives a speaker a
    dev segment from 5 segments on. Give --split_ratio=[75, 25], or a
    shorter --seg_dur for more segments.
    """
    per_speaker = {}
    for row in train_rows:
        per_speaker[row[5]] = per_speaker.get(row[5], 0) + 1
    most = max(per_speaker.values(), default=0)
    ratio = options["split_ratio"]
    dev_share = ratio[1] / sum(ratio)
    needed = math.ceil(0.5 / dev_share)
    if most >= 2:
        dev = math.ceil(50 / most)
        advice = f"Give --split_ratio=[{100 - dev}, {dev}], or a shorter "
    else:
        advice = (
            "A speaker needs 2 segments to give one to dev: give a shorter "
        )
    return (
        f"The dev split is empty: {len(train_rows)} segments of "
        f"{options['seg_dur']} s from {len(per_speaker)} training speakers, "
        f"at most {most} per speaker, and split_ratio {ratio} gives a "
        f"speaker a dev segment from {needed} segments on. {advice}"
        "--seg_dur for more segments."
    )


def corpus_fingerprint(data_folders):
    """A cheap fingerprint of the corpus: file count and total size.

    Recorded with the preparation's options, so that files added to or
    removed from a data folder make the preparation run again.

    Arguments
    ---------
    data_folders : list of str
        Corpus roots; their ``wav/`` trees are walked (sizes from ``stat``,
        no file is read).

    Returns
    -------
    dict
        ``{"files": count, "bytes": total size}``.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "wav", "s1", "a"))
    >>> with open(os.path.join(root, "wav", "s1", "a", "u.wav"), "wb") as f:
    ...     _ = f.write(bytes(10))
    >>> corpus_fingerprint([root])
    {'files': 1, 'bytes': 10}
    """
    files = size = 0
    for folder in data_folders:
        for root, _, names in os.walk(os.path.join(folder, "wav")):
            for name in names:
                files += 1
                size += os.stat(os.path.join(root, name)).st_size
    return {"files": files, "bytes": size}


def scan_audio_files(data_folders):
    """Indexes the audio files of one or more VoxCeleb-layout folders.

    Only files at ``wav/<speaker>/<session>/<file>`` with an extension
    soundfile reads are taken.

    Arguments
    ---------
    data_folders : str or list of str
        Corpus roots (a list or a comma-separated string).

    Returns
    -------
    dict
        Path relative to ``wav/`` (``speaker/session/file``, with ``/``) to
        the absolute file path, sorted by relative path.

    Raises
    ------
    FileNotFoundError
        A folder or its ``wav/`` subfolder does not exist.
    ValueError
        A folder holds no readable audio file, or two files have the same
        relative path without extension (in one folder or across folders).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> corpus = make_synthetic_corpus(
    ...     tempfile.mkdtemp(), n_train_speakers=1, n_dev_speakers=2,
    ...     sessions_per_speaker=1, utterances_per_session=2,
    ...     duration=(0.5, 0.5), trials_per_utterance=1)
    >>> list(scan_audio_files(corpus.folder))[:2]
    ['spk0001/ses01/00001.wav', 'spk0001/ses01/00002.wav']
    """
    found = {}
    stems = {}
    for folder in as_path_list(data_folders):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Data folder {folder} does not exist")
        wav_root = os.path.join(folder, "wav")
        if not os.path.isdir(wav_root):
            raise FileNotFoundError(
                f"Data folder {folder} has no wav/ subfolder (expected "
                "<data_folder>/wav/<speaker>/<session>/<utterance>.<ext>)"
            )
        n_found, unreadable = 0, {}
        for speaker in _subfolders(wav_root):
            for session in _subfolders(os.path.join(wav_root, speaker)):
                session_dir = os.path.join(wav_root, speaker, session)
                for entry in os.scandir(session_dir):
                    if not entry.is_file():
                        continue
                    stem, ext = os.path.splitext(entry.name)
                    ext = ext[1:].lower()
                    if ext not in AUDIO_EXTENSIONS:
                        unreadable[ext] = unreadable.get(ext, 0) + 1
                        continue
                    rel = f"{speaker}/{session}/{entry.name}"
                    key = f"{speaker}/{session}/{stem}"
                    if key in stems:
                        raise ValueError(
                            f"Two audio files for utterance {key}: "
                            f"{stems[key]} and {entry.path}"
                        )
                    stems[key] = entry.path
                    found[rel] = os.path.abspath(entry.path)
                    n_found += 1
        if n_found == 0:
            others = ", ".join(
                f"{count} .{ext}" for ext, count in sorted(unreadable.items())
            )
            raise ValueError(
                f"No readable audio file under {wav_root} (expected "
                "wav/<speaker>/<session>/<utterance>.<ext>"
                + (f"; found only {others} files" if others else "")
                + ")"
            )
    return dict(sorted(found.items()))


def _subfolders(folder):
    """Sorted names of the sub-folders of `folder`."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def _check_splits(splits):
    """Validated list of split names."""
    if isinstance(splits, str):
        splits = [splits]
    splits = list(splits)
    unknown = [split for split in splits if split not in SPLIT_FILES]
    if unknown or not splits:
        raise ValueError(
            f"Unknown splits {unknown or splits}: choose among "
            f"{list(SPLIT_FILES)}"
        )
    return splits


def _check_numbers(split_ratio, seg_dur, min_dur):
    """Validates the numeric options."""
    ratio = [float(r) for r in split_ratio]
    if len(ratio) != 2 or min(ratio) < 0 or sum(ratio) <= 0:
        raise ValueError(
            "split_ratio must be two non-negative numbers (train, dev) "
            f"with a positive sum, got {split_ratio}"
        )
    if not seg_dur > 0:
        raise ValueError(f"seg_dur must be positive, got {seg_dur}")
    if not 0 < min_dur <= seg_dur:
        raise ValueError(
            f"min_dur must be in (0, seg_dur={seg_dur}], got {min_dur}"
        )


def _already_prepared(save_folder, options, paths):
    """True when the outputs exist and were made with the same options."""
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if not os.path.isfile(options_path):
        return False
    if not all(os.path.isfile(path) for path in paths.values()):
        return False
    with open(options_path, encoding="utf-8") as handle:
        try:
            saved = json.load(handle)
        except json.JSONDecodeError:
            return False
    return saved == options


def _trial_utterances(list_files, audio):
    """Maps each utterance named by the trial lists to its file and roles.

    Returns a dict: trial path -> (absolute file path, set of roles among
    ``enrol`` and ``test``). Raises FileNotFoundError naming the list, line
    and file for a trial whose utterance is not on disk.
    """
    by_stem = {os.path.splitext(rel)[0]: path for rel, path in audio.items()}
    utterances = {}
    for list_file in list_files:
        trials = read_trials(list_file)
        n_target = int(trials.labels.sum())
        if n_target == 0 or n_target == len(trials.labels):
            kind = "target" if n_target == 0 else "non-target"
            raise ValueError(
                f"{list_file} has no {kind} trial (label "
                f"{1 if n_target == 0 else 0}): an EER needs both kinds"
            )
        for role, names in (("enrol", trials.enrol), ("test", trials.test)):
            for name in names:
                if name in utterances:
                    utterances[name][1].add(role)
                    continue
                path = audio.get(name) or by_stem.get(os.path.splitext(name)[0])
                if path is None:
                    line = _line_number(list_file, name)
                    raise FileNotFoundError(
                        f"{list_file}, line {line}: {name} is not on disk "
                        "(no such file under the wav/ folder of the data "
                        "folders)"
                    )
                utterances[name] = (path, {role})
    return utterances


def _line_number(list_file, name):
    """First line of `list_file` that names utterance `name`."""
    with open(list_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if name in line.split()[1:]:
                return number
    return "?"


def _audio_length(path, sample_rate=None):
    """(number of samples, sample rate) from the file header (or a decoded
    corpus the caller reads from, ``speechbrain_trkd.audio_cache``),
    checking the rate when one is expected."""
    info = audio_info(path)
    if info.frames <= 0:
        raise ValueError(f"Audio file {path} is empty")
    if sample_rate is not None and info.sample_rate != sample_rate:
        raise ValueError(
            f"Audio file {path} is sampled at {info.sample_rate} Hz, the "
            f"recipe expects {sample_rate} Hz (hparam sample_rate): resample "
            "it"
        )
    return info.frames, info.sample_rate


def _segment_rows(
    by_speaker, seg_dur, min_dur, train_share, seed, sample_rate=None
):
    """Cuts the training utterances into segments and splits train/dev."""
    shuffler = random.Random(seed)
    train_rows, dev_rows = [], []
    for speaker in sorted(by_speaker):
        rows = []
        for path in sorted(by_speaker[speaker]):
            n_samples, rate = _audio_length(path, sample_rate)
            seg_len = int(round(seg_dur * rate))
            n_segments = n_samples // seg_len
            if n_segments > 0:
                bounds = [
                    (i * seg_len, (i + 1) * seg_len) for i in range(n_segments)
                ]
            elif n_samples >= min_dur * rate:
                bounds = [(0, n_samples)]
            else:
                continue
            utt_id = _utterance_id(path)
            rows += [
                [
                    f"{utt_id}_{start}_{stop}",
                    f"{(stop - start) / rate:.3f}",
                    path,
                    start,
                    stop,
                    speaker,
                ]
                for start, stop in bounds
            ]
        if not rows:
            logger.warning(
                f"Training speaker {speaker} has no utterance of at least "
                f"{min_dur} s: left out"
            )
            continue
        shuffler.shuffle(rows)
        n_dev = min(
            int(math.floor(len(rows) * (1.0 - train_share) + 0.5)),
            len(rows) - 1,
        )
        dev_rows += rows[:n_dev]
        train_rows += rows[n_dev:]
    # Stable, readable order: by file, then by segment start.
    train_rows.sort(key=lambda row: (row[2], row[3]))
    dev_rows.sort(key=lambda row: (row[2], row[3]))
    return train_rows, dev_rows


def _utterance_id(path):
    """``speaker/session/stem`` of an absolute audio path."""
    stem = os.path.splitext(path)[0]
    return "/".join(stem.replace(os.sep, "/").split("/")[-3:])


def _whole_utterance_row(name, path, sample_rate=None):
    """CSV row of a whole utterance keyed by its trial-list path."""
    n_samples, rate = _audio_length(path, sample_rate)
    speaker = name.split("/")[0]
    return [name, f"{n_samples / rate:.3f}", path, 0, n_samples, speaker]


def _write_csv(path, rows):
    """Writes rows under the SpeechBrain header, atomically."""
    partial = path + ".part"
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    os.replace(partial, path)
    logger.info(f"Wrote {len(rows)} rows to {path}")
