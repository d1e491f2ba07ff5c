"""The benchmark's teacher stages: the teacher scored (its head fine-tuned
first when it does not know the training speakers), and the teacher
cache embedded once for every student.

Authors
 * speechbrain-trkd developers 2026
"""

import functools
import json
import os
import time

import speechbrain as sb
import torch
from bench_config import RECIPE_DIR, TEACHER_FILE, free_memory, student_argv
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import infer_device

from speechbrain_trkd import pretrained, verification
from speechbrain_trkd.corpus_cache import (
    cache_teacher_outputs,
)
from speechbrain_trkd.evaluation import student_encoder
from speechbrain_trkd.teacher_loading import teacher_embedder
from speechbrain_trkd.training_run import command_line, run_script


def run_teacher(config):
    """Fine-tunes the teacher's head and scores the teacher, once.

    The teacher's file ``benchmark_teacher.json`` (export folder, channels,
    zero-shot and fine-tuned metrics) marks the stage done.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.

    Returns
    -------
    dict
        The contents of ``benchmark_teacher.json``.

    Example
    -------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(out, "teacher"))
    >>> with open(os.path.join(out, "teacher", TEACHER_FILE), "w") as f:
    ...     json.dump({"channels": 1024}, f)
    >>> run_teacher({"output_folder": out})
    {'channels': 1024}
    """
    teacher_out = os.path.join(config["output_folder"], "teacher")
    info_path = os.path.join(teacher_out, TEACHER_FILE)
    if os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as fin:
            return json.load(fin)
    if config.get("teacher_n_classes"):
        info = score_teacher_as_is(config, teacher_out)
        with open(info_path, "w", encoding="utf-8") as fout:
            json.dump(info, fout, indent=2)
        return info
    info, settings, device = _fine_tune_teacher(config, teacher_out)
    encoder = pretrained.load_pretrained_encoder(
        config["teacher_source"], device
    )
    info["zero_shot"] = score_lists(
        pretrained.pretrained_encode_fn(encoder),
        config["lists"],
        os.path.join(teacher_out, "zero_shot"),
        config["train_csv"],
        settings,
        device,
    )
    del encoder
    free_memory()
    with open(info_path, "w", encoding="utf-8") as fout:
        json.dump(info, fout, indent=2)
    return info


def _fine_tune_teacher(config, teacher_out):
    """Runs ``train_teacher.py`` (a new head on the corpus's speakers) and
    scores it on the extra lists too; returns the teacher's facts, the
    scoring settings of its run and its device."""
    overrides = dict(
        config["common"],
        teacher_source=config["teacher_source"],
        output_folder=teacher_out,
        number_of_epochs=config["teacher_epochs"],
        seed=config["seeds"][0],
    )
    overrides.update(config["override"])
    overrides.update(config["teacher_override"])
    argv = command_line(
        str(RECIPE_DIR / "hparams" / "finetune_teacher.yaml"),
        overrides,
        config["run_opts"],
    )
    tic = time.perf_counter()
    brain = run_script(RECIPE_DIR / "train_teacher.py", argv)["brain"]
    train_s = time.perf_counter() - tic
    hparams = brain.hparams
    extras = [t for t in config["lists"] if t["extra"]]
    fine_tuned = dict(brain.metrics)
    fine_tuned.update(
        score_lists(
            student_encoder(brain),
            extras,
            os.path.join(teacher_out, "extra"),
            config["train_csv"],
            vars(hparams),
            brain.device,
        )
    )
    device = brain.device
    info = {
        "export_folder": hparams.export_folder,
        "channels": hparams.channels,
        "n_speakers": config["n_speakers"],
        "train_s": train_s,
        "argv": argv,
        "fine_tuned": fine_tuned,
    }
    settings = {
        key: getattr(hparams, key)
        for key in (
            "verification_backends",
            "cohort_utterances_per_speaker",
            "asnorm_top_n",
            "verification_batch_size",
            "sample_rate",
        )
    }
    del brain, hparams
    free_memory()
    return info, settings, device


def score_teacher_as_is(config, teacher_out):
    """Scores a teacher that already knows the training speakers.

    Such a teacher (e.g. one fine-tuned on the corpus) is distilled as it
    is: no head is trained.

    Arguments
    ---------
    config : dict
        Built by :func:`main` (``teacher_source``, ``teacher_n_classes``,
        ``lists``, ``train_csv``, ``run_opts``).
    teacher_out : str
        Where its scores go.

    Returns
    -------
    dict
        ``export_folder`` (the teacher's folder), ``channels``,
        ``n_speakers``, ``train_s`` (0) and ``as_is`` (its metrics).

    Example
    -------
    >>> score_teacher_as_is({"teacher_source": "/no/such/teacher",
    ...                      "run_opts": {"device": "cpu"}}, "/tmp/t")
    Traceback (most recent call last):
    ...
    FileNotFoundError: ...
    """
    device = config["run_opts"]["device"]
    encoder = pretrained.load_pretrained_encoder(
        config["teacher_source"], device
    )
    settings = {
        "verification_backends": ["cosine", "asnorm"],
        "cohort_utterances_per_speaker": 3,
        "asnorm_top_n": 300,
        "verification_batch_size": 16,
        "sample_rate": 16000,
    }
    tic = time.perf_counter()
    metrics = score_lists(
        pretrained.pretrained_encode_fn(encoder),
        config["lists"],
        teacher_out,
        config["train_csv"],
        settings,
        device,
    )
    info = {
        "export_folder": config["teacher_source"],
        "channels": 1024,
        "n_speakers": config["teacher_n_classes"],
        "train_s": 0.0,
        "score_s": time.perf_counter() - tic,
        "as_is": metrics,
    }
    del encoder
    free_memory()
    return info


def score_lists(encode_fn, lists, output_folder, train_csv, hparams, device):
    """Scores an encoder on trial lists that may live under several roots.

    Arguments
    ---------
    encode_fn : callable
        ``encode_fn(wavs, wav_lens) -> embeddings`` (eval mode).
    lists : list of dict
        From :func:`trial_lists`.
    output_folder : str
        Score files go to ``<output_folder>/scores``.
    train_csv : str
        The AS-norm cohort (the prepared ``train.csv``).
    hparams : dict or object
        ``verification_backends``, ``cohort_utterances_per_speaker``,
        ``asnorm_top_n``, ``verification_batch_size``, ``sample_rate``.
    device : str
        Where the encoder runs.

    Returns
    -------
    dict
        ``{list: {backend: {metric: value}}}``.

    Example
    -------
    >>> score_lists(None, [], "/tmp/unused", None, {}, "cpu")
    {}
    """
    if not isinstance(hparams, dict):
        hparams = vars(hparams)
    by_root = {}
    for trials in lists:
        by_root.setdefault(trials["root"], {})[trials["name"]] = trials["path"]
    metrics = {}
    for root, named in by_root.items():
        metrics.update(
            verification.evaluate_verification(
                encode_fn,
                data_folder=root,
                trial_lists=named,
                output_folder=output_folder,
                backends=hparams["verification_backends"],
                train_csv=train_csv,
                cohort_utts_per_speaker=hparams[
                    "cohort_utterances_per_speaker"
                ],
                asnorm_top_n=hparams["asnorm_top_n"],
                batch_size=hparams["verification_batch_size"],
                device=device,
                sample_rate=hparams["sample_rate"],
            )
        )
    return metrics


def run_teacher_cache(config, teacher):
    """Embeds the cache's views of every segment with the teacher, once.

    Every student then trains from ``<output_folder>/teacher_cache``
    (``--teacher_cache``) without running the teacher. Resumable.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.
    teacher : dict
        From :func:`run_teacher`.

    Returns
    -------
    float
        Seconds spent (0 when the cache was already complete).
    """
    argv = student_argv(
        config,
        teacher,
        config["pairs"][0],
        "kd",
        config["seeds"][0],
        os.path.join(config["output_folder"], "teacher_cache_run"),
    )
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    tic = time.perf_counter()
    torch.set_flush_denormal(True)
    cache_teacher_outputs(
        hparams["teacher_cache"],
        [hparams["train_annotation"], hparams["valid_annotation"]],
        functools.partial(
            teacher_embedder,
            hparams["pretrainer"],
            hparams["teacher_revision"],
            hparams["teacher_sha256"],
            hparams["teacher"],
        ),
        run_opts.get("device") or infer_device(),
        **hparams["teacher_cache_options"],
        augment=hparams["cache_view_augment"],
    )
    del hparams
    free_memory()
    return time.perf_counter() - tic
