#!/usr/bin/env python3
"""Speaker-verification evaluation of a SpeechBrain speaker encoder.

Scores VoxCeleb-format trial lists (``label enrol test``, utterances given
relative to ``<data_folder>/wav``) with whole-utterance embeddings and one or
more backends (cosine, AS-norm, PLDA), then reports the EER and the minimum
detection costs. The command line evaluates a pretrained-model folder (the
ECAPA teacher or an exported student) with ``speechbrain_trkd.verification``
and ``speechbrain_trkd.pretrained``::

    python speaker_verification.py hparams/verification.yaml \\
        --model_source=/path/to/spkrec-ecapa-voxceleb \\
        --data_folder=/path/to/VoxCeleb1

The model folder (Hub layout) is read as data, never run: the architecture
comes from this recipe's ``hparams/models/`` files, and only
``embedding_model.ckpt``, ``classifier.ckpt`` (``weights_only=True``),
``label_encoder.txt`` and, when present, ``mean_var_norm_emb.ckpt`` are
loaded; its ``hyperparams.yaml`` is ignored.

The model folder's ``mean_var_norm_emb`` is not applied by default
(``normalize_embeddings: False``; see ``speechbrain_trkd.pretrained``).

Authors
 * speechbrain-trkd developers 2026
"""

import os
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import infer_device
from speechbrain.utils.logger import get_logger

from speechbrain_trkd.plots import write_verification_plots
from speechbrain_trkd.pretrained import (
    load_pretrained_encoder,
    pretrained_encode_fn,
)
from speechbrain_trkd.trials import read_utterance_paths
from speechbrain_trkd.verification import (
    evaluate_verification,
    format_results_table,
    trained_speaker_overlap,
    write_metrics,
)

logger = get_logger(__name__)


def main(argv=None):
    """Command line: evaluate a pretrained-model folder on trial lists.

    Arguments
    ---------
    argv : list of str, optional
        ``[hparams_file, --key=value ...]``; ``sys.argv[1:]`` by default.

    Returns
    -------
    dict
        The metrics, as returned by :func:`evaluate_verification`.

    Example
    -------
    >>> main(["/no/such/verification.yaml"])
    Traceback (most recent call last):
    ...
    FileNotFoundError: [Errno 2] No such file or directory: '/no/such/...'
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(
        sys.argv[1:] if argv is None else argv
    )
    # Denormal activations of pretrained weights slow CPU inference ~3.7x.
    torch.set_flush_denormal(True)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    device = run_opts["device"] or infer_device()
    encoder = load_pretrained_encoder(
        hparams["model_source"],
        device,
        architecture=hparams["model_architecture"],
        sizes=hparams["model_sizes"],
        sha256=hparams["model_sha256"],
    )
    encode_fn = pretrained_encode_fn(encoder, hparams["normalize_embeddings"])
    metrics = evaluate_verification(
        encode_fn,
        data_folder=hparams["data_folder"],
        trial_lists=hparams["verification_lists"],
        output_folder=hparams["output_folder"],
        backends=hparams["backends"],
        train_csv=hparams["train_csv"],
        cohort_utts_per_speaker=hparams["cohort_utts_per_speaker"],
        asnorm_top_n=hparams["asnorm_top_n"],
        plda_rank_f=hparams["plda_rank_f"],
        plda_nb_iter=hparams["plda_nb_iter"],
        batch_size=hparams["batch_size"],
        device=device,
        sample_rate=hparams["sample_rate"],
        max_batch_seconds=hparams["max_batch_seconds"],
        max_chunk_seconds=hparams["max_chunk_seconds"],
        num_workers=hparams["num_workers"],
        utterance_paths=read_utterance_paths(hparams["trial_audio_csvs"]),
    )
    overlap = {}
    encoder_file = os.path.join(hparams["model_source"], "label_encoder.txt")
    if os.path.isfile(encoder_file):
        overlap = trained_speaker_overlap(
            hparams["verification_lists"], encoder_file
        )
    print(format_results_table(metrics, overlap))
    json_path, csv_path = write_metrics(metrics, hparams["output_folder"])
    logger.info("Metrics written to %s and %s", json_path, csv_path)
    if hparams["write_plots"]:
        write_verification_plots(metrics, hparams["output_folder"])
    return metrics


if __name__ == "__main__":
    main()
