"""The benchmark's data stage: the trial lists (the corpus's own and extra
ones), the recipe's preparation of the corpus, and the check that no trial
speaker is trained on.

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import importlib.util
import os
from pathlib import Path

from bench_config import RECIPE_DIR, SPLIT_RATIO

from speechbrain_trkd.audio_cache import reading_from


def trial_lists(data_folder, names, extra_trials):
    """Names and locates the base and the extra trial lists.

    Arguments
    ---------
    data_folder : str
        The corpus root; base lists are ``<data_folder>/trials/<name>.txt``.
    names : list of str
        Base list names (e.g. ``["O", "H"]``).
    extra_trials : list of (str, str)
        ``(root, trials file)`` pairs; each is named by its file stem.

    Returns
    -------
    list of dict
        ``{"name", "root", "path", "extra"}``, base lists first.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "trials"))
    >>> open(os.path.join(root, "trials", "O.txt"), "w").close()
    >>> [t["name"] for t in trial_lists(root, ["O"], [])]
    ['O']
    >>> trial_lists(root, ["O"], [(root, os.path.join(root, "trials/O.txt"))])
    Traceback (most recent call last):
    ...
    ValueError: extra trial list .../O.txt is named 'O' like another list: ...
    """
    lists = []
    for name in names:
        path = os.path.join(data_folder, "trials", f"{name}.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"trial list {name!r} not found: {path}")
        lists.append(
            {"name": name, "root": data_folder, "path": path, "extra": False}
        )
    for root, path in extra_trials or []:
        name = Path(path).stem
        if any(t["name"] == name for t in lists):
            raise ValueError(
                f"extra trial list {path} is named {name!r} like another "
                "list: rename the file"
            )
        if not os.path.isfile(path):
            raise FileNotFoundError(f"extra trial list not found: {path}")
        if not os.path.isdir(os.path.join(root, "wav")):
            raise FileNotFoundError(
                f"the root {root} of extra trial list {path} has no wav/"
            )
        lists.append(
            {
                "name": name,
                "root": os.path.abspath(root),
                "path": os.path.abspath(path),
                "extra": True,
            }
        )
    return lists


def check_held_out(lists, data_folder, train_speakers):
    """Raises if an extra list on the training corpus uses its speakers.

    Arguments
    ---------
    lists : list of dict
        From :func:`trial_lists`.
    data_folder : str
        The training corpus root.
    train_speakers : set of str
        Speakers of the prepared ``train.csv``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "X.txt")
    >>> _ = open(path, "w").write("1 s1/a/u1.wav s1/a/u2.wav\\n")
    >>> lists = [{"name": "X", "root": "/d", "path": path, "extra": True}]
    >>> check_held_out(lists, "/d", {"s1"})
    Traceback (most recent call last):
    ...
    ValueError: extra trial list ... uses training speakers: s1
    """
    for trials in lists:
        if not trials["extra"]:
            continue
        if os.path.realpath(trials["root"]) != os.path.realpath(data_folder):
            continue
        used = set()
        with open(trials["path"], encoding="utf-8") as fin:
            for line in fin:
                fields = line.split()
                used.update(f.split("/")[0] for f in fields[1:3])
        overlap = sorted(used & train_speakers)
        if overlap:
            raise ValueError(
                f"extra trial list {trials['path']} uses training speakers: "
                f"{', '.join(overlap[:5])}"
            )


def prepared_speakers(data_folder, lists, prep_folder, seg_dur, cache=None):
    """Prepares the corpus with the recipe's ``voxceleb_prepare.py`` and
    returns its training speakers, checked to be held out of every list.

    The preparation is a module of the recipe's folder, as in SpeechBrain,
    so it is loaded from its file rather than imported.

    Arguments
    ---------
    data_folder : str
        The corpus root.
    lists : list of dict
        From :func:`trial_lists`; the base lists' speakers are kept out.
    prep_folder : str
        Where the CSVs go.
    seg_dur : float
        The training segments' length in seconds.
    cache : AudioCache, optional
        The decoded corpus, read instead of the files.

    Returns
    -------
    set of str

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2,
    ...     n_dev_speakers=2, sessions_per_speaker=2,
    ...     utterances_per_session=3, duration=(1.0, 1.5))
    >>> lists = trial_lists(corpus.folder, ["O"], [])
    >>> speakers = prepared_speakers(
    ...     corpus.folder, lists, os.path.join(tmp, "prep"), 1.0)
    >>> len(speakers)
    2
    """
    spec = importlib.util.spec_from_file_location(
        "voxceleb_prepare", RECIPE_DIR / "voxceleb_prepare.py"
    )
    preparation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preparation)
    with reading_from(cache):
        preparation.prepare_voxceleb(
            data_folder,
            prep_folder,
            [t["path"] for t in lists if not t["extra"]],
            split_ratio=SPLIT_RATIO,
            seg_dur=seg_dur,
        )
    train_csv = os.path.join(prep_folder, "train.csv")
    with open(train_csv, newline="", encoding="utf-8") as fin:
        train_speakers = {row["spk_id"] for row in csv.DictReader(fin)}
    check_held_out(lists, data_folder, train_speakers)
    return train_speakers
