#!/usr/bin/env python3
"""Export a trained speaker encoder as a SpeechBrain pretrained-model folder.

The folder holds ``hyperparams.yaml``, ``embedding_model.ckpt``,
``classifier.ckpt``, ``label_encoder.txt`` and a model-card ``README.md``, so
``EncoderClassifier.from_hparams(source=folder)`` loads it directly and it is
ready to upload to the Hugging Face Hub.

To run, with the output folder of the training run to export (its best
checkpoint, by validation error, is exported; the run's ``hyperparams.yaml``
gives every setting)::

    python export_student.py <run folder> [--export_folder=...] \\
        [--onnx] [--onnx_int8] [--onnx_waveform]

A recipe hparams file with overrides works too, as long as its settings are
the run's (``--output_folder`` names the run); a differing key is refused.

``--onnx`` adds ``embedding_model.onnx`` to the folder, an ONNX graph from
the normalised features ``[batch, frames, 80]`` to the embeddings ``[batch,
192]``; ``--onnx_int8`` also its static int8 copy (QDQ, per-channel
weights), ``embedding_model.int8.onnx``, calibrated on
``--onnx_calibration_crops`` crops of the run's training CSV (see
``speechbrain_trkd/onnx_int8.py``). ``--onnx_waveform`` adds
``embedding_model.waveform.onnx``, a graph from the 16 kHz waveform
``[batch, samples]`` with the filterbank and the mean normalisation inside
(see ``speechbrain_trkd/onnx_waveform.py``).

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import logging
import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from speechbrain_trkd.export import export_best_checkpoint
from speechbrain_trkd.run_identity import run_command_line


def parse_onnx_flags(argv):
    """Splits the ONNX flags off the command line.

    ``--onnx`` also writes ``embedding_model.onnx`` (features to
    embeddings, see ``speechbrain_trkd.onnx_export``); ``--onnx_int8``
    writes its static int8 copy too, calibrated on
    ``--onnx_calibration_crops`` crops of the training CSV;
    ``--onnx_waveform`` writes the graph that starts from the waveform
    (``speechbrain_trkd.onnx_waveform``). All need the ``deploy`` extra.

    Arguments
    ---------
    argv : list of str
        The command line (without the program name).

    Returns
    -------
    tuple
        ``(flags, rest)``: an ``argparse.Namespace`` and the arguments
        left for ``speechbrain.parse_arguments``.

    Example
    -------
    >>> flags, rest = parse_onnx_flags(["h.yaml", "--onnx", "--seed=3"])
    >>> flags.onnx, flags.onnx_int8, flags.onnx_waveform, rest
    (True, False, False, ['h.yaml', '--seed=3'])
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--onnx", action="store_true")
    parser.add_argument("--onnx_int8", action="store_true")
    parser.add_argument("--onnx_calibration_crops", type=int, default=128)
    parser.add_argument("--onnx_waveform", action="store_true")
    return parser.parse_known_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    onnx_flags, arguments = parse_onnx_flags(sys.argv[1:])
    hparams_file, _, overrides = sb.parse_arguments(run_command_line(arguments))
    with open(hparams_file, encoding="utf-8") as fin:
        loaded = load_hyperpyyaml(fin, overrides)
    # Everything int8 needs is read before anything is written.
    calibration = None
    if onnx_flags.onnx_int8:
        from speechbrain_trkd.onnx_int8 import (
            calibration_features,
            quantize_int8_static,
        )

        calibration_csv = loaded["train_annotation"]
        if not os.path.isfile(calibration_csv):
            raise FileNotFoundError(
                f"--onnx_int8 calibrates on the run's training CSV "
                f"{calibration_csv}, which does not exist: run the export "
                "from the folder the run was started in, or pass "
                "--train_annotation=<a segment CSV of the training audio>"
            )
        calibration = calibration_features(
            calibration_csv,
            onnx_flags.onnx_calibration_crops,
            crop_seconds=loaded["sentence_len"],
            sample_rate=loaded["sample_rate"],
            seed=loaded["seed"],
            n_mels=loaded.get("n_mels", 80),
        )
    folder = export_best_checkpoint(loaded)
    if onnx_flags.onnx or onnx_flags.onnx_int8:
        from speechbrain_trkd.onnx_export import (
            INT8_FILE,
            ONNX_FILE,
            export_onnx,
        )

        onnx_path = export_onnx(
            loaded["embedding_model"],
            os.path.join(folder, ONNX_FILE),
            n_mels=loaded.get("n_mels", 80),
        )
    if calibration is not None:
        quantize_int8_static(
            onnx_path, calibration, os.path.join(folder, INT8_FILE)
        )
    if onnx_flags.onnx_waveform:
        from speechbrain_trkd.onnx_export import WAVEFORM_FILE
        from speechbrain_trkd.onnx_waveform import export_waveform_onnx

        export_waveform_onnx(
            loaded["embedding_model"],
            os.path.join(folder, WAVEFORM_FILE),
            n_mels=loaded.get("n_mels", 80),
        )
    print(folder)
