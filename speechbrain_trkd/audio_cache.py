"""Decode a corpus once into one int16 array and serve it from memory.

A benchmark trains dozens of students on the same corpus. Decoding its
Ogg Opus files again for every crop of every epoch of every run would spend
the device's time on the CPU, so the whole ``<data_folder>/wav`` tree is
decoded once (in parallel) into ``<cache_folder>/audio.npy`` (int16, every
file one after the other) with an index of ``[offset, length]`` per file.
Every process maps that file read-only: the operating system keeps one copy
in memory for all of them.

The plugin reads training crops and trial utterances through
:func:`load_audio` and :func:`audio_info`: inside ``with
reading_from(cache):`` they answer the cache's files from memory, and hand
any file it does not hold (e.g. an extra trial list of another corpus) to
``speechbrain.dataio.audio_io``; outside, they are ``audio_io``. The
recipes' ``audio_cache`` option builds and opens the cache with
:func:`decoded_corpus`.

Authors
 * speechbrain-trkd developers 2026
"""

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from speechbrain.dataio import audio_io
from speechbrain.utils.distributed import run_on_main

from speechbrain_trkd.run_lock import RunLock
from speechbrain_trkd.trials import as_path_list

INDEX_FILE = "index.json"
SAMPLES_FILE = "audio.npy"
INT16_SCALE = 32768.0


def list_audio_files(data_folder):
    """Lists every file under ``<data_folder>/wav``, sorted.

    Arguments
    ---------
    data_folder : str
        A corpus root in VoxCeleb layout.

    Returns
    -------
    list of str
        Paths relative to ``data_folder`` (``wav/<spk>/<session>/<utt>``).

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "wav", "s1", "a"))
    >>> open(os.path.join(root, "wav", "s1", "a", "u.wav"), "w").close()
    >>> list_audio_files(root)
    ['wav/s1/a/u.wav']
    """
    wav_root = os.path.join(data_folder, "wav")
    if not os.path.isdir(wav_root):
        raise FileNotFoundError(
            f"{wav_root} does not exist: data_folder must hold "
            "wav/<speaker>/<session>/<utterance>"
        )
    files = []
    for folder, _, names in os.walk(wav_root):
        for name in names:
            path = os.path.join(folder, name)
            files.append(os.path.relpath(path, data_folder))
    if not files:
        raise FileNotFoundError(f"no audio files under {wav_root}")
    return sorted(files)


def _decode_into(job):
    """Decodes files into their slices of the shared int16 array."""
    samples_path, data_folder, entries = job
    samples = np.load(samples_path, mmap_mode="r+")
    for relpath, offset, length in entries:
        path = os.path.join(data_folder, relpath)
        signal, _ = audio_io.load(path, dtype=torch.float32)
        mono = signal.mean(dim=0).numpy()
        if mono.shape[0] != length:
            raise ValueError(
                f"{path}: decoded {mono.shape[0]} samples, but its header "
                f"announces {length}"
            )
        scaled = np.clip(np.round(mono * INT16_SCALE), -32768, 32767)
        samples[offset : offset + length] = scaled.astype(np.int16)
    samples.flush()


def build_audio_cache(data_folder, cache_folder, num_workers=None):
    """Decodes every file of a corpus into ``cache_folder`` (once).

    A cache whose index names the same data folder and the same files is
    reused as it is; one that holds another corpus is refused. The index
    is written last, so an interrupted build is started again, and a build
    holds the folder's ``run.lock``, so a second build at once stops with
    a message instead of overwriting the first.

    Arguments
    ---------
    data_folder : str
        The corpus root (``wav/<speaker>/<session>/<utterance>``).
    cache_folder : str
        Where ``audio.npy`` and ``index.json`` are written.
    num_workers : int, optional
        Decoding processes (default: the CPU count).

    Returns
    -------
    AudioCache
        The loaded cache.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2,
    ...     n_dev_speakers=2, sessions_per_speaker=1,
    ...     utterances_per_session=2, duration=(1.0, 1.5))
    >>> cache = build_audio_cache(
    ...     corpus.folder, os.path.join(tmp, "cache"), num_workers=1)
    >>> len(cache), cache.sample_rate
    (8, 16000)
    """
    data_folder = os.path.realpath(data_folder)
    files = list_audio_files(data_folder)
    if _holds(cache_folder, data_folder, files):
        return AudioCache(cache_folder)
    # One build at a time: a second one would truncate the first's array.
    with RunLock(
        cache_folder,
        what_to_do="wait for it to finish decoding, then start again (the "
        "decoded copy is then reused), or give this run another folder",
    ):
        _decode_corpus(data_folder, cache_folder, files, num_workers)
    return AudioCache(cache_folder)


def _holds(cache_folder, data_folder, files):
    """Whether ``cache_folder`` holds exactly ``files`` of ``data_folder``;
    a folder that holds another corpus is refused, naming both."""
    index_path = os.path.join(cache_folder, INDEX_FILE)
    if not os.path.isfile(index_path):
        return False
    with open(index_path, encoding="utf-8") as fin:
        index = json.load(fin)
    if index.get("data_folder") != data_folder:
        raise ValueError(
            f"{cache_folder} holds the decoded corpus "
            f"{index.get('data_folder')}, not {data_folder}: give "
            "audio_cache another folder, or delete that one"
        )
    return sorted(index.get("files", {})) == sorted(files)


def _decode_corpus(data_folder, cache_folder, files, num_workers):
    """Writes ``audio.npy`` and, last, ``index.json`` (see
    :func:`build_audio_cache`)."""
    index_path = os.path.join(cache_folder, INDEX_FILE)
    entries, offset, sample_rate = [], 0, None
    for relpath in files:
        info = audio_io.info(os.path.join(data_folder, relpath))
        if sample_rate is None:
            sample_rate = info.sample_rate
        elif info.sample_rate != sample_rate:
            raise ValueError(
                f"{os.path.join(data_folder, relpath)} is sampled at "
                f"{info.sample_rate} Hz, the other files at {sample_rate} Hz"
            )
        entries.append((relpath, offset, info.frames))
        offset += info.frames
    os.makedirs(cache_folder, exist_ok=True)
    samples_path = os.path.join(cache_folder, SAMPLES_FILE)
    samples = np.lib.format.open_memmap(
        samples_path, mode="w+", dtype=np.int16, shape=(offset,)
    )
    del samples
    num_workers = num_workers or os.cpu_count() or 1
    chunks = [entries[i::num_workers] for i in range(num_workers)]
    jobs = [(samples_path, data_folder, c) for c in chunks if c]
    if num_workers == 1:
        for job in jobs:
            _decode_into(job)
    else:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            list(pool.map(_decode_into, jobs))
    index = {
        "data_folder": data_folder,
        "sample_rate": sample_rate,
        "files": {rel: [start, n] for rel, start, n in entries},
    }
    with open(index_path + ".tmp", "w", encoding="utf-8") as fout:
        json.dump(index, fout)
    os.replace(index_path + ".tmp", index_path)


class AudioCache:
    """Read-only view of a cache written by :func:`build_audio_cache`.

    Files are looked up by their real path (symbolic links resolved), so
    the prepared CSVs and the trial lists may name them either way.

    Arguments
    ---------
    cache_folder : str
        Folder holding ``audio.npy`` and ``index.json``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2,
    ...     n_dev_speakers=2, sessions_per_speaker=1,
    ...     utterances_per_session=2, duration=(1.0, 1.5))
    >>> cache = build_audio_cache(
    ...     corpus.folder, os.path.join(tmp, "cache"), num_workers=1)
    >>> path = os.path.join(corpus.folder, list_audio_files(corpus.folder)[0])
    >>> direct, _ = audio_io.load(path)
    >>> cached = cache.read(path)
    >>> bool((cached - direct[0]).abs().max() < 1e-4)
    True
    >>> cache.read(path, frame_offset=100, num_frames=50).shape
    torch.Size([50])
    """

    def __init__(self, cache_folder):
        index_path = os.path.join(cache_folder, INDEX_FILE)
        if not os.path.isfile(index_path):
            raise FileNotFoundError(
                f"{index_path} does not exist: build the cache with "
                "build_audio_cache first"
            )
        with open(index_path, encoding="utf-8") as fin:
            index = json.load(fin)
        self.data_folder = index["data_folder"]
        self.sample_rate = index["sample_rate"]
        self.samples = np.load(
            os.path.join(cache_folder, SAMPLES_FILE), mmap_mode="r"
        )
        self.files = {
            os.path.join(self.data_folder, rel): tuple(span)
            for rel, span in index["files"].items()
        }

    def __len__(self):
        return len(self.files)

    def span(self, path):
        """Returns ``(offset, length)`` of a file, or None if not cached.

        Arguments
        ---------
        path : str
            Any path of the file (relative, absolute or through links).

        Returns
        -------
        tuple of int or None

        Example
        -------
        >>> cache = AudioCache.__new__(AudioCache)
        >>> cache.files = {"/data/wav/a.wav": (0, 10)}
        >>> cache.span("/data/wav/a.wav"), cache.span("/data/wav/b.wav")
        ((0, 10), None)
        """
        return self.files.get(os.path.realpath(path))

    def read(self, path, frame_offset=0, num_frames=-1):
        """Returns samples of a cached file as float32 in [-1, 1).

        Arguments
        ---------
        path : str
            The file.
        frame_offset : int
            First sample.
        num_frames : int
            Number of samples (-1: to the end of the file).

        Returns
        -------
        torch.Tensor
            ``[num_frames]`` float32 (a copy).

        Example
        -------
        >>> cache = AudioCache.__new__(AudioCache)
        >>> cache.files = {"/d/wav/a.wav": (2, 3)}
        >>> cache.samples = np.array([9, 9, 16384, -16384, 0], np.int16)
        >>> cache.read("/d/wav/a.wav").tolist()
        [0.5, -0.5, 0.0]
        >>> cache.read("/d/wav/b.wav")
        Traceback (most recent call last):
        ...
        KeyError: 'audio file not in the cache: /d/wav/b.wav'
        """
        span = self.span(path)
        if span is None:
            raise KeyError(f"audio file not in the cache: {path}")
        start, length = span
        if frame_offset < 0 or frame_offset > length:
            raise ValueError(
                f"{path}: frame_offset={frame_offset} outside its {length} "
                "samples"
            )
        stop = length if num_frames < 0 else frame_offset + num_frames
        if stop > length:
            raise ValueError(
                f"{path}: asked for samples {frame_offset}..{stop}, the "
                f"file has {length}"
            )
        chunk = self.samples[start + frame_offset : start + stop]
        return torch.from_numpy(chunk.astype(np.float32) / INT16_SCALE)


_SERVED = []  # the caches this process reads from, innermost last


def decoded_corpus(data_folder, cache_folder, train_folders=None):
    """The recipes' ``audio_cache`` option: every corpus root decoded once
    into ``cache_folder`` (on the main process), then opened.

    With one root the cache is ``cache_folder`` itself; with several (the
    roots of ``data_folder`` and ``train_folders``, each once), each root
    goes to a subfolder named by a hash of its real path. A cache that
    holds the same files is reused.
    The whole corpus sits in int16 (115 MB per hour of 16 kHz audio), so
    this is for corpora that fit in memory.

    Arguments
    ---------
    data_folder : str or list
        The corpus root(s), as the recipes' ``data_folder``.
    cache_folder : str or None
        Where to decode them; None reads the audio files.
    train_folders : str or list, optional
        The recipes' ``train_folders``.

    Returns
    -------
    list of AudioCache
        One per root (empty for None), for :func:`reading_from`.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2,
    ...     n_dev_speakers=2, sessions_per_speaker=1,
    ...     utterances_per_session=2, duration=(1.0, 1.5))
    >>> [len(c) for c in decoded_corpus(corpus.folder, tmp + "/cache")]
    [8]
    >>> decoded_corpus(corpus.folder, None)
    []
    """
    if cache_folder is None:
        return []
    if os.path.exists(cache_folder) and not os.path.isdir(cache_folder):
        raise ValueError(f"audio_cache={cache_folder} is a file: give a folder")
    named = as_path_list(data_folder)
    if train_folders:
        named += as_path_list(train_folders)
    roots = list(dict.fromkeys(os.path.realpath(root) for root in named))
    # A root's folder is named after its path, so the roots' order is free.
    folders = [cache_folder]
    if len(roots) > 1:
        folders = [
            os.path.join(cache_folder, hashlib.sha1(r.encode()).hexdigest())
            for r in roots
        ]
    for root, folder in zip(roots, folders, strict=True):
        run_on_main(build_audio_cache, args=[root, folder])
    return [AudioCache(folder) for folder in folders]


@contextmanager
def reading_from(cache):
    """Inside the block, :func:`load_audio` and :func:`audio_info` answer
    the files of ``cache`` from memory.

    The plugin reads training crops and trial utterances through those two
    functions, so a run inside the block never decodes a cached file again.
    A file the cache does not hold is read from disk as before. DataLoader
    workers started by forking (Linux's default up to Python 3.13) read
    from the cache too; workers started afresh (spawn, forkserver) read
    from disk.

    Arguments
    ---------
    cache : AudioCache, list of AudioCache or None
        The decoded corpus (or corpora); None changes nothing.

    Yields
    ------
    None

    Example
    -------
    >>> cache = AudioCache.__new__(AudioCache)
    >>> cache.files = {"/d/wav/a.wav": (0, 4)}
    >>> cache.samples = np.array([0, 8192, 16384, 0], np.int16)
    >>> cache.sample_rate = 16000
    >>> with reading_from(cache):
    ...     signal, rate = load_audio("/d/wav/a.wav", 1, 2)
    ...     frames = audio_info("/d/wav/a.wav").frames
    >>> signal.tolist(), rate, frames
    ([[0.25, 0.5]], 16000, 4)
    >>> load_audio("/d/wav/a.wav")  # the block is closed: from disk
    Traceback (most recent call last):
    ...
    RuntimeError: Failed to load audio from /d/wav/a.wav: ...
    """
    caches = [] if cache is None else [cache]
    if isinstance(cache, (list, tuple)):
        caches = list(cache)
    _SERVED.extend(caches)
    try:
        yield
    finally:
        # Blocks nest: the last caches are this block's.
        del _SERVED[len(_SERVED) - len(caches) :]


def _serving(path):
    """The innermost cache that holds ``path``, or None."""
    for cache in reversed(_SERVED):
        if cache.span(path) is not None:
            return cache
    return None


def load_audio(path, frame_offset=0, num_frames=-1, dtype=None):
    """``audio_io.load(path, ...)``, from the cache when it holds the file.

    Arguments
    ---------
    path : str
        The audio file.
    frame_offset : int
        First sample.
    num_frames : int
        Number of samples (-1: to the end).
    dtype : torch.dtype, optional
        Output type (float32 by default).

    Returns
    -------
    tuple
        ``(signal [channels, samples], sample_rate)``; a cached file is
        mono, its samples the int16 the cache holds, scaled to [-1, 1).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> audio_io.save(path, torch.zeros(1, 800), 8000)
    >>> signal, rate = load_audio(path, 100, 200)
    >>> signal.shape, rate
    (torch.Size([1, 200]), 8000)
    """
    cache = _serving(path)
    if cache is None:
        return audio_io.load(
            path, dtype=dtype, frame_offset=frame_offset, num_frames=num_frames
        )
    signal = cache.read(path, frame_offset, num_frames)
    if dtype is not None:
        signal = signal.to(dtype)
    return signal[None], cache.sample_rate


def audio_info(path):
    """``audio_io.info(path)``, from the cache when it holds the file.

    Arguments
    ---------
    path : str
        The audio file.

    Returns
    -------
    speechbrain.dataio.audio_io.AudioInfo
        A cached file is mono 16-bit PCM (format ``"cache"``).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> audio_io.save(path, torch.zeros(1, 800), 8000)
    >>> audio_info(path).frames
    800
    """
    cache = _serving(path)
    if cache is None:
        return audio_io.info(path)
    return audio_io.AudioInfo(
        sample_rate=cache.sample_rate,
        frames=cache.span(path)[1],
        channels=1,
        subtype="PCM_16",
        format="cache",
    )
