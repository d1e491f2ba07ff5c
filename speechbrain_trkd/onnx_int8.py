"""int8 copies of an exported encoder: static (calibrated on speech), and
dynamic.

ONNX Runtime's dynamic quantisation (:func:`quantize_int8`) suits
MatMul-heavy models; a speaker encoder is convolutional, where ONNX Runtime
advises static quantisation (:func:`quantize_int8_static`) in the QDQ
format: the graph is pre-processed (``quant_pre_process``), every
activation's range is measured on representative inputs (a
``CalibrationDataReader``), and weights are quantised per output channel.
The representative inputs here are crops of the training audio, as the
features the encoder was trained on (:func:`calibration_features`).

Needs the ``deploy`` extra (``pip install -e ".[deploy]"``).

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import os
import tempfile

import numpy as np

from speechbrain_trkd.data import read_crop
from speechbrain_trkd.onnx_export import INPUT_NAME, speaker_features

# Only the weighted operators run in int8; the rest (batch norm folded into
# Add/Mul, activations, attentive statistics pooling's softmax, means and
# square roots) stays float. Quantising every operator of the trained
# ECAPA C=128 student gave a worst cosine to fp32 of 0.37 on 40 openspk
# utterances (O EER 11.9 % against 5.76 %); these three give 0.9991.
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def calibration_features(
    segments_csv,
    n_crops,
    crop_seconds=2.0,
    sample_rate=16000,
    seed=0,
    n_mels=80,
):
    """Features of ``n_crops`` crops of a segment CSV, for calibration.

    The crops come from segments drawn without replacement (all of them when
    there are fewer), each at a random offset, from ``seed`` alone.

    Arguments
    ---------
    segments_csv : str
        A SpeechBrain segment CSV (``wav``, ``start``, ``stop`` in samples),
        e.g. the training CSV of the run.
    n_crops : int
        How many crops.
    crop_seconds : float
        Length of a crop (a shorter segment is taken whole).
    sample_rate : int
        The audio's rate (checked).
    seed : int
        Seed of the draw.
    n_mels : int
        Feature size of the graph.

    Returns
    -------
    list of numpy.ndarray
        Features ``[1, frames, n_mels]``, float32, one per crop.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> corpus = make_synthetic_corpus(
    ...     tempfile.mkdtemp(), n_train_speakers=2, n_dev_speakers=2,
    ...     sessions_per_speaker=1, utterances_per_session=2,
    ...     duration=(1.0, 1.0), trials_per_utterance=1)
    >>> segments = corpus.training_csv(tempfile.mktemp(suffix=".csv"))
    >>> feats = calibration_features(segments, 3, crop_seconds=0.5)
    >>> len(feats), feats[0].shape
    (3, (1, 51, 80))
    """
    with open(segments_csv, newline="", encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    if not rows or int(n_crops) < 1:
        raise ValueError(
            f"calibration needs at least one crop: {segments_csv} has "
            f"{len(rows)} segments, and {n_crops} crops were asked for"
        )
    generator = np.random.default_rng(seed)
    picked = generator.permutation(len(rows))[: int(n_crops)]
    crop = int(crop_seconds * sample_rate)
    features = []
    for index in picked:
        row = rows[index]
        start, stop = int(float(row["start"])), int(float(row["stop"]))
        if stop - start > crop:
            start = int(generator.integers(start, stop - crop + 1))
            stop = start + crop
        wav = read_crop(row["wav"], start, stop, sample_rate)
        features.append(speaker_features(wav, n_mels=n_mels).numpy())
    return features


class _FeatureReader:
    """ONNX Runtime's ``CalibrationDataReader`` interface (``get_next``)
    over a list of feature arrays."""

    def __init__(self, features):
        self._inputs = iter([{INPUT_NAME: feats} for feats in features])

    def get_next(self):
        """The next input, or None at the end."""
        return next(self._inputs, None)


def quantize_int8_static(onnx_path, features, int8_path=None):
    """Static int8 quantisation in the QDQ format, per-channel weights, of
    the weighted operators (``QUANTIZED_OPS``).

    Arguments
    ---------
    onnx_path : str
        An fp32 graph of :func:`speechbrain_trkd.onnx_export.export_onnx`.
    features : list of numpy.ndarray
        Calibration inputs (:func:`calibration_features`).
    int8_path : str, optional
        Where to write; by default ``<name>.int8.onnx`` beside it.

    Returns
    -------
    str
        The int8 file.

    Example
    -------
    >>> import os, tempfile, torch
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> from speechbrain_trkd.onnx_export import export_onnx, onnx_session
    >>> model = ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=4)
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "m.onnx"))
    >>> feats = [speaker_features(torch.randn(8000)).numpy() for _ in "ab"]
    >>> int8 = quantize_int8_static(path, feats)
    >>> session = onnx_session(int8)
    >>> session.run(None, {"features": feats[0]})[0].shape
    (1, 4)
    """
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not features:
        raise ValueError("static int8 quantisation needs calibration inputs")
    return quantized_copy(
        onnx_path,
        int8_path,
        lambda prepared, out: quantize_static(
            prepared,
            out,
            _FeatureReader(features),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
        ),
    )


def quantize_int8(onnx_path, int8_path=None):
    """Dynamic int8 quantisation with ONNX Runtime's quantiser.

    Weights are stored as int8 (per tensor); activations are quantised at
    run time. The graph is first pre-processed (shape inference and graph
    optimisation), as ONNX Runtime recommends.

    Arguments
    ---------
    onnx_path : str
        The float32 graph.
    int8_path : str, optional
        Where to write; by default ``<name>.int8.onnx`` beside it.

    Returns
    -------
    str
        The int8 file.

    Example
    -------
    >>> from speechbrain.lobes.models.ResNet import ResNet
    >>> from speechbrain_trkd.onnx_export import export_onnx
    >>> model = ResNet(80, channels=[4, 4, 4, 4], block_sizes=[1, 1, 1, 1],
    ...                lin_neurons=8)
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "m.onnx"))
    >>> os.path.basename(quantize_int8(path))
    'm.int8.onnx'
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return quantized_copy(
        onnx_path,
        int8_path,
        lambda prepared, out: quantize_dynamic(
            prepared, out, weight_type=QuantType.QInt8
        ),
    )


def quantized_copy(onnx_path, int8_path, quantize):
    """Pre-processes a float32 graph (shape inference and graph
    optimisation, as ONNX Runtime recommends), runs ``quantize(prepared,
    out)`` on it, and moves the result into place whole.

    Arguments
    ---------
    onnx_path : str
        The float32 graph.
    int8_path : str or None
        Where to write; None: ``<name>.int8.onnx`` beside it.
    quantize : callable
        One of ONNX Runtime's quantisers, given its input and output paths.

    Returns
    -------
    str
        The int8 file.

    Example
    -------
    >>> import shutil
    >>> from speechbrain.lobes.models.ResNet import ResNet
    >>> from speechbrain_trkd.onnx_export import export_onnx
    >>> model = ResNet(80, channels=[4, 4, 4, 4], block_sizes=[1, 1, 1, 1],
    ...                lin_neurons=8)
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "m.onnx"))
    >>> os.path.basename(quantized_copy(path, None, shutil.copy))
    'm.int8.onnx'
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if int8_path is None:
        int8_path = os.path.splitext(onnx_path)[0] + ".int8.onnx"
    with tempfile.TemporaryDirectory() as work:
        prepared = os.path.join(work, "prepared.onnx")
        quant_pre_process(onnx_path, prepared)
        quantize(prepared, int8_path + ".tmp")
    os.replace(int8_path + ".tmp", int8_path)
    return int8_path
