"""Trial lists and score files: where a list comes from (a path, or a URL
fetched once), how it is read and checked, the utterances its trials
index and where their audio is, and the score files written per list and
backend.

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import logging
import os
import urllib.parse
import urllib.request
from typing import NamedTuple

import torch
from speechbrain.utils.data_utils import download_file

from speechbrain_trkd.metrics import as_1d_tensor

logger = logging.getLogger(__name__)


class Trials(NamedTuple):
    """A verification trial list, as read by :func:`read_trials`.

    Attributes
    ----------
    labels : torch.Tensor
        Int64 labels [T]: 1 for target, 0 for non-target.
    enrol : list of str
        Enrolment utterance of each trial (path relative to ``wav/``).
    test : list of str
        Test utterance of each trial (path relative to ``wav/``).

    Example
    -------
    >>> trials = Trials(torch.tensor([1, 0]), ["a/1.wav"] * 2, ["a/2", "b/1"])
    >>> len(trials.enrol)
    2
    """

    labels: torch.Tensor
    enrol: list
    test: list


def read_trials(path):
    """Reads a VoxCeleb-format trial list (lines ``label enrol test``).

    Blank lines are skipped. The label must be ``1`` (target) or ``0``
    (non-target); the two utterances are kept as written (VoxCeleb gives them
    relative to the ``wav/`` folder).

    Arguments
    ---------
    path : str or os.PathLike
        The trial list file.

    Returns
    -------
    Trials
        Labels (int64 tensor), enrolment and test utterance lists.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "O.txt")
    ...     with open(path, "w") as f:
    ...         _ = f.write("1 s1/a/1.wav s1/b/2.wav\\n")
    ...         _ = f.write("0 s1/a/1.wav s2/c/1.wav\\n")
    ...     trials = read_trials(path)
    >>> trials.labels.tolist(), trials.test
    ([1, 0], ['s1/b/2.wav', 's2/c/1.wav'])
    """
    labels, enrol, test = [], [], []
    seen = {}  # unordered pair -> (label, line number)
    repeats, self_trials = [], []
    with open(path, encoding="utf-8") as trial_file:
        for line_number, line in enumerate(trial_file, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise ValueError(
                    f"{path}, line {line_number}: expected 'label enrol test' "
                    f"with label 0 or 1, got {line.strip()!r}"
                )
            label, pair = int(fields[0]), frozenset(fields[1:])
            if pair in seen:
                first_label, first_line = seen[pair]
                if first_label != label:
                    raise ValueError(
                        f"{path}: lines {first_line} and {line_number} give "
                        f"the pair {fields[1]} / {fields[2]} the labels "
                        f"{first_label} and {label}: keep the right one"
                    )
                repeats.append(line_number)
            seen.setdefault(pair, (label, line_number))
            if fields[1] == fields[2]:
                self_trials.append(line_number)
            labels.append(label)
            enrol.append(fields[1])
            test.append(fields[2])
    if not labels:
        raise ValueError(f"{path}: the trial list holds no trials")
    _warn_odd_trials(path, repeats, self_trials)
    return Trials(torch.tensor(labels, dtype=torch.int64), enrol, test)


def _warn_odd_trials(path, repeats, self_trials):
    """Warns about repeated trials and trials of an utterance with itself:
    each still counts in the EER as written."""
    if repeats:
        logger.warning(
            "%s: trials that repeat an earlier pair: %d (first at line %d); "
            "each copy counts in the EER",
            path,
            len(repeats),
            repeats[0],
        )
    if self_trials:
        logger.warning(
            "%s: trials of an utterance with itself: %d (first at line %d); "
            "they score a perfect match",
            path,
            len(self_trials),
            self_trials[0],
        )


def write_scores(path, enrol_ids, test_ids, labels, scores):
    """Writes trial scores as lines ``enrol test label score``.

    Arguments
    ---------
    path : str or os.PathLike
        Output file; its folder is created when missing.
    enrol_ids : list of str
        Enrolment utterance of each trial.
    test_ids : list of str
        Test utterance of each trial.
    labels : torch.Tensor or array-like
        Label of each trial (1 target, 0 non-target).
    scores : torch.Tensor or array-like
        Score of each trial.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "scores.txt")
    ...     write_scores(path, ["a/1"], ["b/2"], [1], torch.tensor([0.25]))
    ...     print(open(path).read().strip())
    a/1 b/2 1 0.250000
    """
    labels = as_1d_tensor(labels, "labels").tolist()
    scores = as_1d_tensor(scores, "scores").tolist()
    lengths = {len(enrol_ids), len(test_ids), len(labels), len(scores)}
    if len(lengths) != 1:
        raise ValueError(
            f"cannot write {path}: enrol_ids, test_ids, labels and scores "
            f"have lengths {len(enrol_ids)}, {len(test_ids)}, {len(labels)} "
            f"and {len(scores)}"
        )
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    lines = (
        f"{e} {t} {int(y)} {s:.6f}\n"
        for e, t, y, s in zip(enrol_ids, test_ids, labels, scores, strict=True)
    )
    with open(path, "w", encoding="utf-8") as score_file:
        score_file.writelines(lines)


def read_scores(path):
    """Reads a score file written by :func:`write_scores`.

    Arguments
    ---------
    path : str or os.PathLike
        Lines ``enrol test label score``.

    Returns
    -------
    trials : Trials
        Labels (int64 tensor), enrolment and test utterances.
    scores : torch.Tensor
        Float64 score of each trial [T].

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "scores.txt")
    ...     write_scores(path, ["a/1", "a/1"], ["b/2", "c/3"], [1, 0],
    ...                  torch.tensor([0.5, -0.25]))
    ...     trials, scores = read_scores(path)
    >>> trials.labels.tolist(), trials.test, scores.tolist()
    ([1, 0], ['b/2', 'c/3'], [0.5, -0.25])
    """
    labels, enrol, test, scores = [], [], [], []
    with open(path, encoding="utf-8") as score_file:
        for line_number, line in enumerate(score_file, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 4 or fields[2] not in ("0", "1"):
                    raise ValueError
                score = float(fields[3])
            except ValueError:
                raise ValueError(
                    f"{path}, line {line_number}: expected 'enrol test label "
                    f"score' with label 0 or 1, got {line.strip()!r}"
                ) from None
            enrol.append(fields[0])
            test.append(fields[1])
            labels.append(int(fields[2]))
            scores.append(score)
    if not labels:
        raise ValueError(f"{path}: the score file holds no trials")
    trials = Trials(torch.tensor(labels, dtype=torch.int64), enrol, test)
    return trials, torch.tensor(scores, dtype=torch.float64)


def index_utterances(*id_lists):
    """Maps utterance ids to rows of a table of unique utterances.

    Trials name utterances; embeddings are computed once per unique
    utterance. This gives the unique utterances (in order of first
    appearance across the lists) and, for each input list, the row of each
    of its entries.

    Arguments
    ---------
    *id_lists : list of str
        One or more lists of utterance ids (e.g. the enrolment and the test
        side of a trial list).

    Returns
    -------
    utterances : list of str
        The unique ids, in order of first appearance.
    indices : list of torch.Tensor
        One int64 tensor per input list, indexing ``utterances``.

    Example
    -------
    >>> utts, (enrol_idx, test_idx) = index_utterances(
    ...     ["a", "a", "b"], ["b", "c", "a"]
    ... )
    >>> utts, enrol_idx.tolist(), test_idx.tolist()
    (['a', 'b', 'c'], [0, 0, 1], [1, 2, 0])
    """
    row_of = {}
    indices = []
    for ids in id_lists:
        rows = [row_of.setdefault(utt, len(row_of)) for utt in ids]
        indices.append(torch.tensor(rows, dtype=torch.int64))
    return list(row_of), indices


def as_path_list(value):
    """A list of non-empty strings from a list or a comma-separated string.

    Arguments
    ---------
    value : str, os.PathLike or sequence
        One path, several comma-separated, or a list of them.

    Returns
    -------
    list of str

    Example
    -------
    >>> as_path_list("/data/vox1, /data/vox2")
    ['/data/vox1', '/data/vox2']
    >>> as_path_list(["a.txt"])
    ['a.txt']
    >>> import tempfile
    >>> odd = os.path.join(tempfile.mkdtemp(), "vox,1")
    >>> os.mkdir(odd)
    >>> as_path_list(odd)
    Traceback (most recent call last):
    ...
    ValueError: '.../vox,1' is one existing path whose name holds a comma, ...
    """
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if "," in text and os.path.exists(text.strip()):
            raise ValueError(
                f"{text!r} is one existing path whose name holds a comma, "
                "but a comma separates several paths here: rename it, or "
                "give it through a link without a comma"
            )
        value = text.split(",")
    items = [str(item).strip() for item in value]
    items = [item for item in items if item]
    if not items:
        raise ValueError(f"Expected one or more paths, got {value!r}")
    return items


def fetch_verification_list(source, save_folder):
    """Returns a local path for a verification list, downloading URLs.

    An http(s) or file URL is fetched with SpeechBrain's ``download_file``
    into ``save_folder/<file name>`` (kept there: a later call reuses it),
    through a ``.part`` file renamed once complete, so that an interrupted
    download is never taken for the list. A local path is checked and
    returned as is.

    Arguments
    ---------
    source : str
        Path or URL of the list.
    save_folder : str
        Download folder.

    Returns
    -------
    str
        Path of the local file.

    Example
    -------
    >>> import pathlib, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> listed = os.path.join(tmp, "veri.txt")
    >>> _ = open(listed, "w").write("1 a/b/1.wav a/c/2.wav\\n")
    >>> local = fetch_verification_list(
    ...     pathlib.Path(listed).as_uri(), os.path.join(tmp, "save"))
    >>> open(local).read()
    '1 a/b/1.wav a/c/2.wav\\n'
    """
    if not is_url(source):
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"Verification list {source} not found: give the corpus's "
                "own lists with --verification_lists=[<path>, ...]"
            )
        return source
    url = urllib.parse.urlparse(source)
    name = os.path.basename(url.path)
    if not name:
        raise ValueError(f"Verification list URL {source} names no file")
    destination = os.path.join(save_folder, name)
    if os.path.isfile(destination):
        return destination
    partial = destination + ".part"
    # download_file copies a local path and fetches an http(s) URL.
    if url.scheme.lower() == "file":
        remote = urllib.request.url2pathname(url.path)
    else:
        remote = source
    try:
        download_file(remote, partial, replace_existing=True)
    except (OSError, ValueError) as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise FileNotFoundError(
            f"Could not download verification list {source}: {error}. "
            "Offline or for another corpus, give local lists with "
            "--verification_lists=[<path>, ...]"
        ) from error
    os.replace(partial, destination)
    logger.info(f"Downloaded {source} to {destination}")
    return destination


def is_url(source):
    """True for http(s) and file URLs.

    Example
    -------
    >>> is_url("https://x.org/veri.txt"), is_url("trials/O.txt")
    (True, False)
    """
    scheme = urllib.parse.urlparse(source).scheme.lower()
    return scheme in ("http", "https", "file")


def canonical_source(source):
    """URLs as given, local paths made absolute (for the options file).

    Example
    -------
    >>> canonical_source("file:///a/O.txt")
    'file:///a/O.txt'
    >>> os.path.isabs(canonical_source("O.txt"))
    True
    """
    return source if is_url(source) else os.path.abspath(source)


def check_distinct_downloads(sources):
    """Raises when two URLs would download to the same file name.

    Example
    -------
    >>> check_distinct_downloads(["https://a.org/O.txt", "https://b.org/H.txt"])
    >>> check_distinct_downloads(["https://a.org/O.txt", "https://b.org/O.txt"])
    Traceback (most recent call last):
    ...
    ValueError: Verification lists https://a.org/O.txt and ... both ...
    """
    seen = {}
    for source in sources:
        if is_url(source):
            name = os.path.basename(urllib.parse.urlparse(source).path)
            if name in seen and seen[name] != source:
                raise ValueError(
                    f"Verification lists {seen[name]} and {source} would "
                    f"both be downloaded as {name}; download one of them "
                    "yourself and give its local path"
                )
            seen[name] = source


def read_utterance_paths(csv_files):
    """Maps utterance IDs to audio files, from SpeechBrain CSVs.

    Trial lists may name utterances by an annotation's ``ID`` (alone or as
    ``<ID>.wav``, the convention of SpeechBrain's sample verification list)
    rather than by their path under ``<data_folder>/wav``.

    Arguments
    ---------
    csv_files : list of str
        CSV files with the columns ``ID`` and ``wav``.

    Returns
    -------
    dict
        ``{ID: wav}`` over all files; empty for no files.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "utts.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("ID,duration,wav,spk_id\\nu1,1.0,/a/u1.wav,s1\\n")
    >>> read_utterance_paths([path])
    {'u1': '/a/u1.wav'}
    >>> utterance_path("u1.wav", "/data", read_utterance_paths([path]))
    '/a/u1.wav'
    """
    paths = {}
    for csv_path in csv_files:
        with open(csv_path, newline="", encoding="utf-8") as csv_file:
            reader = csv.DictReader(csv_file, skipinitialspace=True)
            missing = {"ID", "wav"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{csv_path}: missing column(s) {sorted(missing)}"
                )
            paths.update((row["ID"], row["wav"]) for row in reader)
    return paths


def utterance_path(utt, data_folder, utterance_paths):
    """Audio file of a trial utterance: the mapping's (by the utterance or
    its name without extension), else under wav/.

    Arguments
    ---------
    utt : str
        The utterance as the trial list names it.
    data_folder : str
        Dataset root (utterances under ``wav/``).
    utterance_paths : dict or None
        ``{ID: wav}`` from :func:`read_utterance_paths`.

    Returns
    -------
    str
        The audio file.

    Example
    -------
    >>> utterance_path("s1/a/u.wav", "/data", {})
    '/data/wav/s1/a/u.wav'
    """
    for key in (utt, os.path.splitext(utt)[0]):
        if utterance_paths and key in utterance_paths:
            return utterance_paths[key]
    return os.path.join(data_folder, "wav", utt)


def check_utterances_exist(trials, list_name, list_path, path_of):
    """Fails on the first trial utterance whose audio file is missing.

    Arguments
    ---------
    trials : Trials
        The list, as :func:`read_trials` reads it.
    list_name, list_path : str
        Its name and file, for the message.
    path_of : callable
        ``path_of(utterance) -> audio file``.

    Raises
    ------
    FileNotFoundError
        Naming the list, the trial's line and the missing file.

    Example
    -------
    >>> trials = Trials(torch.tensor([1]), ["a.wav"], ["b.wav"])
    >>> check_utterances_exist(trials, "O", "O.txt", lambda u: "/no/" + u)
    Traceback (most recent call last):
    ...
    FileNotFoundError: trial list O (O.txt), trial 1: audio of a.wav not ...
    """
    seen = set()
    for line, utts in enumerate(zip(trials.enrol, trials.test, strict=True)):
        for utt in utts:
            if utt in seen:
                continue
            seen.add(utt)
            if not os.path.isfile(path_of(utt)):
                raise FileNotFoundError(
                    f"trial list {list_name} ({list_path}), trial "
                    f"{line + 1}: audio of {utt} not found ({path_of(utt)})"
                )
