"""The benchmark's data stage: the trial lists (the corpus's own and extra
ones), and the check that no trial speaker is trained on.

Authors
 * speechbrain-trkd developers 2026
"""

import os
from pathlib import Path


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
