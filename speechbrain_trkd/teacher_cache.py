"""The frozen teacher's outputs, computed once and read from disk.

A frozen teacher gives the same output for the same input, so distilling
several students (methods, seeds, hyperparameters) from one teacher need not
run it again for each. ``build_teacher_cache`` embeds ``views`` fixed crops
of every training segment once; ``TeacherCache`` maps the result from disk
so that a student trains on exactly those crops with the teacher's
embedding of each, and recomputes the teacher's logits through its (small)
classifier. Fast KD (Shen & Xing, ECCV 2022) stores soft labels per random
crop in the same spirit.

A view is a crop offset drawn from ``(seed, segment id, view)`` alone, so it
is reproducible whatever the order, the batch or the machine, plus, when the
build is given one, an augmentation drawn from the same triple
(``speechbrain_trkd.cache_views.ViewAugmentation``): the teacher embeds the
augmented view, and the student's loader regenerates the same waveform, so
the student sees the very view the teacher labelled.

On disk (``folder``):

* ``embeddings.npy``: float32 ``[segments, views, emb_dim]``, memory-mapped;
* ``offsets.npy``: int64 ``[segments, views, 2]``, the start and stop
  sample of each view's crop in its audio file;
* ``segments.txt``: the segment ids, one per row, in row order;
* ``manifest.json``: what the cache was built from (teacher files' sha256,
  preparation options, views, seed, crop length, precision). It is written
  last, by an atomic rename: a folder without it is an unfinished build,
  which ``build_teacher_cache`` resumes and ``TeacherCache`` refuses.

Authors
 * speechbrain-trkd developers 2026
"""

import hashlib
import json
import os
import zlib

import numpy as np
import torch

from speechbrain_trkd.cache_identity import check_manifest
from speechbrain_trkd.run_lock import RunLock

MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "progress.json"
EMBEDDINGS_FILE = "embeddings.npy"
OFFSETS_FILE = "offsets.npy"
SEGMENTS_FILE = "segments.txt"
FORMAT_VERSION = 1


def view_offsets(segment_id, start, stop, crop, views, seed):
    """The crops ``[start, stop)`` of one segment's views, reproducibly.

    Each view's offset is drawn uniformly in the segment from a generator
    seeded by ``(seed, crc32(segment_id))``; a segment no longer than
    ``crop`` gives its whole span to every view.

    Arguments
    ---------
    segment_id : str
        The segment's id (its row id in the prepared CSV).
    start, stop : int
        The segment's first and one-past-last sample in its audio file.
    crop : int
        Crop length in samples.
    views : int
        Number of views.
    seed : int
        The cache's seed.

    Returns
    -------
    numpy.ndarray
        int64 ``[views, 2]``: start and stop sample of each view.

    Example
    -------
    >>> view_offsets("spk/s1/u_0_48000", 0, 48000, 32000, 2, seed=1)
    array([[ 9239, 41239],
           [ 3801, 35801]])
    >>> view_offsets("short", 100, 20000, 32000, 2, seed=1).tolist()
    [[100, 20000], [100, 20000]]
    """
    if stop - start <= crop:
        return np.array([[start, stop]] * views, dtype=np.int64)
    generator = np.random.default_rng(
        [int(seed), zlib.crc32(segment_id.encode("utf-8"))]
    )
    first = start + generator.integers(0, stop - start - crop + 1, size=views)
    return np.stack([first, first + crop], axis=1).astype(np.int64)


def _write_json_atomic(path, data):
    """Writes JSON to ``path`` through a temporary file and a rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fout:
        json.dump(data, fout, indent=2, sort_keys=True)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, path)


def _read_json(path):
    """Reads a JSON file, naming it if it is damaged."""
    try:
        with open(path, encoding="utf-8") as fin:
            return json.load(fin)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error


def _embed_rows(embed_fn, read_view, rows, offsets, batch_size):
    """Embeds every view of ``rows``; crops of equal length share a batch
    (no padding, so a view's embedding does not depend on its batch).

    Returns ``{(row, view): embedding}`` as float32 numpy arrays.
    """
    crops = [(row, view) for row in rows for view in range(offsets.shape[1])]
    crops.sort(key=lambda rv: int(np.diff(offsets[rv[0], rv[1]])[0]))
    result = {}
    for first in range(0, len(crops), batch_size):
        chunk = crops[first : first + batch_size]
        by_length = {}
        for row, view in chunk:
            start, stop = offsets[row, view]
            by_length.setdefault(int(stop - start), []).append((row, view))
        for group in by_length.values():
            wavs = torch.stack([read_view(row, view) for row, view in group])
            lens = torch.ones(len(group))
            with torch.no_grad():
                emb = embed_fn(wavs, lens).reshape(len(group), -1)
            for (row, view), vector in zip(
                group, emb.float().numpy(), strict=True
            ):
                result[(row, view)] = vector
    return result


def _finished_cache(folder, segments, options):
    """The finished cache of ``folder``, checked against the run, or None."""
    if not os.path.isfile(os.path.join(folder, MANIFEST_FILE)):
        return None
    cache = TeacherCache(folder, expected=options)
    if cache.segment_ids != [segment["id"] for segment in segments]:
        raise ValueError(
            f"teacher cache {folder} holds other segments than the "
            "prepared data; point --teacher_cache at another folder"
        )
    return cache


def build_teacher_cache(
    folder,
    segments,
    embed_fn,
    read_crop,
    options,
    emb_dim,
    batch_size=32,
    rows_per_save=512,
    augment=None,
):
    """Embeds ``options["views"]`` crops of every segment with the teacher.

    Resumable: rows are embedded in blocks of ``rows_per_save``, each block
    flushed to disk before ``progress.json`` records it, so an interrupted
    build restarts at its first unrecorded block. The manifest is written
    last. A folder that already holds a finished cache is checked against
    ``options`` and left as it is.

    Arguments
    ---------
    folder : str
        Where the cache goes.
    segments : list of dict
        One per segment, in row order, each with ``id``, ``start`` and
        ``stop`` (samples) and whatever ``read_crop`` needs (e.g. ``wav``).
    embed_fn : callable
        ``embed_fn(wavs [B, T], lens [B]) -> [B, 1, emb_dim]`` (the frozen
        teacher's embedding, e.g. ``FrozenTeacher.embed``).
    read_crop : callable
        ``read_crop(segment, start, stop) -> waveform [stop - start]``.
    options : dict
        The manifest's ``CHECKED_FIELDS``: ``teacher_sha256`` (dict of file
        name to hash), ``prepare_options``, ``views``, ``seed``,
        ``crop_seconds``, ``sample_rate`` and ``precision``.
    emb_dim : int
        The teacher's embedding size.
    batch_size : int
        Crops per teacher forward.
    rows_per_save : int
        Segments embedded between two progress records.
    augment : speechbrain_trkd.cache_views.ViewAugmentation, optional
        Augments each view before the teacher embeds it; its settings join
        the manifest (field ``augmentation``), so a run can only read the
        cache with the same augmentation.

    Returns
    -------
    TeacherCache
        The finished cache, opened.

    Example
    -------
    >>> import tempfile
    >>> segments = [{"id": f"s{i}", "start": 0, "stop": 300 + 100 * i}
    ...             for i in range(3)]
    >>> options = {"teacher_sha256": {}, "prepare_options": {}, "views": 2,
    ...            "seed": 3, "crop_seconds": 0.025, "sample_rate": 16000,
    ...            "precision": "fp32"}
    >>> def read_crop(segment, start, stop):
    ...     return torch.arange(start, stop, dtype=torch.float32)
    >>> def embed(wavs, lens):  # mean and length of each crop
    ...     return torch.stack([wavs.mean(1), 0 * wavs[:, 0] + wavs.shape[1]],
    ...                        dim=1).unsqueeze(1)
    >>> cache = build_teacher_cache(
    ...     tempfile.mkdtemp(), segments, embed, read_crop, options, 2)
    >>> cache.offsets(cache.row("s2")).tolist()
    [[69, 469], [21, 421]]
    >>> cache.embedding(cache.row("s2"), 1).tolist()
    [220.5, 400.0]
    """
    options = dict(
        options, augmentation=augment.settings() if augment else None
    )
    finished = _finished_cache(folder, segments, options)
    if finished is not None:
        return finished
    # Two builds of one cache at once would both write its files.
    with RunLock(
        folder,
        "wait for that build to end, then run this again: it will use the "
        "finished cache",
    ):
        return _build(
            folder,
            segments,
            embed_fn,
            read_crop,
            options,
            emb_dim,
            batch_size,
            rows_per_save,
            augment,
        )


def _build(
    folder,
    segments,
    embed_fn,
    read_crop,
    options,
    emb_dim,
    batch_size,
    rows_per_save,
    augment,
):
    """Builds or resumes an unfinished cache (``build_teacher_cache``)."""
    finished = _finished_cache(folder, segments, options)  # built meanwhile
    if finished is not None:
        return finished
    manifest_path = os.path.join(folder, MANIFEST_FILE)
    ids = [segment["id"] for segment in segments]
    if len(set(ids)) != len(ids):
        raise ValueError("segment ids must be unique to index a cache")
    build = dict(options, n_segments=len(ids), emb_dim=int(emb_dim))
    build["segments_sha256"] = hashlib.sha256(
        "\n".join(ids).encode("utf-8")
    ).hexdigest()
    progress_path = os.path.join(folder, PROGRESS_FILE)
    if os.path.isfile(progress_path):
        done, embeddings, offsets = _resumed_build(folder, options, build)
    else:
        done, embeddings, offsets = _started_build(folder, segments, build)

    def read_view(row, view):
        wav = read_crop(segments[row], *offsets[row, view].tolist())
        return augment(wav, ids[row], view) if augment else wav

    while done < len(ids):
        rows = range(done, min(done + rows_per_save, len(ids)))
        vectors = _embed_rows(embed_fn, read_view, rows, offsets, batch_size)
        for (row, view), vector in vectors.items():
            embeddings[row, view] = vector
        embeddings.flush()
        done = rows.stop
        _write_json_atomic(progress_path, {"build": build, "rows_done": done})
    del embeddings
    _write_json_atomic(manifest_path, dict(build, version=FORMAT_VERSION))
    os.remove(progress_path)
    return TeacherCache(folder, expected=options)


def _resumed_build(folder, options, build):
    """``(rows done, embeddings memmap, offsets)`` of an unfinished build,
    refused when it was started with other options or segments."""
    progress = _read_json(os.path.join(folder, PROGRESS_FILE))
    check_manifest(progress["build"], options, folder)
    if progress["build"] != build:
        raise ValueError(
            f"the unfinished teacher cache in {folder} was started on "
            "other segments; delete the folder to build it anew"
        )
    embeddings = np.load(os.path.join(folder, EMBEDDINGS_FILE), mmap_mode="r+")
    offsets = np.load(os.path.join(folder, OFFSETS_FILE))
    return int(progress["rows_done"]), embeddings, offsets


def _started_build(folder, segments, build):
    """Starts a build: the views' crop offsets, the segment ids, an empty
    embeddings memmap and the progress file; returns what
    ``_resumed_build`` does."""
    views = int(build["views"])
    crop = int(round(build["crop_seconds"] * build["sample_rate"]))
    offsets = (
        np.stack(
            [
                view_offsets(
                    s["id"],
                    int(s["start"]),
                    int(s["stop"]),
                    crop,
                    views,
                    build["seed"],
                )
                for s in segments
            ]
        )
        if segments
        else np.zeros((0, views, 2), dtype=np.int64)
    )
    np.save(os.path.join(folder, OFFSETS_FILE), offsets)
    with open(
        os.path.join(folder, SEGMENTS_FILE), "w", encoding="utf-8"
    ) as fout:
        fout.write("".join(f"{segment['id']}\n" for segment in segments))
    embeddings = np.lib.format.open_memmap(
        os.path.join(folder, EMBEDDINGS_FILE),
        mode="w+",
        dtype=np.float32,
        shape=(len(segments), views, int(build["emb_dim"])),
    )
    _write_json_atomic(
        os.path.join(folder, PROGRESS_FILE), {"build": build, "rows_done": 0}
    )
    return 0, embeddings, offsets


class TeacherCache:
    """A finished teacher-output cache, memory-mapped read-only.

    Arguments
    ---------
    folder : str
        A folder written by ``build_teacher_cache``.
    expected : dict, optional
        Values of ``CHECKED_FIELDS`` this run needs; a mismatch raises a
        ``ValueError`` that names the field.

    Example
    -------
    >>> import tempfile
    >>> TeacherCache(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: ... holds no finished teacher cache (no manifest.json)...
    """

    def __init__(self, folder, expected=None):
        manifest_path = os.path.join(folder, MANIFEST_FILE)
        if not os.path.isfile(manifest_path):
            hint = (
                "it is an unfinished build: run the caching stage again to "
                "resume it"
                if os.path.isfile(os.path.join(folder, PROGRESS_FILE))
                else "build it with the recipe's caching stage"
            )
            raise FileNotFoundError(
                f"{folder} holds no finished teacher cache (no "
                f"{MANIFEST_FILE}); {hint}"
            )
        self.folder = folder
        self.manifest = _read_json(manifest_path)
        if self.manifest.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{manifest_path} has format version "
                f"{self.manifest.get('version')}, this code reads "
                f"{FORMAT_VERSION}"
            )
        check_manifest(self.manifest, expected or {}, folder)
        with open(os.path.join(folder, SEGMENTS_FILE), encoding="utf-8") as fin:
            self.segment_ids = fin.read().splitlines()
        self._rows = {sid: row for row, sid in enumerate(self.segment_ids)}
        try:
            self._embeddings = np.load(
                os.path.join(folder, EMBEDDINGS_FILE), mmap_mode="r"
            )
            self._offsets = np.load(os.path.join(folder, OFFSETS_FILE))
        except (OSError, ValueError) as error:  # truncated, or not an array
            raise ValueError(
                f"teacher cache {folder}: its arrays ({EMBEDDINGS_FILE}, "
                f"{OFFSETS_FILE}) cannot be read ({error}); the cache is "
                "damaged: delete the folder to build it again"
            ) from error
        n, views = len(self.segment_ids), self.manifest["views"]
        shape = (n, views, self.manifest["emb_dim"])
        if self._embeddings.shape != shape or self._offsets.shape[:2] != (
            n,
            views,
        ):
            raise ValueError(
                f"teacher cache {folder}: {EMBEDDINGS_FILE} has shape "
                f"{self._embeddings.shape} and {OFFSETS_FILE} "
                f"{self._offsets.shape}, the manifest says {shape}"
            )

    @property
    def views(self):
        """Number of views per segment."""
        return int(self.manifest["views"])

    def row(self, segment_id):
        """The row of a segment; a KeyError names an unknown one.

        Example
        -------
        >>> cache = _example_cache()
        >>> cache.row("s1")
        1
        >>> cache.row("s7")
        Traceback (most recent call last):
        ...
        KeyError: "segment 's7' is not in the teacher cache ..."
        """
        try:
            return self._rows[segment_id]
        except KeyError:
            raise KeyError(
                f"segment {segment_id!r} is not in the teacher cache "
                f"{self.folder}: was the data prepared again since?"
            ) from None

    def offsets(self, row):
        """int64 ``[views, 2]``: start and stop sample of each view.

        Example
        -------
        >>> _example_cache().offsets(0).tolist()
        [[0, 200], [0, 200]]
        """
        return self._offsets[row]

    def embedding(self, row, view):
        """The teacher's embedding of one view, float32 ``[emb_dim]``.

        Example
        -------
        >>> _example_cache().embedding(1, 0)
        array([199.5], dtype=float32)
        """
        return np.array(self._embeddings[row, view])


def _example_cache():
    """A two-segment cache of crop means, for the examples above."""
    import tempfile

    segments = [
        {"id": f"s{i}", "start": 0, "stop": 200 * (i + 1)} for i in range(2)
    ]
    options = {
        "teacher_sha256": {},
        "prepare_options": {},
        "views": 2,
        "seed": 0,
        "crop_seconds": 0.03125,
        "sample_rate": 16000,
        "precision": "fp32",
    }
    return build_teacher_cache(
        tempfile.mkdtemp(),
        segments,
        lambda wavs, lens: wavs.mean(1, keepdim=True).unsqueeze(1),
        lambda segment, start, stop: torch.arange(start, stop).float(),
        options,
        1,
    )
