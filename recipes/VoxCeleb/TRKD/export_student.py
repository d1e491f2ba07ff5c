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

from speechbrain_trkd.export import export_model, student_card
from speechbrain_trkd.run_identity import (
    NOT_TRAINING_KEYS,
    changes_since_run,
    listed_changes,
    resolved_settings,
)


def export_from_hparams(hparams, card_info=None):
    """Exports the best checkpoint of a training run described by hparams.

    Arguments
    ---------
    hparams : dict
        The loaded training hyperparameters (``checkpointer``,
        ``embedding_model``, ``classifier``, ``save_folder``,
        ``inference_hparams``, ``inference_overrides``, ``export_folder``).
    card_info : dict, optional
        Extra model-card facts (e.g. metrics).

    Returns
    -------
    str
        The export folder.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    >>> tmp = tempfile.mkdtemp()
    >>> emb = ECAPA_TDNN(80, channels=[8, 8, 8, 8, 24], lin_neurons=192)
    >>> head = Classifier(192, out_neurons=1)
    >>> save = os.path.join(tmp, "save")
    >>> checkpointer = Checkpointer(
    ...     save, {"embedding_model": emb, "classifier": head})
    >>> _ = checkpointer.save_checkpoint(meta={"ErrorRate": 0.5})
    >>> from speechbrain.dataio.encoder import CategoricalEncoder
    >>> encoder = CategoricalEncoder()
    >>> encoder.update_from_iterable(["spk1"])
    >>> encoder.save(os.path.join(save, "label_encoder.txt"))
    >>> hparams = {
    ...     "checkpointer": checkpointer, "embedding_model": emb,
    ...     "classifier": head, "save_folder": save,
    ...     "inference_hparams": "models/ecapa.yaml",
    ...     "inference_overrides": {"channels": 8, "out_n_neurons": 1},
    ...     "export_folder": os.path.join(tmp, "export"),
    ... }
    >>> os.path.basename(export_from_hparams(hparams))
    'export'
    """
    checkpoint = hparams["checkpointer"].recover_if_possible(
        min_key="ErrorRate"
    )
    if checkpoint is None:
        raise FileNotFoundError(
            f"No checkpoint in {hparams['save_folder']}: train first "
            "with the same hparams and overrides"
        )
    info = student_card(hparams)
    info["training"]["checkpoint"] = os.path.basename(str(checkpoint.path))
    info.update(card_info or {})
    return export_model(
        hparams["embedding_model"],
        hparams["classifier"],
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["inference_hparams"],
        hparams["inference_overrides"],
        hparams["export_folder"],
        info,
    )


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


def run_hparams(argv):
    """The command line with a run folder replaced by the ``hyperparams.yaml``
    it saved (every setting of the run, so no override is repeated); a
    recipe hparams file whose settings differ from the run's is refused,
    naming the keys.

    Arguments
    ---------
    argv : list of str
        ``[run folder or hparams file, --key=value ...]``.

    Returns
    -------
    list of str
        The command line for ``speechbrain.parse_arguments``.

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> with open(os.path.join(run, "hyperparams.yaml"), "w") as fout:
    ...     _ = fout.write(f"output_folder: {run}\\nchannels: 128\\n")
    >>> run_hparams([run]) == [os.path.join(run, "hyperparams.yaml")]
    True
    >>> recipe = os.path.join(tempfile.mkdtemp(), "recipe.yaml")
    >>> with open(recipe, "w") as fout:
    ...     _ = fout.write("output_folder: x\\nchannels: 512\\n")
    >>> run_hparams([recipe, f"--output_folder={run}"])
    Traceback (most recent call last):
    ...
    ValueError: ... was trained with other settings: channels: 128 -> 512...
    """
    if not argv:
        raise ValueError("give the run folder to export (or its hparams)")
    first, rest = argv[0], list(argv[1:])
    if os.path.isdir(first):
        saved = os.path.join(first, "hyperparams.yaml")
        if not os.path.isfile(saved):
            raise FileNotFoundError(
                f"{first} holds no hyperparams.yaml: give the output folder "
                "of a training run"
            )
        return [saved, *rest]
    _, _, overrides = sb.parse_arguments([first, *rest])
    output_folder = resolved_settings(first, overrides)["output_folder"]
    changes = changes_since_run(
        output_folder, first, overrides, (*NOT_TRAINING_KEYS, "export_folder")
    )
    if changes:
        raise ValueError(
            f"{output_folder} was trained with other settings: "
            f"{listed_changes(changes)}. Export it from its folder alone: "
            f"export_student.py {output_folder}"
        )
    return [first, *rest]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    onnx_flags, arguments = parse_onnx_flags(sys.argv[1:])
    hparams_file, _, overrides = sb.parse_arguments(run_hparams(arguments))
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
    folder = export_from_hparams(loaded)
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
