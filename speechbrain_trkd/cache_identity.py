"""What a teacher cache must match to serve a run.

A cache's manifest records what it was built from: the teacher files'
sha256, the preparation options, the views, the seed, the crop, the
precision, the augmentation and each source audio file's size and
modification time. ``check_manifest`` compares a manifest with what a run
asks for and names the first field (or file) that differs; a cache is never
used for audio or a teacher it was not built from.

Authors
 * speechbrain-trkd developers 2026
"""

import hashlib
import os

# Fields a cache must match to be used by a run (checked on every load).
CHECKED_FIELDS = (
    "teacher_sha256",
    "prepare_options",
    "views",
    "seed",
    "crop_seconds",
    "sample_rate",
    "precision",
    "augmentation",
    "source_files",
)


def file_sha256(path):
    """The hex sha256 of a file's bytes (symbolic links are followed).

    Arguments
    ---------
    path : str
        The file.

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "f.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("abc")
    >>> file_sha256(path)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fin:
        for block in iter(lambda: fin.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_difference(have, want, name):
    """The dotted name and values of the first entry where two manifest
    values differ, or None when they are equal."""
    if isinstance(have, dict) and isinstance(want, dict):
        for key in sorted(set(have) | set(want), key=str):
            found = _first_difference(
                have.get(key), want.get(key), f"{name}.{key}"
            )
            if found is not None:
                return found
        return None
    return None if have == want else (name, have, want)


def source_identity(paths):
    """The content identity of audio files: ``{path: [size, mtime_ns]}``.

    Size and modification time, not a content hash: on openspk (5,618
    files, 97 MB) the stat of every file takes 0.07 s and a sha256 of every
    file 0.5 s, but a hash grows with the corpus's bytes (hundreds of GB
    for VoxCeleb2) and would be paid by every run that opens the cache.

    Arguments
    ---------
    paths : iterable of str
        The files (repeats are read once).

    Returns
    -------
    dict

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> _ = open(path, "wb").write(b"1234")
    >>> source_identity([path, path])[path][0]
    4
    """
    identity = {}
    for path in paths:
        if path not in identity:
            stat = os.stat(path)
            identity[path] = [stat.st_size, stat.st_mtime_ns]
    return identity


def _check_source_files(have, want, folder):
    """Raises when the cache's audio files changed since its build, naming
    the first changed file and how many changed.

    Example
    -------
    >>> _check_source_files({"a": [1, 2]}, {"a": [1, 2]}, "cache")
    >>> _check_source_files({"a": [1, 2], "b": [3, 4]},
    ...                     {"a": [1, 5], "b": [3, 4]}, "cache")
    Traceback (most recent call last):
    ...
    ValueError: teacher cache cache holds the teacher's outputs for audio ...
    """
    if have is None:
        raise ValueError(
            f"teacher cache {folder} records no identity of its audio files "
            "(built by an earlier release): build it again in another "
            "--teacher_cache folder"
        )
    changed = sorted(
        path
        for path in set(have) | set(want)
        if have.get(path) != want.get(path)
    )
    if changed:
        raise ValueError(
            f"teacher cache {folder} holds the teacher's outputs for audio "
            f"that has changed since: {len(changed)} of its {len(have)} "
            f"files differ in size or modification time, the first "
            f"{changed[0]} (built from [size, mtime_ns] "
            f"{have.get(changed[0])}, now {want.get(changed[0])}); point "
            "--teacher_cache at another folder to build a new cache"
        )


def check_manifest(manifest, expected, folder):
    """Raises if a cache was built from other inputs than ``expected``.

    A mapping field (the augmentation's settings) names its first differing
    entry, e.g. ``augmentation.clean_views``.

    Arguments
    ---------
    manifest : dict
        The cache's manifest (or the unfinished build's options).
    expected : dict
        Values of ``CHECKED_FIELDS`` the run needs; absent fields are not
        checked.
    folder : str
        The cache folder, for the message.

    Example
    -------
    >>> check_manifest({"views": 2, "seed": 1}, {"views": 2}, "cache")
    >>> check_manifest({"views": 2, "seed": 1}, {"views": 4}, "cache")
    Traceback (most recent call last):
    ...
    ValueError: teacher cache cache was built with views=2, this run asks ...
    >>> check_manifest({"augmentation": {"clean_views": 1}},
    ...                {"augmentation": {"clean_views": 2}}, "cache")
    Traceback (most recent call last):
    ...
    ValueError: ... built with augmentation.clean_views=1, this run asks ...
    """
    for field in CHECKED_FIELDS:
        if field not in expected:
            continue
        if field == "source_files":
            _check_source_files(manifest.get(field), expected[field], folder)
            continue
        found = _first_difference(manifest.get(field), expected[field], field)
        if found is not None:
            name, have, want = found
            raise ValueError(
                f"teacher cache {folder} was built with {name}={have}, this "
                f"run asks for {name}={want}; point --teacher_cache at "
                "another folder to build a new cache, or change the run back"
            )
