"""A run's teacher loaded from its pretrained folder: its files collected
(pinned), loaded as weights and aligned to the student's speakers; the
check, before a teacher cache is built, that it knows them; and a frozen
backbone for a teacher's new head.

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import os

import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.processing.features import InputNormalization

from speechbrain_trkd.pretrained import collect_pinned, load_collected
from speechbrain_trkd.teacher import class_index_map


def teacher_embedder(pretrainer, revision, sha256, teacher, device):
    """Loads the teacher and returns what ``cache_teacher_outputs`` needs.

    Arguments
    ---------
    pretrainer : speechbrain.utils.parameter_transfer.Pretrainer
        Collects the teacher's files (hparam ``pretrainer``).
    revision : str or None
        The pinned Hub revision (``teacher_revision``).
    sha256 : dict or None
        The files' pins (``teacher_sha256``).
    teacher : speechbrain_trkd.teacher.FrozenTeacher
        The teacher, loaded in place.
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
    >>> pretrainer, teacher = _example_teacher()
    >>> embed, files, emb_dim = teacher_embedder(
    ...     pretrainer, None, None, teacher, "cpu")
    >>> emb_dim, sorted(os.path.basename(path) for path in files)
    (16, ['classifier.ckpt', 'embedding_model.ckpt', 'label_encoder.ckpt'])
    """
    collect_pinned(pretrainer, revision)
    load_collected(pretrainer, sha256)
    teacher = teacher.to(device)
    files = [
        os.path.join(pretrainer.collect_in, f"{name}.ckpt")
        for name in pretrainer.loadables
    ]
    return teacher.embed, files, teacher.classifier.weight.shape[1]


def load_teacher(
    pretrainer, teacher, label_encoder, *, revision, sha256, source, n_classes
):
    """Collects the teacher's files, loads them and aligns its classes.

    The teacher's files (from the Hub id or local folder ``teacher_source``)
    are collected by ``pretrainer`` (in the hparam ``teacher_folder``). Its
    outputs are then sliced to the student's speakers through the two label
    encoders.

    Arguments
    ---------
    pretrainer : speechbrain.utils.parameter_transfer.Pretrainer
        Collects the teacher's files (hparam ``pretrainer``).
    teacher : speechbrain_trkd.teacher.FrozenTeacher
        The teacher, loaded and aligned in place.
    label_encoder : CategoricalEncoder
        The student's label encoder.
    revision : str or None
        The pinned Hub revision (``teacher_revision``).
    sha256 : dict or None
        The files' pins (``teacher_sha256``).
    source : str
        The teacher's Hub id or folder, for the messages.
    n_classes : int
        The speakers the teacher must know (``teacher_n_classes``).

    Returns
    -------
    speechbrain_trkd.teacher.FrozenTeacher
        ``teacher``.

    Example
    -------
    >>> pretrainer, teacher = _example_teacher()  # knows speakers a, b
    >>> student_speakers = CategoricalEncoder()
    >>> student_speakers.update_from_iterable(["b"])
    >>> load_teacher(pretrainer, teacher, student_speakers, revision=None,
    ...              sha256=None, source="t", n_classes=2).num_classes
    1
    >>> load_teacher(pretrainer, teacher, student_speakers, revision=None,
    ...              sha256=None, source="t", n_classes=3)
    Traceback (most recent call last):
    ...
    ValueError: The teacher t knows 2 speakers (...) but teacher_n_classes=3...
    """
    collect_pinned(pretrainer, revision)
    # The Pretrainer collects every file as <loadable name>.ckpt.
    encoder_file = os.path.realpath(
        os.path.join(pretrainer.collect_in, "label_encoder.ckpt")
    )
    teacher_encoder = CategoricalEncoder()
    try:
        teacher_encoder.load(encoder_file)
    except ValueError as error:
        raise ValueError(f"{encoder_file} is damaged ({error})") from error
    if len(teacher_encoder) != n_classes:
        raise ValueError(
            f"The teacher {source} knows "
            f"{len(teacher_encoder)} speakers ({encoder_file}) but "
            f"teacher_n_classes={n_classes}: pass "
            f"--teacher_n_classes={len(teacher_encoder)}"
        )
    load_collected(pretrainer, sha256)
    try:
        index = class_index_map(teacher_encoder, label_encoder)
    except ValueError as error:
        raise ValueError(
            f"{error.args[0]}. The teacher {source} does "
            "not know these training speakers: fine-tune a head for them "
            "with train_teacher.py and distil from its output folder."
        ) from error
    teacher.set_class_index(index)
    return teacher


def check_teacher_speakers(pretrainer, revision, train_csv, source):
    """Raises, before a teacher cache is built, unless the teacher knows
    every training speaker of ``train_csv`` (``load_teacher`` would refuse
    it only after the whole cache was built).

    Arguments
    ---------
    pretrainer : speechbrain.utils.parameter_transfer.Pretrainer
        Collects the teacher's files (hparam ``pretrainer``).
    revision : str or None
        The pinned Hub revision (``teacher_revision``).
    train_csv : str
        The training CSV (column ``spk_id``).
    source : str
        The teacher's Hub id or folder, for the message.

    Example
    -------
    >>> import csv, tempfile
    >>> pretrainer, _ = _example_teacher()  # knows speakers a, b
    >>> train_csv = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> with open(train_csv, "w", newline="") as fout:
    ...     csv.writer(fout).writerows([["ID", "spk_id"], ["u1", "b"]])
    >>> check_teacher_speakers(pretrainer, None, train_csv, "t")
    >>> with open(train_csv, "a", newline="") as fout:
    ...     _ = csv.writer(fout).writerow(["u2", "z"])
    >>> check_teacher_speakers(pretrainer, None, train_csv, "t")
    Traceback (most recent call last):
    ...
    ValueError: ... The teacher t does not know these training speakers...
    """
    collect_pinned(pretrainer, revision)
    teacher_encoder = CategoricalEncoder()
    teacher_encoder.load(
        os.path.join(pretrainer.collect_in, "label_encoder.ckpt")
    )
    with open(train_csv, newline="", encoding="utf-8") as fin:
        speakers = sorted({row["spk_id"] for row in csv.DictReader(fin)})
    students = CategoricalEncoder()
    students.update_from_iterable(speakers)
    try:
        class_index_map(teacher_encoder, students)
    except ValueError as error:
        raise ValueError(
            f"{error.args[0]} (in {train_csv}). The teacher {source} does "
            "not know these training speakers: fine-tune a head for them "
            "with train_teacher.py and distil from its output folder."
        ) from error


def backbone_embedder(
    pretrainer,
    revision,
    sha256,
    compute_features,
    mean_var_norm,
    embedding_model,
    emb_dim,
    device,
):
    """Loads a pretrained backbone, frozen, and returns what
    ``cache_teacher_outputs`` needs (a teacher's cache of its embeddings,
    from which only a new head is trained).

    Arguments
    ---------
    pretrainer : speechbrain.utils.parameter_transfer.Pretrainer or None
        Collects the backbone's files (hparam ``pretrainer``).
    revision : str or None
        The pinned Hub revision (``teacher_revision``).
    sha256 : dict or None
        The files' pins (``teacher_sha256``).
    compute_features, mean_var_norm, embedding_model : torch.nn.Module
        The backbone's parts, loaded in place.
    emb_dim : int
        The embedding size.
    device : str
        Where the backbone runs.

    Returns
    -------
    embed_fn : callable
        Waveforms to embeddings, in eval mode.
    teacher_files : list of str
        The collected backbone weights.
    emb_dim : int
        The embedding size.

    Example
    -------
    >>> pretrainer, teacher = _example_teacher()
    >>> embed, files, emb_dim = backbone_embedder(
    ...     pretrainer, None, None, teacher.compute_features,
    ...     teacher.mean_var_norm, teacher.embedding_model, 16, "cpu")
    >>> embed(torch.randn(2, 8000), torch.ones(2)).shape
    torch.Size([2, 1, 16])
    >>> backbone_embedder(None, None, None, None, None, None, 16, "cpu")
    Traceback (most recent call last):
    ...
    ValueError: teacher_cache needs a pretrained backbone (pretrainer)
    """
    if pretrainer is None:
        raise ValueError(
            "teacher_cache needs a pretrained backbone (pretrainer)"
        )
    collect_pinned(pretrainer, revision)
    load_collected(pretrainer, sha256)
    features = compute_features.to(device)
    norm = mean_var_norm.to(device)
    backbone = embedding_model.to(device).eval()

    def embed(wavs, lens):
        return backbone(norm(features(wavs), lens), lens)

    files = [
        os.path.join(pretrainer.collect_in, f"{name}.ckpt")
        for name in pretrainer.loadables
    ]
    return embed, files, emb_dim


def _example_teacher():
    """A two-speaker ECAPA teacher saved as a collected folder, and the
    ``Pretrainer`` that collects it (for the examples)."""
    import tempfile

    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.utils.parameter_transfer import Pretrainer

    from speechbrain_trkd.teacher import FrozenTeacher

    folder = tempfile.mkdtemp()
    teacher = FrozenTeacher(
        Fbank(n_mels=24),
        InputNormalization(norm_type="sentence", std_norm=False),
        ECAPA_TDNN(24, channels=[8, 8, 8, 8, 24], lin_neurons=16),
        Classifier(16, out_neurons=2),
    )
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["a", "b"])
    encoder.save(os.path.join(folder, "label_encoder.ckpt"))
    loadables = {
        "embedding_model": teacher.embedding_model,
        "classifier": teacher.classifier,
    }
    for name, module in loadables.items():
        torch.save(module.state_dict(), os.path.join(folder, f"{name}.ckpt"))
    loadables["label_encoder"] = encoder
    paths = {name: os.path.join(folder, f"{name}.ckpt") for name in loadables}
    pretrainer = Pretrainer(collect_in=folder, loadables=loadables, paths=paths)
    return pretrainer, teacher
