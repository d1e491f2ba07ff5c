#!/usr/bin/env python3
"""Distil a pretrained speaker-embedding teacher into a small student.

The student is trained on VoxCeleb (or any corpus in its layout) with its own
additive-angular-margin loss plus a knowledge-distillation term from a frozen
teacher. The KD method is a YAML choice: triage KD (``trkd``, the default),
``kd``, ``dkd``, ``gkd``, ``nkd``, ``dist``, ``emb_cos`` or ``none``. After
training, the best checkpoint (lowest validation error) is scored on the
verification lists.

To run::

    python train_trkd.py hparams/ecapa_to_small.yaml --data_folder=/path/to/vox

With a local teacher folder (e.g. one fine-tuned by ``train_teacher.py``)::

    python train_trkd.py hparams/ecapa_to_small.yaml --data_folder=... \\
        --teacher_source=results/teacher/openspk --teacher_n_classes=450

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import csv
import functools
import json
import logging
import math
import os
import random
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio import audio_io
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.distributed import (
    if_main_process,
    infer_device,
    run_on_main,
)

from speechbrain_trkd.brain import DistillationBrain
from speechbrain_trkd.cache_views import ViewAugmentation
from speechbrain_trkd.plots import (
    write_training_plots,
    write_verification_plots,
)
from speechbrain_trkd.pretrained import collect_pinned, load_collected
from speechbrain_trkd.run_identity import check_same_run, resolved_settings
from speechbrain_trkd.run_lock import RunLock
from speechbrain_trkd.teacher import class_index_map
from speechbrain_trkd.teacher_cache import (
    TeacherCache,
    build_teacher_cache,
    file_sha256,
)
from speechbrain_trkd.verification import (
    evaluate_verification,
    format_results_table,
    read_utterance_paths,
    trained_speaker_overlap,
    write_metrics,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_student import export_model, student_card  # noqa: E402
from voxceleb_prepare import (  # noqa: E402
    as_path_list,
    fetch_verification_list,
    prepare_voxceleb,
)

logger = logging.getLogger(__name__)


def dataio_prep(
    train_csv,
    valid_csv,
    save_folder,
    n_classes,
    crop_seconds,
    sample_rate,
    random_chunk,
    cache=None,
    with_audio=True,
    cache_augment=None,
):
    """Creates the training and validation datasets and the label encoder.

    Training items are random crops of ``crop_seconds`` inside each segment
    (when ``random_chunk``); validation items are the whole segments. With a
    teacher cache, a training item is instead one of the cache's views of
    its segment, drawn at random each time, and carries the teacher's
    embedding of it (``teacher_emb``); a validation item is view 0. The
    student's label encoder is saved in ``save_folder``.

    Arguments
    ---------
    train_csv, valid_csv : str
        SpeechBrain CSVs of the segments (``ID``, ``wav``, ``start``,
        ``stop``, ``spk_id``): the prepared ones, or any annotation.
    save_folder : str
        Where the label encoder is written.
    n_classes : int
        The student's classes, checked against the training speakers.
    crop_seconds : float
        Length of a random training crop.
    sample_rate : int
        The rate the recipe expects.
    random_chunk : bool
        Crop training segments at random.
    cache : speechbrain_trkd.teacher_cache.TeacherCache, optional
        The teacher's cached outputs for the segments.
    with_audio : bool
        False leaves the audio out of the items (``sig``): with a cache, a
        head trained on a frozen teacher backbone needs only ``teacher_emb``.
    cache_augment : speechbrain_trkd.cache_views.ViewAugmentation, optional
        The augmentation of the cache's views (see :func:`add_cached_views`).

    Returns
    -------
    train_data : DynamicItemDataset
    valid_data : DynamicItemDataset
    label_encoder : CategoricalEncoder
        Maps the training speakers to the student's classes.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=3, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=2,
    ...     duration=(1.0, 2.0))
    >>> csvs = prepare_voxceleb(
    ...     corpus.folder, os.path.join(tmp, "prep"), [corpus.trial_file],
    ...     split_ratio=[50, 50], seg_dur=1.0)
    >>> train_data, valid_data, label_encoder = dataio_prep(
    ...     csvs["train"], csvs["dev"], os.path.join(tmp, "save"),
    ...     n_classes=3, crop_seconds=0.5, sample_rate=16000,
    ...     random_chunk=True)
    >>> item = train_data[0]
    >>> len(label_encoder), item["sig"].shape, item["spk_id_encoded"].shape
    (3, torch.Size([8000]), torch.Size([1]))
    """
    datasets = []
    for csv_path in (train_csv, valid_csv):
        with open(csv_path, encoding="utf-8") as csv_file:
            if sum(1 for _ in csv_file) < 2:
                raise ValueError(
                    f"{csv_path} has no rows: the corpus is too small for "
                    "the preparation's split_ratio and seg_dur"
                )
        datasets.append(DynamicItemDataset.from_csv(csv_path))
    train_data, valid_data = datasets
    crop = int(crop_seconds * sample_rate)

    def read_segment(wav, start, stop, random_crop):
        start, stop = int(start), int(stop)
        if random_crop and stop - start > crop:
            start = random.randint(start, stop - crop)
            stop = start + crop
        return read_crop(wav, start, stop, sample_rate)

    if cache is None:

        @sb.utils.data_pipeline.takes("wav", "start", "stop")
        @sb.utils.data_pipeline.provides("sig")
        def train_audio(wav, start, stop):
            return read_segment(wav, start, stop, random_chunk)

        @sb.utils.data_pipeline.takes("wav", "start", "stop")
        @sb.utils.data_pipeline.provides("sig")
        def valid_audio(wav, start, stop):
            return read_segment(wav, start, stop, False)

    else:
        add_cached_views(
            train_data, valid_data, cache, sample_rate, cache_augment
        )
        train_audio = valid_audio = None

    if cache is None:
        train_data.add_dynamic_item(train_audio)
        valid_data.add_dynamic_item(valid_audio)

    label_encoder = CategoricalEncoder()

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id", "spk_id_encoded")
    def label_pipeline(spk_id):
        yield spk_id
        yield label_encoder.encode_sequence_torch([spk_id])

    sb.dataio.dataset.add_dynamic_item(datasets, label_pipeline)
    os.makedirs(save_folder, exist_ok=True)
    label_encoder.load_or_create(
        path=os.path.join(save_folder, "label_encoder.txt"),
        from_didatasets=[train_data],
        output_key="spk_id",
    )
    keys = (
        ["id", "sig", "spk_id_encoded"]
        if with_audio
        else ["id", "spk_id_encoded"]
    )
    sb.dataio.dataset.set_output_keys(
        datasets, keys + ["teacher_emb"] if cache is not None else keys
    )

    n_speakers = len(label_encoder)
    if n_speakers != n_classes:
        raise ValueError(
            f"The training data has {n_speakers} speakers but the student's "
            f"classifier has out_n_neurons={n_classes}: pass "
            f"--out_n_neurons={n_speakers}"
        )
    return train_data, valid_data, label_encoder


def read_crop(wav, start, stop, sample_rate):
    """Reads samples ``[start, stop)`` of an audio file, checking its rate
    and that every sample is finite.

    Arguments
    ---------
    wav : str
        The audio file.
    start, stop : int
        First and one-past-last sample.
    sample_rate : int
        The rate the recipe expects.

    Returns
    -------
    torch.Tensor
        The mean of the channels, ``[stop - start]``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> audio_io.save(path, torch.zeros(1, 800), 8000)
    >>> read_crop(path, 100, 300, 8000).shape
    torch.Size([200])
    >>> read_crop(path, 0, 10, 16000)
    Traceback (most recent call last):
    ...
    ValueError: ...x.wav is sampled at 8000 Hz, the recipe expects 16000 Hz ...
    >>> signal = torch.zeros(1, 800)
    >>> signal[0, 250] = float("nan")
    >>> audio_io.save(path, signal, 8000, subtype="FLOAT")
    >>> read_crop(path, 200, 300, 8000)
    Traceback (most recent call last):
    ...
    ValueError: ...x.wav holds non-finite samples (NaN or inf) between ...
    """
    sig, rate = audio_io.load(
        wav, frame_offset=int(start), num_frames=int(stop) - int(start)
    )
    if rate != sample_rate:
        raise ValueError(
            f"{wav} is sampled at {rate} Hz, the recipe expects "
            f"{sample_rate} Hz (hparam sample_rate)"
        )
    # One NaN sample would reach the batch-norm statistics of the student
    # in its forward pass, before any loss check: the file is an error.
    if not torch.isfinite(sig).all():
        raise ValueError(
            f"{wav} holds non-finite samples (NaN or inf) between samples "
            f"{int(start)} and {int(stop)}: repair or remove the file"
        )
    # Several channels are averaged, as in scoring and in the cohort.
    return sig.mean(dim=0)


def add_cached_views(train_data, valid_data, cache, sample_rate, augment=None):
    """Makes the datasets' items views of a teacher cache.

    A training item draws one of its segment's views at random each time it
    is read, a validation item is view 0; each provides the crop (``sig``),
    augmented as the cache's build augmented it, and the teacher's embedding
    of it (``teacher_emb``).

    Arguments
    ---------
    train_data, valid_data : DynamicItemDataset
        With ``id`` (the segment id) and ``wav``.
    cache : speechbrain_trkd.teacher_cache.TeacherCache
        Holds every segment of both datasets.
    sample_rate : int
        The rate the recipe expects.
    augment : speechbrain_trkd.cache_views.ViewAugmentation, optional
        The augmentation the cache was built with (checked against its
        manifest when it was opened).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> cache = SimpleNamespace(
    ...     views=2, row=lambda segment_id: 0,
    ...     offsets=lambda row: np.array([[0, 4], [2, 6]]),
    ...     embedding=lambda row, view: np.full(3, view, dtype=np.float32))
    >>> data = DynamicItemDataset({"s0": {"wav": "unused.wav"}})
    >>> add_cached_views(data, data, cache, 16000)
    >>> data.set_output_keys(["view", "teacher_emb"])
    >>> data[0]["view"] in (0, 1), data[0]["teacher_emb"].shape
    (True, torch.Size([3]))
    """

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("view")
    def train_view(segment_id):
        return random.randrange(cache.views)

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("view")
    def valid_view(segment_id):
        return 0

    @sb.utils.data_pipeline.takes("id", "wav", "view")
    @sb.utils.data_pipeline.provides("sig")
    def view_audio(segment_id, wav, view):
        start, stop = cache.offsets(cache.row(segment_id))[view]
        sig = read_crop(wav, start, stop, sample_rate)
        return augment(sig, segment_id, view) if augment else sig

    @sb.utils.data_pipeline.takes("id", "view")
    @sb.utils.data_pipeline.provides("teacher_emb")
    def view_teacher_emb(segment_id, view):
        return torch.from_numpy(cache.embedding(cache.row(segment_id), view))

    train_data.add_dynamic_item(train_view)
    valid_data.add_dynamic_item(valid_view)
    for data in (train_data, valid_data):
        data.add_dynamic_item(view_audio)
        data.add_dynamic_item(view_teacher_emb)


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
    >>> csvs = prepare_voxceleb(
    ...     corpus.folder, os.path.join(tmp, "prep"), [corpus.trial_file],
    ...     split_ratio=[50, 50], seg_dur=1.0)
    >>> weights = os.path.join(tmp, "teacher.ckpt")
    >>> torch.save({}, weights)
    >>> def embedder(device):
    ...     return (lambda wavs, lens: wavs[:, None, :4]), [weights], 4
    >>> cache = open_teacher_cache(
    ...     os.path.join(tmp, "cache"), [csvs["train"], csvs["dev"]],
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
        The views' augmentation (see :func:`cache_view_augmentation`).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=2,
    ...     duration=(1.0, 2.0))
    >>> csvs = prepare_voxceleb(
    ...     corpus.folder, os.path.join(tmp, "prep"), [corpus.trial_file],
    ...     split_ratio=[50, 50], seg_dur=1.0)
    >>> weights = os.path.join(tmp, "teacher.ckpt")
    >>> torch.save({}, weights)
    >>> def embedder(device):
    ...     embed = lambda wavs, lens: wavs[:, None, :8]
    ...     return embed, [weights], 8
    >>> cache_teacher_outputs(
    ...     os.path.join(tmp, "cache"), [csvs["train"], csvs["dev"]],
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


def teacher_embedder(hparams, device):
    """Loads the teacher and returns what ``cache_teacher_outputs`` needs.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``pretrainer``, ``teacher_sha256``,
        ``teacher``).
    device : str
        Where the teacher runs.

    Returns
    -------
    embed_fn : callable
        ``FrozenTeacher.embed``.
    teacher_files : list of str
        The collected embedding model, classifier and label encoder.
    emb_dim : int
        The teacher's embedding size.

    Example
    -------
    >>> teacher_embedder({}, "cpu")
    Traceback (most recent call last):
    ...
    KeyError: 'pretrainer'
    """
    pretrainer = hparams["pretrainer"]
    collect_pinned(pretrainer, hparams["teacher_revision"])
    load_collected(pretrainer, hparams["teacher_sha256"])
    teacher = hparams["teacher"].to(device)
    files = [
        os.path.join(pretrainer.collect_in, f"{name}.ckpt")
        for name in pretrainer.loadables
    ]
    return teacher.embed, files, teacher.classifier.weight.shape[1]


def build_wav_augment(
    make_augmenter,
    noise_csv=None,
    rir_csv=None,
    add_noise=None,
    add_reverb=None,
):
    """Builds the waveform augmenter, adding noise and reverberation only
    when their local CSV files are given (nothing is ever downloaded).

    Arguments
    ---------
    make_augmenter : callable or None
        An ``Augmenter`` factory holding the always-on augmentations
        (hparam ``wav_augment``); None: no augmentation.
    noise_csv, rir_csv : str, optional
        Local SpeechBrain CSVs (column ``wav``) of noises and room impulse
        responses; None leaves that augmentation out.
    add_noise, add_reverb : callable, optional
        Factories taking ``csv_file`` (``AddNoise`` / ``AddReverb``).

    Returns
    -------
    speechbrain.augment.augmenter.Augmenter or None
        None without ``make_augmenter``.

    Example
    -------
    >>> from functools import partial
    >>> from speechbrain.augment.augmenter import Augmenter
    >>> from speechbrain.augment.time_domain import DropChunk
    >>> make = partial(Augmenter, augmentations=[DropChunk()])
    >>> list(build_wav_augment(make).augmentations)
    ['DropChunk0']
    >>> build_wav_augment(make, noise_csv="missing_noise.csv")
    Traceback (most recent call last):
    ...
    FileNotFoundError: noise_csv=missing_noise.csv does not exist: ...
    """
    if make_augmenter is None:
        return None
    augmentations = list(make_augmenter.keywords.get("augmentations", []))
    if noise_csv:
        _check_local_csv("noise_csv", noise_csv)
        augmentations.append(add_noise(csv_file=noise_csv))
    if rir_csv:
        _check_local_csv("rir_csv", rir_csv)
        augmentations.append(add_reverb(csv_file=rir_csv))
    return make_augmenter(augmentations=augmentations)


def _check_local_csv(key, csv_file):
    """Raises unless the augmentation CSV ``csv_file`` (hparam ``key``)
    exists."""
    if not os.path.isfile(csv_file):
        raise FileNotFoundError(
            f"{key}={csv_file} does not exist: give a local CSV "
            f"or set {key}: null to train without it"
        )


def load_teacher(hparams, label_encoder):
    """Collects the teacher's files, loads them and aligns its classes.

    The teacher's files (from the Hub id or local folder ``teacher_source``)
    are collected in ``teacher_folder`` by the hparams' ``pretrainer``. Its
    outputs are then sliced to the student's speakers through the two label
    encoders.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.
    label_encoder : CategoricalEncoder
        The student's label encoder.

    Returns
    -------
    speechbrain_trkd.teacher.FrozenTeacher or None
        None when the KD method has no KD term (``none``).

    Example
    -------
    >>> from speechbrain_trkd.losses import DistillationLoss
    >>> hparams = {"kd_loss": DistillationLoss("none")}
    >>> load_teacher(hparams, label_encoder=None) is None
    True
    """
    if not hparams["kd_loss"].distils:
        return None
    pretrainer = hparams["pretrainer"]
    collect_pinned(pretrainer, hparams["teacher_revision"])
    # The Pretrainer collects every file as <loadable name>.ckpt.
    encoder_file = os.path.realpath(
        os.path.join(pretrainer.collect_in, "label_encoder.ckpt")
    )
    teacher_encoder = CategoricalEncoder()
    try:
        teacher_encoder.load(encoder_file)
    except ValueError as error:
        raise ValueError(f"{encoder_file} is damaged ({error})") from error
    if len(teacher_encoder) != hparams["teacher_n_classes"]:
        raise ValueError(
            f"The teacher {hparams['teacher_source']} knows "
            f"{len(teacher_encoder)} speakers ({encoder_file}) but "
            f"teacher_n_classes={hparams['teacher_n_classes']}: pass "
            f"--teacher_n_classes={len(teacher_encoder)}"
        )
    load_collected(pretrainer, hparams["teacher_sha256"])
    try:
        index = class_index_map(teacher_encoder, label_encoder)
    except ValueError as error:
        raise ValueError(
            f"{error.args[0]}. The teacher {hparams['teacher_source']} does "
            "not know these training speakers: fine-tune a head for them "
            "with train_teacher.py and distil from its output folder."
        ) from error
    teacher = hparams["teacher"]
    teacher.set_class_index(index)
    return teacher


def student_encoder(brain):
    """Returns a function that embeds padded waveforms with the student.

    Arguments
    ---------
    brain : DistillationBrain
        The trained brain (its modules are put in eval mode).

    Returns
    -------
    callable
        ``encode(wavs, wav_lens) -> [batch, emb_dim]`` under no_grad.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> from speechbrain.processing.features import InputNormalization
    >>> modules = torch.nn.ModuleDict({
    ...     "compute_features": Fbank(n_mels=80),
    ...     "mean_var_norm": InputNormalization(norm_type="sentence"),
    ...     "embedding_model": ECAPA_TDNN(
    ...         80, channels=[8, 8, 8, 8, 24], lin_neurons=16),
    ... })
    >>> encode = student_encoder(SimpleNamespace(modules=modules))
    >>> encode(torch.randn(2, 16000), torch.ones(2)).shape
    torch.Size([2, 16])
    """
    brain.modules.eval()

    @torch.no_grad()
    def encode(wavs, wav_lens):
        feats = brain.modules.compute_features(wavs)
        feats = brain.modules.mean_var_norm(feats, wav_lens)
        return brain.modules.embedding_model(feats, wav_lens).squeeze(1)

    return encode


def score_encoder(
    encode_fn,
    device,
    *,
    data_folder,
    verification_lists,
    prep_folder,
    output_folder,
    backends,
    cohort_csv,
    cohort_per_speaker,
    asnorm_top_n,
    batch_size,
    sample_rate,
    trial_audio_csvs=(),
    teacher_folder=None,
    write_plots=False,
):
    """Scores an encoder on the verification lists and saves the metrics.

    Trial paths are resolved against the first data folder (or through
    ``trial_audio_csvs``); the AS-norm cohort and the PLDA training set
    come from ``cohort_csv``. Metrics go to ``<output_folder>/metrics.json``
    / ``.csv``, score files to ``<output_folder>/scores`` and, with
    ``write_plots``, the DET and score-histogram PNGs beside the metrics.

    Arguments
    ---------
    encode_fn : callable
        ``encode_fn(wavs, wav_lens) -> embeddings``.
    device : str or torch.device
        Where the encoder runs.
    data_folder : str or list
        The corpus root(s).
    verification_lists : list
        Trial lists (paths or URLs), fetched into ``prep_folder``.
    prep_folder : str
        Where the lists are kept.
    output_folder : str
        Where metrics and scores are written.
    backends : list of str
        ``cosine``, ``asnorm``, ``plda``.
    cohort_csv : str
        Training CSV of the cohort / PLDA utterances.
    cohort_per_speaker, asnorm_top_n, batch_size : int
        See ``evaluate_verification``.
    sample_rate : int
        The rate the encoder expects.
    trial_audio_csvs : list of str
        CSVs (``ID``, ``wav``) of trial utterances named by ID.
    teacher_folder : str, optional
        A collected teacher whose training speakers the lists should not
        hold (warned about).
    write_plots : bool
        Whether to draw the DET and score-histogram PNGs (with matplotlib).

    Returns
    -------
    dict
        ``{list_name: {backend: {metric: value}}}``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=3, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=2,
    ...     duration=(1.0, 2.0))
    >>> prep = os.path.join(tmp, "prep")
    >>> csvs = prepare_voxceleb(
    ...     corpus.folder, prep, [corpus.trial_file], split_ratio=[50, 50],
    ...     seg_dur=1.0)
    >>> def encode(wavs, wav_lens):  # two crude spectral statistics
    ...     spectrum = torch.fft.rfft(wavs).abs()
    ...     return torch.stack([spectrum[:, :400].mean(1),
    ...                         spectrum[:, 400:].mean(1)], dim=1)
    >>> metrics = score_encoder(
    ...     encode, "cpu", data_folder=corpus.folder,
    ...     verification_lists=[corpus.trial_file], prep_folder=prep,
    ...     output_folder=os.path.join(tmp, "run"),
    ...     backends=["cosine", "asnorm"], cohort_csv=csvs["train"],
    ...     cohort_per_speaker=2, asnorm_top_n=2, batch_size=4,
    ...     sample_rate=16000)
    >>> sorted(metrics["O"]), sorted(metrics["O"]["cosine"])
    (['asnorm', 'cosine'], ['eer', 'min_dcf_0.01', 'min_dcf_0.05'])
    """
    lists = [
        fetch_verification_list(src, prep_folder)
        for src in as_path_list(verification_lists)
    ]
    metrics = evaluate_verification(
        encode_fn,
        data_folder=as_path_list(data_folder)[0],
        trial_lists=lists,
        output_folder=output_folder,
        backends=backends,
        train_csv=cohort_csv,
        cohort_utts_per_speaker=cohort_per_speaker,
        asnorm_top_n=asnorm_top_n,
        batch_size=batch_size,
        device=device,
        sample_rate=sample_rate,
        utterance_paths=read_utterance_paths(trial_audio_csvs),
    )
    write_metrics(metrics, output_folder)
    if write_plots:
        write_verification_plots(metrics, output_folder)
    overlap = {}
    teacher_encoder = os.path.join(teacher_folder or "", "label_encoder.ckpt")
    if teacher_folder and os.path.isfile(teacher_encoder):
        overlap = trained_speaker_overlap(lists, teacher_encoder)
    logger.info(
        "Verification results:\n%s", format_results_table(metrics, overlap)
    )
    return metrics


@contextlib.contextmanager
def training_run(argv):
    """Opens a training run of the recipe: hparams, run options, lock.

    Parses the command line, loads the hparams, takes the output folder's
    lock (one run per folder, see ``RunLock``) and refuses a folder trained
    with other settings (``check_same_run``); the run happens inside the
    ``with`` block, which first creates the experiment directory (from the
    script, so that SpeechBrain saves a copy of that script).

    Arguments
    ---------
    argv : list of str
        ``[hparams_file, --key=value ...]``, SpeechBrain style.

    Yields
    ------
    hparams : dict
        The loaded hyperparameters.
    run_opts : dict
        SpeechBrain's run options.
    hparams_file : str
        The hparams file, for ``sb.create_experiment_directory``.
    overrides : str
        The command-line overrides, likewise.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> hparams_file = os.path.join(
    ...     os.path.dirname(__file__), "hparams", "ecapa_to_small.yaml")
    >>> argv = [hparams_file, f"--data_folder={tmp}",
    ...         f"--output_folder={tmp}/run"]
    >>> with training_run(argv) as (hparams, run_opts, _, overrides):
    ...     hparams["kd_method"], sorted(os.listdir(f"{tmp}/run"))
    ('trkd', ['run.lock', 'save'])
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    # Pretrained weights drive CPU activations into denormal floats, which
    # made the ECAPA-1024 teacher 3.7x slower on CPU (21 s -> 5.7 s per 32
    # crops of 2 s); flushing them to zero changes no result.
    torch.set_flush_denormal(True)
    sb.utils.distributed.ddp_init_group(run_opts)
    # Before the objects are built: a tau schedule of 0 epochs would fail
    # there with a message that names no key.
    check_run_numbers(resolved_settings(hparams_file, overrides))
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    batch_size = hparams["train_dataloader_options"].get("batch_size", 1)
    if batch_size < 2:
        raise ValueError(
            f"batch_size={batch_size}: a training batch needs at least 2 "
            "examples for the models' batch normalisation; pass "
            "--batch_size=2 or more"
        )
    lock = (
        RunLock(hparams["output_folder"])
        if if_main_process()
        else contextlib.nullcontext()
    )
    with lock:
        if if_main_process():
            check_same_run(hparams["output_folder"], hparams_file, overrides)
        yield hparams, run_opts, hparams_file, overrides


def check_run_numbers(hparams):
    """Raises, before any data or model is touched, on a number the run
    cannot use, naming the key and what would work.

    Example
    -------
    >>> check_run_numbers({"number_of_epochs": 2, "kd_weight": 0.1})
    >>> check_run_numbers({"number_of_epochs": 2, "kd_weight": "abc"})
    Traceback (most recent call last):
    ...
    ValueError: kd_weight='abc': give a finite number >= 0, e.g. ...
    >>> check_run_numbers({"number_of_epochs": 0})
    Traceback (most recent call last):
    ...
    ValueError: number_of_epochs=0: train at least one epoch ...
    """
    for key in ("kd_weight", "kd_warmup_epochs", "lr", "lr_final"):
        value = hparams.get(key, 0.0)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{key}={value!r}: give a finite number >= 0, e.g. --{key}=0.1"
            )
    epochs = hparams["number_of_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            f"number_of_epochs={epochs!r}: train at least one epoch "
            "(--number_of_epochs=1 or more)"
        )


def prepare_data(hparams):
    """Runs the VoxCeleb preparation on the main process (nothing with
    ``skip_prep``, e.g. for given ``train_annotation`` / ``valid_annotation``
    files).

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=3, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=3,
    ...     duration=(1.0, 2.0))
    >>> hparams = {
    ...     "data_folder": corpus.folder,
    ...     "prep_folder": os.path.join(tmp, "prep"),
    ...     "verification_lists": [corpus.trial_file],
    ...     "split_ratio": [50, 50], "seg_dur": 1.0, "skip_prep": False,
    ...     "train_folders": None, "sample_rate": 16000,
    ... }
    >>> prepare_data(hparams)
    >>> sorted(os.listdir(hparams["prep_folder"]))
    ['dev.csv', 'enrol.csv', 'prepare_options.json', 'test.csv', 'train.csv']
    """
    run_on_main(
        prepare_voxceleb,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["prep_folder"],
            "verification_lists": hparams["verification_lists"],
            "split_ratio": hparams["split_ratio"],
            "seg_dur": hparams["seg_dur"],
            "skip_prep": hparams["skip_prep"],
            "train_folders": hparams["train_folders"],
            "sample_rate": hparams["sample_rate"],
        },
    )


def distil(hparams, run_opts):
    """Builds the data, the teacher (or its cache) and the brain, then
    trains the student and scores its best checkpoint.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.
    run_opts : dict
        SpeechBrain's run options.

    Returns
    -------
    DistillationBrain
        Trained, its best checkpoint loaded; ``metrics`` holds the
        verification metrics on the main process (None elsewhere).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=3, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=3,
    ...     duration=(1.0, 2.0))
    >>> hparams_file = os.path.join(
    ...     os.path.dirname(__file__), "hparams", "ecapa_to_small.yaml")
    >>> argv = [
    ...     hparams_file, f"--data_folder={corpus.folder}",
    ...     f"--output_folder={tmp}/run", f"--prep_folder={tmp}/prep",
    ...     f"--verification_lists=[{corpus.trial_file}]",
    ...     "--split_ratio=[50, 50]", "--seg_dur=1.0", "--sentence_len=1.0",
    ...     "--out_n_neurons=3", "--kd_method=none", "--student_channels=8",
    ...     "--batch_size=4", "--num_workers=0", "--number_of_epochs=1",
    ...     "--verification_backends=[cosine]", "--noprogressbar"]
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):  # SpeechBrain's log
    ...     with training_run(argv) as (hparams, run_opts, _, _):
    ...         brain = distil(hparams, run_opts)
    >>> sorted(brain.metrics["O"]["cosine"])
    ['eer', 'min_dcf_0.01', 'min_dcf_0.05']
    """
    prepare_data(hparams)
    wav_augment = build_wav_augment(
        hparams["wav_augment"],
        noise_csv=hparams["noise_csv"],
        rir_csv=hparams["rir_csv"],
        add_noise=hparams["add_noise"],
        add_reverb=hparams["add_reverb"],
    )
    cache = None
    cache_options = teacher_cache_options(hparams)
    if hparams["teacher_cache"]:
        _refuse_augmented_cache(wav_augment)
        cache = open_teacher_cache(
            hparams["teacher_cache"],
            [hparams["train_annotation"], hparams["valid_annotation"]],
            functools.partial(teacher_embedder, hparams),
            run_opts.get("device") or infer_device(),
            **cache_options,
        )
    train_data, valid_data, label_encoder = dataio_prep(
        hparams["train_annotation"],
        hparams["valid_annotation"],
        hparams["save_folder"],
        n_classes=hparams["out_n_neurons"],
        crop_seconds=hparams["sentence_len"],
        sample_rate=hparams["sample_rate"],
        random_chunk=hparams["random_chunk"],
        cache=cache,
        cache_augment=cache_options["augment"],
    )
    brain = distillation_brain(
        hparams, run_opts, load_teacher(hparams, label_encoder), wav_augment
    )
    brain.fit(
        hparams["epoch_counter"],
        train_data,
        valid_data,
        train_loader_kwargs=hparams["train_dataloader_options"],
        valid_loader_kwargs=hparams["valid_dataloader_options"],
    )
    brain.checkpointer.recover_if_possible(min_key="ErrorRate")
    brain.metrics = None
    if if_main_process():
        brain.metrics = score_encoder(
            student_encoder(brain),
            brain.device,
            data_folder=hparams["data_folder"],
            verification_lists=hparams["verification_lists"],
            prep_folder=hparams["prep_folder"],
            output_folder=hparams["output_folder"],
            backends=hparams["verification_backends"],
            cohort_csv=hparams["train_annotation"],
            cohort_per_speaker=hparams["cohort_utterances_per_speaker"],
            asnorm_top_n=hparams["asnorm_top_n"],
            batch_size=hparams["verification_batch_size"],
            sample_rate=hparams["sample_rate"],
            trial_audio_csvs=hparams["trial_audio_csvs"],
            teacher_folder=hparams["teacher_folder"],
            write_plots=hparams["write_plots"],
        )
        if hparams["write_plots"]:
            uses_tau = getattr(hparams["kd_loss"], "uses_tau", False)
            write_training_plots(
                hparams["train_log"],
                hparams["output_folder"],
                hparams["tau_schedule"] if uses_tau else None,
            )
    return brain


def teacher_cache_options(hparams):
    """The keyword arguments of :func:`cache_teacher_outputs` in hparams.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.

    Returns
    -------
    dict

    Example
    -------
    >>> options = teacher_cache_options({
    ...     "teacher_cache_views": 2, "teacher_cache_seed": 1,
    ...     "teacher_cache_precision": "fp32", "teacher_cache_batch_size": 8,
    ...     "sentence_len": 3.0, "sample_rate": 16000, "prep_folder": "prep",
    ...     "teacher_cache_augment": False})
    >>> options["views"], options["prepare_options_file"]
    (2, 'prep/prepare_options.json')
    """
    return {
        "views": hparams["teacher_cache_views"],
        "seed": hparams["teacher_cache_seed"],
        "precision": hparams["teacher_cache_precision"],
        "batch_size": hparams["teacher_cache_batch_size"],
        "crop_seconds": hparams["sentence_len"],
        "sample_rate": hparams["sample_rate"],
        "prepare_options_file": os.path.join(
            hparams["prep_folder"], "prepare_options.json"
        ),
        "augment": cache_view_augmentation(hparams),
    }


def cache_view_augmentation(hparams):
    """The augmentation of the teacher cache's views, or None.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``teacher_cache_augment``,
        ``cache_view_augmenter``, ``teacher_cache_clean_views``,
        ``teacher_cache_seed``; ``noise_csv`` and ``rir_csv`` add
        ``cache_csv_noise`` and ``cache_csv_reverb``).

    Returns
    -------
    speechbrain_trkd.cache_views.ViewAugmentation or None

    Example
    -------
    >>> cache_view_augmentation({"teacher_cache_augment": False}) is None
    True
    """
    if not hparams["teacher_cache_augment"]:
        return None
    augmenter = build_wav_augment(
        hparams["cache_view_augmenter"],
        noise_csv=hparams["noise_csv"],
        rir_csv=hparams["rir_csv"],
        add_noise=hparams["cache_csv_noise"],
        add_reverb=hparams["cache_csv_reverb"],
    )
    return ViewAugmentation(
        augmenter,
        clean_views=hparams["teacher_cache_clean_views"],
        seed=hparams["teacher_cache_seed"],
    )


def distillation_brain(hparams, run_opts, teacher, wav_augment, **kwargs):
    """The student's brain, every collaborator named from the hparams.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.
    run_opts : dict
        SpeechBrain's run options.
    teacher : speechbrain_trkd.teacher.FrozenTeacher or None
        Aligned to the student's classes (see :func:`load_teacher`).
    wav_augment : Augmenter or None
        See :func:`build_wav_augment`.
    **kwargs
        Replace arguments of the brain (e.g. ``brain_class``,
        ``checkpointer=None``).

    Returns
    -------
    DistillationBrain

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> hparams_file = os.path.join(
    ...     os.path.dirname(__file__), "hparams", "ecapa_to_small.yaml")
    >>> with open(hparams_file, encoding="utf-8") as fin:
    ...     hparams = load_hyperpyyaml(fin, {
    ...         "data_folder": tmp, "output_folder": tmp, "kd_method": "none",
    ...         "student_channels": 8, "teacher_channels": 8,
    ...         "out_n_neurons": 3})
    >>> brain = distillation_brain(hparams, {"device": "cpu"}, None, None)
    >>> brain.kd_loss is hparams["kd_loss"], brain.kd_scale
    (True, 30.0)
    """
    arguments = dict(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        teacher=teacher,
        kd_loss=hparams["kd_loss"],
        compute_cost=hparams["compute_cost"],
        kd_weight=hparams["kd_weight"],
        kd_warmup_epochs=hparams["kd_warmup_epochs"],
        kd_scale=hparams["kd_scale"],
        kd_margin=hparams["kd_margin"],
        tau_schedule=hparams["tau_schedule"],
        wav_augment=wav_augment,
        **lr_schedules(hparams),
        train_logger=hparams["train_logger"],
    )
    brain_class = kwargs.pop("brain_class", DistillationBrain)
    arguments.update(kwargs)
    return brain_class(**arguments)


def lr_schedules(hparams):
    """The brain's learning-rate schedules: per epoch (``lr_annealing``),
    or per step with ``lr_per_step`` (``lr_step_schedule`` with
    ``lr_warmup_epochs``).

    Example
    -------
    >>> lr_schedules({"lr_annealing": "linear", "lr_per_step": False})
    {'lr_annealing': 'linear', 'lr_step_schedule': None,
     'lr_warmup_epochs': 0.0}
    """
    if not hparams["lr_per_step"]:
        return {
            "lr_annealing": hparams["lr_annealing"],
            "lr_step_schedule": None,
            "lr_warmup_epochs": 0.0,
        }
    return {
        "lr_annealing": None,
        "lr_step_schedule": hparams["lr_step_schedule"],
        "lr_warmup_epochs": hparams["lr_warmup_epochs"],
    }


def _refuse_augmented_cache(wav_augment):
    """A teacher cache holds the teacher's outputs for crops without
    augmentation: the student must see them as they are."""
    if wav_augment is not None:
        raise ValueError(
            "teacher_cache holds the teacher's outputs for crops without "
            "augmentation, so the student must see them as they are: "
            "pass --wav_augment=null"
        )


def main(argv):
    """Prepares the data, distils the student, scores it and exports it
    (``export_folder``, a pretrained-model folder) from the main process.

    Arguments
    ---------
    argv : list of str
        ``[hparams_file, --key=value ...]``.

    Returns
    -------
    DistillationBrain
        The trained student's brain (``metrics`` on the main process).
    """
    with training_run(argv) as (hparams, run_opts, hparams_file, overrides):
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=hparams_file,
            overrides=overrides,
        )
        brain = distil(hparams, run_opts)
    if brain.metrics is not None:  # the main process
        export_model(
            hparams["embedding_model"],
            hparams["classifier"],
            os.path.join(hparams["save_folder"], "label_encoder.txt"),
            hparams["inference_hparams"],
            hparams["inference_overrides"],
            hparams["export_folder"],
            student_card(hparams, brain.metrics),
        )
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
