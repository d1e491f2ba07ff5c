"""The teacher cache of a prepared corpus: its segments' views embedded
by the recipe's teacher once, built (or resumed, or checked) on the main
process and opened by every process.

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import csv
import json
import os

import torch
from speechbrain.utils.distributed import run_on_main

from speechbrain_trkd.cache_identity import file_sha256, source_identity
from speechbrain_trkd.cache_views import ViewAugmentation
from speechbrain_trkd.data import build_wav_augment, read_crop
from speechbrain_trkd.teacher_cache import TeacherCache, build_teacher_cache


def open_teacher_cache(folder, segment_csvs, embedder, device, **options):
    """Builds, resumes or checks a teacher cache on the main process, then
    opens it.

    Arguments
    ---------
    folder : str
        The cache folder.
    segment_csvs : list of str
        The training and validation CSVs whose segments it holds.
    embedder : callable
        ``embedder(device) -> (embed_fn, teacher_files, emb_dim)``, see
        :func:`cache_teacher_outputs`.
    device : str
        Where the teacher runs.
    **options
        The keyword arguments of :func:`cache_teacher_outputs`.

    Returns
    -------
    speechbrain_trkd.teacher_cache.TeacherCache

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=3, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=3,
    ...     duration=(1.0, 2.0))
    >>> segments = corpus.training_csv(os.path.join(tmp, "segments.csv"))
    >>> weights = os.path.join(tmp, "teacher.ckpt")
    >>> torch.save({}, weights)
    >>> def embedder(device):
    ...     return (lambda wavs, lens: wavs[:, None, :4]), [weights], 4
    >>> cache = open_teacher_cache(
    ...     os.path.join(tmp, "cache"), [segments],
    ...     embedder, "cpu", views=1, seed=1, precision="fp32",
    ...     batch_size=4, crop_seconds=0.5, sample_rate=16000)
    >>> cache.views, cache.manifest["emb_dim"]
    (1, 4)
    """
    run_on_main(
        cache_teacher_outputs,
        args=[folder, segment_csvs, embedder, device],
        kwargs=options,
    )
    return TeacherCache(folder)


def cache_teacher_outputs(
    folder,
    segment_csvs,
    embedder,
    device,
    *,
    views,
    seed,
    precision,
    batch_size,
    crop_seconds,
    sample_rate,
    prepare_options_file=None,
    augment=None,
):
    """Builds, resumes or checks the teacher cache of the given segments.

    Every segment of ``segment_csvs`` gets ``views`` crops of
    ``crop_seconds`` (drawn from ``seed``), augmented by ``augment`` when it
    is given, embedded by the teacher under ``precision`` (``fp32`` or
    ``bf16`` autocast; the augmentation itself always runs in fp32).

    Arguments
    ---------
    folder : str
        The cache folder.
    segment_csvs : list of str
        SpeechBrain CSVs (``ID``, ``wav``, ``start``, ``stop``).
    embedder : callable
        ``embedder(device) -> (embed_fn, teacher_files, emb_dim)``: the
        frozen embedding function, the files whose sha256 identify it, and
        its embedding size.
    device : str
        Where the teacher runs.
    views, seed : int
        Crops per segment and the seed that draws them.
    precision : str
        ``fp32`` or ``bf16``.
    batch_size : int
        Crops per teacher batch.
    crop_seconds : float
        Length of a crop.
    sample_rate : int
        The rate the recipe expects.
    prepare_options_file : str, optional
        The data preparation's ``prepare_options.json``, part of the
        cache's identity when it exists.
    augment : speechbrain_trkd.cache_views.ViewAugmentation, optional
        The views' augmentation (see :func:`view_augmentation`).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=2,
    ...     duration=(1.0, 2.0))
    >>> segments = corpus.training_csv(os.path.join(tmp, "segments.csv"))
    >>> weights = os.path.join(tmp, "teacher.ckpt")
    >>> torch.save({}, weights)
    >>> def embedder(device):
    ...     embed = lambda wavs, lens: wavs[:, None, :8]
    ...     return embed, [weights], 8
    >>> cache_teacher_outputs(
    ...     os.path.join(tmp, "cache"), [segments],
    ...     embedder, "cpu", views=2, seed=1, precision="fp32",
    ...     batch_size=4, crop_seconds=0.5, sample_rate=16000)
    >>> cache = TeacherCache(os.path.join(tmp, "cache"))
    >>> cache.views, cache.manifest["emb_dim"]
    (2, 8)
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(
            f"teacher_cache_precision must be fp32 or bf16, got {precision!r}"
        )
    prepare_options = {}
    if prepare_options_file and os.path.isfile(prepare_options_file):
        with open(prepare_options_file, encoding="utf-8") as fin:
            prepare_options = json.load(fin)
    # The corpus fingerprint re-runs the preparation when files come or go;
    # the cache then sees other segments (segments_sha256) and is refused.
    prepare_options.pop("corpus", None)
    segments = []
    for csv_path in segment_csvs:
        with open(csv_path, encoding="utf-8") as fin:
            segments += [dict(row, id=row["ID"]) for row in csv.DictReader(fin)]
    embed_fn, teacher_files, emb_dim = embedder(device)
    options = {
        "teacher_sha256": {
            os.path.basename(path): file_sha256(path) for path in teacher_files
        },
        "prepare_options": prepare_options,
        "views": int(views),
        "seed": int(seed),
        "crop_seconds": float(crop_seconds),
        "sample_rate": int(sample_rate),
        "precision": precision,
        "source_files": source_identity(s["wav"] for s in segments),
    }

    def embed_on_device(wavs, lens):
        return embed_fn(wavs.to(device), lens.to(device)).cpu()

    autocast = (
        torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    with autocast:
        build_teacher_cache(
            folder,
            segments,
            embed_on_device,
            lambda segment, start, stop: read_crop(
                segment["wav"], start, stop, sample_rate
            ),
            options,
            emb_dim,
            batch_size=batch_size,
            augment=augment,
        )


def view_augmentation(
    make_augmenter,
    *,
    enabled=True,
    clean_views,
    seed,
    noise_csv=None,
    rir_csv=None,
    add_noise=None,
    add_reverb=None,
):
    """The augmentation of the teacher cache's views.

    Arguments
    ---------
    make_augmenter : callable
        An ``Augmenter`` factory (hparam ``cache_view_augmenter``).
    enabled : bool
        False: no augmentation, None is returned (hparam
        ``teacher_cache_augment``).
    clean_views : int
        Views ``0 .. clean_views - 1`` stay clean.
    seed : int
        The cache's seed, from which each view's augmentation is drawn.
    noise_csv, rir_csv : str, optional
        Local CSVs of noises and room impulse responses; each adds its
        seeded augmentation (``add_noise`` / ``add_reverb``, factories
        taking ``csv_file``).
    add_noise, add_reverb : callable, optional
        See ``noise_csv``.

    Returns
    -------
    speechbrain_trkd.cache_views.ViewAugmentation or None

    Example
    -------
    >>> from functools import partial
    >>> from speechbrain.augment.augmenter import Augmenter
    >>> from speechbrain.augment.time_domain import DropChunk
    >>> make = partial(Augmenter, augmentations=[DropChunk()])
    >>> view_augmentation(make, clean_views=1, seed=3).clean_views
    1
    >>> print(view_augmentation(make, enabled=False, clean_views=1,
    ...                               seed=3))
    None
    """
    if not enabled:
        return None
    augmenter = build_wav_augment(
        make_augmenter,
        noise_csv=noise_csv,
        rir_csv=rir_csv,
        add_noise=add_noise,
        add_reverb=add_reverb,
    )
    return ViewAugmentation(augmenter, clean_views=clean_views, seed=seed)


def refuse_augmented_cache(wav_augment, model="teacher"):
    """Raises when the student would augment crops a cache labelled as they
    are: the cache holds the ``model``'s outputs for its views, so the
    student must see exactly those views.

    Arguments
    ---------
    wav_augment : Augmenter or None
        The training loop's waveform augmentation (hparam ``wav_augment``).
    model : str
        Whose outputs the cache holds, for the message.

    Example
    -------
    >>> refuse_augmented_cache(None)
    >>> refuse_augmented_cache(object(), "backbone")
    Traceback (most recent call last):
    ...
    ValueError: teacher_cache holds the backbone's outputs for its views, ...
    """
    if wav_augment is not None:
        raise ValueError(
            f"teacher_cache holds the {model}'s outputs for its views, so "
            "the student must see them as they are: pass --wav_augment=null "
            "(--teacher_cache_augment=True augments the views themselves)"
        )
