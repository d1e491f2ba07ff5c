"""Reading training segments from the audio files against from the
corpus's decoded copy (the recipes' ``audio_cache`` option), side by side.

The same random segments of a prepared ``train.csv`` are read with
``speechbrain_trkd.data.read_crop``, as the training loader does: from the
files, then inside ``audio_cache.reading_from`` the copy, one thread, in
several rounds (the first round of the copy also pays its page faults).

Usage::

    python benchmarks/audio_read_speed.py <prepared train.csv> \\
        <audio cache folder> [--segments 200] [--rounds 2]

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import csv
import random
import time

import torch

from speechbrain_trkd.audio_cache import AudioCache, reading_from
from speechbrain_trkd.data import read_crop


def read_speed(rows, cache, rounds=2):
    """Milliseconds per segment from the files and from ``cache``, a
    round each.

    Arguments
    ---------
    rows : list of dict
        Segments (``wav``, ``start``, ``stop``).
    cache : AudioCache
        The decoded corpus.
    rounds : int
        How many times each way is timed.

    Returns
    -------
    list of (float, float)
        ``(files ms, copy ms)`` per round.

    Example
    -------
    >>> import os, tempfile
    >>> from speechbrain_trkd.audio_cache import build_audio_cache
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2,
    ...     n_dev_speakers=2, sessions_per_speaker=1,
    ...     utterances_per_session=2, duration=(1.0, 1.5))
    >>> cache = build_audio_cache(corpus.folder, tmp + "/copy", num_workers=1)
    >>> wav = os.path.join(corpus.folder, sorted(cache.files)[0])
    >>> rounds = read_speed([{"wav": wav, "start": 0, "stop": 800}], cache, 1)
    >>> len(rounds), all(ms > 0 for ms in rounds[0])
    (1, True)
    """

    def per_segment():
        tic = time.perf_counter()
        for row in rows:
            read_crop(row["wav"], int(row["start"]), int(row["stop"]), 16000)
        return (time.perf_counter() - tic) * 1000 / len(rows)

    timings = []
    for _ in range(rounds):
        files = per_segment()
        with reading_from(cache):
            timings.append((files, per_segment()))
    return timings


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train_csv")
    parser.add_argument("cache_folder")
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open(args.train_csv, newline="", encoding="utf-8") as fin:
        segments = list(csv.DictReader(fin))
    picked = random.Random(args.seed).sample(segments, args.segments)
    cache = AudioCache(args.cache_folder)
    for k, (files, copy) in enumerate(read_speed(picked, cache, args.rounds)):
        print(
            f"round {k + 1}: {len(picked)} segments, files {files:.2f} ms, "
            f"decoded copy {copy:.3f} ms a segment ({files / copy:.0f}x)"
        )
