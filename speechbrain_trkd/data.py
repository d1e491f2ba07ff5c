"""The recipe's datasets: segment crops, cached teacher views, labels and
the waveform augmentation.

Authors
 * speechbrain-trkd developers 2026
"""

import os
import random

import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_trkd.audio_cache import load_audio


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
    >>> segments = corpus.training_csv(os.path.join(tmp, "segments.csv"))
    >>> train_data, valid_data, label_encoder = dataio_prep(
    ...     segments, segments, os.path.join(tmp, "save"),
    ...     n_classes=3, crop_seconds=0.5, sample_rate=16000,
    ...     random_chunk=True)
    >>> item = train_data[0]
    >>> len(label_encoder), item["sig"].shape, item["spk_id_encoded"].shape
    (3, torch.Size([8000]), torch.Size([1]))
    """
    datasets = [_read_segments(csv) for csv in (train_csv, valid_csv)]
    train_data, valid_data = datasets
    if cache is None:
        add_crops(
            train_data, valid_data, crop_seconds, sample_rate, random_chunk
        )
    else:
        add_cached_views(
            train_data, valid_data, cache, sample_rate, cache_augment
        )
    label_encoder = _add_labels(datasets, save_folder, n_classes)
    keys = (
        ["id", "sig", "spk_id_encoded"]
        if with_audio
        else ["id", "spk_id_encoded"]
    )
    sb.dataio.dataset.set_output_keys(
        datasets, keys + ["teacher_emb"] if cache is not None else keys
    )
    return train_data, valid_data, label_encoder


def _read_segments(csv_path):
    """A segment CSV as a dataset, refused when it has no rows."""
    with open(csv_path, encoding="utf-8") as csv_file:
        if sum(1 for _ in csv_file) < 2:
            raise ValueError(
                f"{csv_path} has no rows: the corpus is too small for "
                "the preparation's split_ratio and seg_dur"
            )
    return DynamicItemDataset.from_csv(csv_path)


def add_crops(train_data, valid_data, crop_seconds, sample_rate, random_chunk):
    """Adds ``sig``: a random crop of ``crop_seconds`` inside each training
    segment (with ``random_chunk``; else the whole segment), and the whole
    segment for validation.

    Arguments
    ---------
    train_data, valid_data : DynamicItemDataset
        Segments (``wav``, ``start``, ``stop`` in samples).
    crop_seconds : float
        Length of a training crop.
    sample_rate : int
        The audio's sample rate (checked).
    random_chunk : bool
        Crop the training segments.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> corpus = make_synthetic_corpus(
    ...     tempfile.mkdtemp(), n_train_speakers=1, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=1,
    ...     duration=(1.0, 1.0), trials_per_utterance=1)
    >>> segments = corpus.training_csv(tempfile.mktemp(suffix=".csv"))
    >>> train, valid = (DynamicItemDataset.from_csv(segments) for _ in "tv")
    >>> add_crops(train, valid, 0.5, 16000, random_chunk=True)
    >>> train.set_output_keys(["sig"]), valid.set_output_keys(["sig"])
    (None, None)
    >>> train[0]["sig"].shape, valid[0]["sig"].shape
    (torch.Size([8000]), torch.Size([16000]))
    """
    crop = int(crop_seconds * sample_rate)

    def read_segment(wav, start, stop, random_crop):
        start, stop = int(start), int(stop)
        if random_crop and stop - start > crop:
            start = random.randint(start, stop - crop)
            stop = start + crop
        return read_crop(wav, start, stop, sample_rate)

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def train_audio(wav, start, stop):
        return read_segment(wav, start, stop, random_chunk)

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def valid_audio(wav, start, stop):
        return read_segment(wav, start, stop, False)

    train_data.add_dynamic_item(train_audio)
    valid_data.add_dynamic_item(valid_audio)


def _add_labels(datasets, save_folder, n_classes):
    """Adds ``spk_id_encoded`` to the datasets; returns the label encoder
    (saved in ``save_folder``), checked against ``n_classes``."""
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
        from_didatasets=[datasets[0]],
        output_key="spk_id",
    )
    n_speakers = len(label_encoder)
    if n_speakers != n_classes:
        raise ValueError(
            f"The training data has {n_speakers} speakers but the student's "
            f"classifier has out_n_neurons={n_classes}: pass "
            f"--out_n_neurons={n_speakers}"
        )
    label_encoder.expect_len(n_speakers)  # checked against the classifier
    return label_encoder


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
    >>> from speechbrain.dataio import audio_io
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
    sig, rate = load_audio(
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
