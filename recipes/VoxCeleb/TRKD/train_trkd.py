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
import json
import logging
import os
import random
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio import audio_io
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_trkd.brain import DistillationBrain
from speechbrain_trkd.plots import (
    write_training_plots,
    write_verification_plots,
)
from speechbrain_trkd.run_identity import check_same_run
from speechbrain_trkd.run_lock import RunLock
from speechbrain_trkd.teacher import class_index_map
from speechbrain_trkd.teacher_cache import (
    TeacherCache,
    build_teacher_cache,
    file_sha256,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speaker_verification import (  # noqa: E402
    evaluate_verification,
    format_results_table,
    load_collected,
    trained_speaker_overlap,
    write_metrics,
)
from voxceleb_prepare import (  # noqa: E402
    as_path_list,
    fetch_verification_list,
    prepare_voxceleb,
)

logger = logging.getLogger(__name__)


def prepare_data(hparams):
    """Runs the VoxCeleb preparation on the main process only.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``data_folder``, ``prep_folder``,
        ``verification_lists``, ``split_ratio``, ``seg_dur``, ``skip_prep``
        and, optionally, ``train_folders``).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=3, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=2,
    ...     duration=(1.0, 2.0))
    >>> hparams = {
    ...     "data_folder": corpus.folder,
    ...     "prep_folder": os.path.join(tmp, "prep"),
    ...     "verification_lists": [corpus.trial_file],
    ...     "split_ratio": [50, 50], "seg_dur": 1.0, "skip_prep": False,
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
            "train_folders": hparams.get("train_folders"),
            "sample_rate": hparams.get("sample_rate"),
        },
    )


def dataio_prep(hparams, cache=None, with_audio=True):
    """Creates the training and validation datasets and the label encoder.

    Training items are random crops of ``sentence_len`` seconds inside each
    prepared segment (when ``random_chunk``); validation items are the whole
    segments. With a teacher cache, a training item is instead one of the
    cache's views of its segment, drawn at random each time, and carries
    the teacher's embedding of it (``teacher_emb``); a validation item is
    view 0. The student's label encoder is saved in ``save_folder``.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.
    cache : speechbrain_trkd.teacher_cache.TeacherCache, optional
        The teacher's cached outputs for the prepared segments.
    with_audio : bool
        False leaves the audio out of the items (``sig``): with a cache, a
        head trained on a frozen teacher backbone needs only ``teacher_emb``.

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
    >>> hparams = {
    ...     "data_folder": corpus.folder,
    ...     "prep_folder": os.path.join(tmp, "prep"),
    ...     "verification_lists": [corpus.trial_file],
    ...     "split_ratio": [50, 50], "seg_dur": 1.0, "skip_prep": False,
    ... }
    >>> prepare_data(hparams)
    >>> hparams.update(
    ...     save_folder=os.path.join(tmp, "save"), sentence_len=0.5,
    ...     sample_rate=16000, random_chunk=True, out_n_neurons=3)
    >>> train_data, valid_data, label_encoder = dataio_prep(hparams)
    >>> item = train_data[0]
    >>> len(label_encoder), item["sig"].shape, item["spk_id_encoded"].shape
    (3, torch.Size([8000]), torch.Size([1]))
    """
    datasets = []
    for split in ("train", "dev"):
        csv_path = os.path.join(hparams["prep_folder"], f"{split}.csv")
        with open(csv_path, encoding="utf-8") as csv_file:
            if sum(1 for _ in csv_file) < 2:
                raise ValueError(
                    f"{csv_path} has no rows: the corpus is too small for "
                    f"split_ratio={hparams['split_ratio']} and "
                    f"seg_dur={hparams['seg_dur']}"
                )
        datasets.append(DynamicItemDataset.from_csv(csv_path))
    train_data, valid_data = datasets
    crop = int(hparams["sentence_len"] * hparams["sample_rate"])

    def read_segment(wav, start, stop, random_crop):
        start, stop = int(start), int(stop)
        if random_crop and stop - start > crop:
            start = random.randint(start, stop - crop)
            stop = start + crop
        return read_crop(wav, start, stop, hparams["sample_rate"])

    if cache is None:

        @sb.utils.data_pipeline.takes("wav", "start", "stop")
        @sb.utils.data_pipeline.provides("sig")
        def train_audio(wav, start, stop):
            return read_segment(wav, start, stop, hparams["random_chunk"])

        @sb.utils.data_pipeline.takes("wav", "start", "stop")
        @sb.utils.data_pipeline.provides("sig")
        def valid_audio(wav, start, stop):
            return read_segment(wav, start, stop, False)

    else:
        add_cached_views(train_data, valid_data, cache, hparams["sample_rate"])
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
    os.makedirs(hparams["save_folder"], exist_ok=True)
    label_encoder.load_or_create(
        path=os.path.join(hparams["save_folder"], "label_encoder.txt"),
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
    n_outputs = hparams["out_n_neurons"]
    if n_speakers != n_outputs:
        raise ValueError(
            f"The training data has {n_speakers} speakers but the student's "
            f"classifier has out_n_neurons={n_outputs}: pass "
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
        The first channel, ``[stop - start]``.

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
    if not torch.isfinite(sig[0]).all():
        raise ValueError(
            f"{wav} holds non-finite samples (NaN or inf) between samples "
            f"{int(start)} and {int(stop)}: repair or remove the file"
        )
    return sig[0]


def add_cached_views(train_data, valid_data, cache, sample_rate):
    """Makes the datasets' items views of a teacher cache.

    A training item draws one of its segment's views at random each time it
    is read, a validation item is view 0; each provides the crop (``sig``)
    and the teacher's embedding of it (``teacher_emb``).

    Arguments
    ---------
    train_data, valid_data : DynamicItemDataset
        With ``id`` (the segment id) and ``wav``.
    cache : speechbrain_trkd.teacher_cache.TeacherCache
        Holds every segment of both datasets.
    sample_rate : int
        The rate the recipe expects.

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
        return read_crop(wav, start, stop, sample_rate)

    @sb.utils.data_pipeline.takes("id", "view")
    @sb.utils.data_pipeline.provides("teacher_emb")
    def view_teacher_emb(segment_id, view):
        return torch.from_numpy(cache.embedding(cache.row(segment_id), view))

    train_data.add_dynamic_item(train_view)
    valid_data.add_dynamic_item(valid_view)
    for data in (train_data, valid_data):
        data.add_dynamic_item(view_audio)
        data.add_dynamic_item(view_teacher_emb)


def cache_teacher_outputs(hparams, embedder, device):
    """Builds, resumes or checks the teacher cache of the prepared segments.

    Every segment of ``train.csv`` and ``dev.csv`` gets
    ``teacher_cache_views`` crops of ``sentence_len`` seconds (drawn from
    ``teacher_cache_seed``), embedded by the teacher under
    ``teacher_cache_precision`` (``fp32`` or ``bf16`` autocast).

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``teacher_cache``,
        ``teacher_cache_views``, ``teacher_cache_seed``,
        ``teacher_cache_precision``, ``teacher_cache_batch_size``,
        ``prep_folder``, ``sentence_len``, ``sample_rate``).
    embedder : callable
        ``embedder(hparams, device) -> (embed_fn, teacher_files, emb_dim)``:
        the frozen embedding function, the files whose sha256 identify it,
        and its embedding size.
    device : str
        Where the teacher runs.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=2,
    ...     duration=(1.0, 2.0))
    >>> hparams = {
    ...     "data_folder": corpus.folder,
    ...     "prep_folder": os.path.join(tmp, "prep"),
    ...     "verification_lists": [corpus.trial_file],
    ...     "split_ratio": [50, 50], "seg_dur": 1.0, "skip_prep": False,
    ...     "teacher_cache": os.path.join(tmp, "cache"),
    ...     "teacher_cache_views": 2, "teacher_cache_seed": 1,
    ...     "teacher_cache_precision": "fp32", "teacher_cache_batch_size": 4,
    ...     "sentence_len": 0.5, "sample_rate": 16000,
    ... }
    >>> prepare_data(hparams)
    >>> weights = os.path.join(tmp, "teacher.ckpt")
    >>> torch.save({}, weights)
    >>> def embedder(hparams, device):
    ...     embed = lambda wavs, lens: wavs[:, None, :8]
    ...     return embed, [weights], 8
    >>> cache_teacher_outputs(hparams, embedder, "cpu")
    >>> cache = TeacherCache(hparams["teacher_cache"])
    >>> cache.views, cache.manifest["emb_dim"]
    (2, 8)
    """
    precision = hparams["teacher_cache_precision"]
    if precision not in ("fp32", "bf16"):
        raise ValueError(
            f"teacher_cache_precision must be fp32 or bf16, got {precision!r}"
        )
    prep = hparams["prep_folder"]
    with open(
        os.path.join(prep, "prepare_options.json"), encoding="utf-8"
    ) as fin:
        prepare_options = json.load(fin)
    # The corpus fingerprint re-runs the preparation when files come or go;
    # the cache then sees other segments (segments_sha256) and is refused.
    prepare_options.pop("corpus", None)
    segments = []
    for split in ("train", "dev"):
        with open(os.path.join(prep, f"{split}.csv"), encoding="utf-8") as fin:
            segments += [dict(row, id=row["ID"]) for row in csv.DictReader(fin)]
    embed_fn, teacher_files, emb_dim = embedder(hparams, device)
    options = {
        "teacher_sha256": {
            os.path.basename(path): file_sha256(path) for path in teacher_files
        },
        "prepare_options": prepare_options,
        "views": int(hparams["teacher_cache_views"]),
        "seed": int(hparams["teacher_cache_seed"]),
        "crop_seconds": float(hparams["sentence_len"]),
        "sample_rate": int(hparams["sample_rate"]),
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
            hparams["teacher_cache"],
            segments,
            embed_on_device,
            lambda segment, start, stop: read_crop(
                segment["wav"], start, stop, hparams["sample_rate"]
            ),
            options,
            emb_dim,
            batch_size=hparams["teacher_cache_batch_size"],
        )


def teacher_embedder(hparams, device):
    """Loads the teacher and returns what ``cache_teacher_outputs`` needs.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``teacher_pretrainer``, ``teacher``).
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
    KeyError: 'teacher_pretrainer'
    """
    pretrainer = hparams["teacher_pretrainer"]
    pretrainer.collect_files()
    load_collected(pretrainer, hparams.get("teacher_sha256"))
    teacher = hparams["teacher"].to(device)
    files = [
        os.path.join(pretrainer.collect_in, f"{name}.ckpt")
        for name in pretrainer.loadables
    ]
    return teacher.embed, files, teacher.classifier.weight.shape[1]


def build_wav_augment(hparams):
    """Builds the waveform augmenter, adding noise and reverberation only
    when their local CSV files are given (nothing is ever downloaded).

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters: ``wav_augment`` (an ``Augmenter``
        factory holding the always-on augmentations), ``noise_csv`` /
        ``rir_csv`` (paths or null), ``add_noise`` / ``add_reverb``
        (factories taking ``csv_file``).

    Returns
    -------
    speechbrain.augment.augmenter.Augmenter or None
        None when the hparams define no ``wav_augment``.

    Example
    -------
    >>> from functools import partial
    >>> from speechbrain.augment.augmenter import Augmenter
    >>> from speechbrain.augment.time_domain import DropChunk
    >>> hparams = {
    ...     "wav_augment": partial(Augmenter, augmentations=[DropChunk()]),
    ...     "noise_csv": None,
    ...     "rir_csv": None,
    ... }
    >>> list(build_wav_augment(hparams).augmentations)
    ['DropChunk0']
    >>> hparams["noise_csv"] = "missing_noise.csv"
    >>> build_wav_augment(hparams)
    Traceback (most recent call last):
    ...
    FileNotFoundError: noise_csv=missing_noise.csv does not exist: ...
    """
    make_augmenter = hparams.get("wav_augment")
    if make_augmenter is None:
        return None
    augmentations = list(make_augmenter.keywords.get("augmentations", []))
    for csv_key, factory_key in (
        ("noise_csv", "add_noise"),
        ("rir_csv", "add_reverb"),
    ):
        csv_file = hparams.get(csv_key)
        if not csv_file:
            continue
        if not os.path.isfile(csv_file):
            raise FileNotFoundError(
                f"{csv_key}={csv_file} does not exist: give a local CSV "
                f"or set {csv_key}: null to train without it"
            )
        augmentations.append(hparams[factory_key](csv_file=csv_file))
    return make_augmenter(augmentations=augmentations)


def load_teacher(hparams, label_encoder):
    """Collects the teacher's files, loads them and aligns its classes.

    The teacher's files (from the Hub id or local folder ``teacher_source``)
    are collected in ``teacher_folder`` by the hparams' ``Pretrainer``. Its
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
        None when ``kd_method`` is ``none``.

    Example
    -------
    >>> load_teacher({"kd_method": "none"}, label_encoder=None) is None
    True
    """
    if hparams["kd_method"] == "none":
        return None
    pretrainer = hparams["teacher_pretrainer"]
    run_on_main(pretrainer.collect_files)
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
    load_collected(pretrainer, hparams.get("teacher_sha256"))
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


def score_encoder(encode_fn, hparams, device):
    """Scores an encoder on the verification lists and saves the metrics.

    Trial paths are resolved against the first data folder; the AS-norm
    cohort and the PLDA training set come from the prepared ``train.csv``.
    Metrics go to ``<output_folder>/metrics.json`` / ``.csv``, score
    files to ``<output_folder>/scores`` and, with ``write_plots``, the DET
    and score-histogram PNGs beside the metrics.

    Arguments
    ---------
    encode_fn : callable
        ``encode_fn(wavs, wav_lens) -> embeddings``.
    hparams : dict
        The loaded hyperparameters (``verification_lists``,
        ``verification_backends``, ``asnorm_top_n``,
        ``cohort_utterances_per_speaker``, ``verification_batch_size``).
    device : str or torch.device
        Where the encoder runs.

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
    >>> hparams = {
    ...     "data_folder": corpus.folder,
    ...     "prep_folder": os.path.join(tmp, "prep"),
    ...     "verification_lists": [corpus.trial_file],
    ...     "split_ratio": [50, 50], "seg_dur": 1.0, "skip_prep": False,
    ... }
    >>> prepare_data(hparams)
    >>> hparams.update(
    ...     output_folder=os.path.join(tmp, "run"), sample_rate=16000,
    ...     verification_backends=["cosine", "asnorm"], asnorm_top_n=2,
    ...     cohort_utterances_per_speaker=2, verification_batch_size=4)
    >>> def encode(wavs, wav_lens):  # two crude spectral statistics
    ...     spectrum = torch.fft.rfft(wavs).abs()
    ...     return torch.stack([spectrum[:, :400].mean(1),
    ...                         spectrum[:, 400:].mean(1)], dim=1)
    >>> metrics = score_encoder(encode, hparams, "cpu")
    >>> sorted(metrics["O"]), sorted(metrics["O"]["cosine"])
    (['asnorm', 'cosine'], ['eer', 'min_dcf_0.01', 'min_dcf_0.05'])
    """
    prep = hparams["prep_folder"]
    lists = [
        fetch_verification_list(src, prep)
        for src in as_path_list(hparams["verification_lists"])
    ]
    metrics = evaluate_verification(
        encode_fn,
        data_folder=as_path_list(hparams["data_folder"])[0],
        trial_lists=lists,
        output_folder=hparams["output_folder"],
        backends=hparams["verification_backends"],
        train_csv=os.path.join(prep, "train.csv"),
        cohort_utts_per_speaker=hparams["cohort_utterances_per_speaker"],
        asnorm_top_n=hparams["asnorm_top_n"],
        batch_size=hparams["verification_batch_size"],
        device=device,
        sample_rate=hparams["sample_rate"],
    )
    write_metrics(metrics, hparams["output_folder"])
    if hparams.get("write_plots"):
        write_verification_plots(metrics, hparams["output_folder"])
    teacher_encoder = os.path.join(
        hparams.get("teacher_folder", ""), "label_encoder.ckpt"
    )
    overlap = {}
    if hparams.get("teacher_folder") and os.path.isfile(teacher_encoder):
        overlap = trained_speaker_overlap(lists, teacher_encoder)
    logger.info(
        "Verification results:\n%s", format_results_table(metrics, overlap)
    )
    return metrics


def run_training(
    brain_class, argv, before_fit, cache_embedder=None, cached_only=False
):
    """The run every training script of the recipe shares.

    Parses the command line, loads the hparams, takes the output folder's
    lock (one run per folder, see ``RunLock``), refuses a folder trained
    with other settings (``check_same_run``), prepares the data on the
    main process, builds or checks the teacher cache there when
    ``teacher_cache`` is set, builds the datasets (from the cache's views
    then) and the augmenter, lets ``before_fit``
    load what the script needs (a teacher, a pretrained backbone), trains
    (resuming from the last checkpoint), recovers the checkpoint of lowest
    validation error and scores it on the main process (``brain.metrics``).

    Arguments
    ---------
    brain_class : type
        A ``DistillationBrain`` (sub)class.
    argv : list of str
        ``[hparams_file, --key=value ...]``, SpeechBrain style.
    before_fit : callable
        ``before_fit(hparams, label_encoder)``, called once the data exist.
    cache_embedder : callable, optional
        ``cache_embedder(hparams, device)``, the embedder of
        ``cache_teacher_outputs``; needed when ``teacher_cache`` is set.
    cached_only : bool
        With a teacher cache, leave the audio out of the items (the run
        needs only the cached embeddings).

    Returns
    -------
    brain : DistillationBrain
        The trained brain; ``brain.metrics`` holds the verification
        metrics on the main process (None elsewhere).
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
    >>> hparams_file = os.path.join(
    ...     os.path.dirname(__file__), "hparams", "ecapa_to_small.yaml")
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):  # SpeechBrain's log
    ...     brain, hparams = run_training(DistillationBrain, [
    ...         hparams_file, f"--data_folder={corpus.folder}",
    ...         f"--output_folder={tmp}/run", f"--prep_folder={tmp}/prep",
    ...         f"--verification_lists=[{corpus.trial_file}]",
    ...         "--split_ratio=[50, 50]", "--seg_dur=1.0",
    ...         "--sentence_len=1.0", "--out_n_neurons=3", "--kd_method=none",
    ...         "--student_channels=8", "--batch_size=4", "--num_workers=0",
    ...         "--number_of_epochs=1", "--verification_backends=[cosine]",
    ...         "--noprogressbar",
    ...     ], before_fit=lambda hparams, label_encoder: None)
    >>> sorted(brain.metrics["O"]["cosine"])
    ['eer', 'min_dcf_0.01', 'min_dcf_0.05']
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    # Pretrained weights drive CPU activations into denormal floats, which
    # made the ECAPA-1024 teacher 3.7x slower on CPU (21 s -> 5.7 s per 32
    # crops of 2 s); flushing them to zero changes no result.
    torch.set_flush_denormal(True)
    sb.utils.distributed.ddp_init_group(run_opts)
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
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=hparams_file,
            overrides=overrides,
        )
        brain = _train_and_score(
            brain_class,
            hparams,
            run_opts,
            before_fit,
            cache_embedder,
            cached_only,
        )
    return brain, hparams


def _train_and_score(
    brain_class, hparams, run_opts, before_fit, cache_embedder, cached_only
):
    """The data, the teacher cache, training and scoring of
    :func:`run_training` (see there for the arguments).

    Returns
    -------
    DistillationBrain
        Trained, its best checkpoint loaded; ``metrics`` set on the main
        process.
    """
    prepare_data(hparams)
    cache = None
    if hparams.get("teacher_cache"):
        if hparams.get("wav_augment") is not None:
            raise ValueError(
                "teacher_cache holds the teacher's outputs for crops without "
                "augmentation, so the student must see them as they are: "
                "pass --wav_augment=null"
            )
        run_on_main(
            cache_teacher_outputs,
            args=[hparams, cache_embedder, run_opts.get("device", "cpu")],
        )
        cache = TeacherCache(hparams["teacher_cache"])
    train_data, valid_data, label_encoder = dataio_prep(
        hparams, cache, with_audio=cache is None or not cached_only
    )
    hparams["wav_augment"] = build_wav_augment(hparams)
    before_fit(hparams, label_encoder)

    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        train_data,
        valid_data,
        train_loader_kwargs=hparams["train_dataloader_options"],
        valid_loader_kwargs=hparams["valid_dataloader_options"],
    )
    brain.checkpointer.recover_if_possible(min_key="ErrorRate")
    brain.metrics = None
    if if_main_process():
        brain.metrics = score_encoder(
            student_encoder(brain), hparams, brain.device
        )
        if hparams.get("write_plots"):
            uses_tau = getattr(hparams["kd_loss"], "uses_tau", False)
            write_training_plots(
                hparams["train_log"],
                hparams["output_folder"],
                hparams.get("tau_schedule") if uses_tau else None,
            )
    return brain


def main(argv):
    """Prepares the data, distils the student and scores it."""

    def attach_teacher(hparams, label_encoder):
        hparams["teacher"] = load_teacher(hparams, label_encoder)

    brain, _ = run_training(
        DistillationBrain, argv, attach_teacher, cache_embedder=teacher_embedder
    )
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
