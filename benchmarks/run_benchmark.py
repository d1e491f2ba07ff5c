#!/usr/bin/env python3
"""Benchmark of TRKD against no KD, KD, DKD and GKD on real speech.

One command runs the whole comparison with the recipe's own code,
resumably:

1. decodes the corpus once into an int16 cache that every process maps
   (``audio_cache.py``); the recipe reads it through ``audio_io``;
2. prepares the corpus (``voxceleb_prepare.py``), the trial lists' speakers
   kept out of training;
3. the teacher: one that knows the training speakers
   (``--teacher_n_classes``) is scored as it is; otherwise its head is
   fine-tuned on them first (``train_teacher.py`` with
   ``hparams/finetune_teacher.yaml``) and it is scored zero-shot and
   fine-tuned;
4. with ``--teacher_cache``, embeds the cached views once
   (``speechbrain_trkd.corpus_cache.cache_teacher_outputs``): every
   student then trains from them without running the teacher;
5. measures throughput (``throughput.py``): the distillation step (and a
   whole epoch), fp32 against bf16 autocast, the cached teacher against the
   online one, and the KD loss's share of the step;
6. distils one student per pair, method and seed (``train_trkd.py`` with
   the pair's hparams file and overrides only), every method with the same
   budget, in concurrent worker processes (``--workers``, ``--threads``);
   each finished run writes one file to ``<results_folder>/runs``;
7. scores every student (cosine and AS-norm) on the trial lists and the
   extra ones, and writes ``results.md``, ``results.csv``, ``runs.csv``,
   ``throughput.csv`` and ``speed.csv`` to ``--results_folder`` from every
   run file there.

``--profile`` chooses the defaults (``cpu``: 2 CPU cores, the default
without a GPU; ``gpu``; ``bare``). Finished stages and runs are skipped when
the same command runs again (a run interrupted mid-way resumes from its last
checkpoint), and a finished run with other settings is refused, so the table
grows over several sittings without mixing budgets. ``--tag`` keeps the runs
of other shared settings (a sweep) apart. See ``benchmarks/README.md``.

To continue the table::

    python benchmarks/run_benchmark.py

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import csv
import functools
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RECIPE_DIR = REPO / "recipes" / "VoxCeleb" / "TRKD"
for _path in (BENCH_DIR, RECIPE_DIR, REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import demo  # noqa: E402
import speechbrain as sb  # noqa: E402
import torch  # noqa: E402
import train_teacher  # noqa: E402
import train_trkd  # noqa: E402
import voxceleb_prepare  # noqa: E402
from audio_cache import AudioCache, build_audio_cache, cached_audio  # noqa
from hyperpyyaml import load_hyperpyyaml  # noqa: E402
from paired_reading import (  # noqa: E402
    METRICS,
    collect_runs,
    format_paired,
    paired_table,
    sweep_summary,
)
from speechbrain.utils.distributed import infer_device  # noqa: E402
from throughput import measure_throughput  # noqa: E402

from speechbrain_trkd import data, pretrained, verification  # noqa: E402
from speechbrain_trkd.corpus_cache import (  # noqa: E402
    cache_teacher_outputs,
)
from speechbrain_trkd.evaluation import student_encoder  # noqa: E402
from speechbrain_trkd.plots import (  # noqa: E402
    det_points,
    plot_det,
    read_train_log,
)
from speechbrain_trkd.pretrained import teacher_embedder  # noqa: E402
from speechbrain_trkd.run_identity import check_same_run  # noqa: E402
from speechbrain_trkd.scoring import read_scores  # noqa: E402

PAIRS = {
    "ecapa_to_small": "ecapa_to_small.yaml",
    "ecapa_to_resnet": "ecapa_to_resnet.yaml",
}
METHODS = (
    "none",
    "none_clean",
    "kd",
    "dkd",
    "gkd",
    "trkd",
    "trkd_fixed_tau",
    "trkd_no_mass",
    "tmkd_nckd",
    "tckd_cfkd",
    "emb_cos",
)
_SHARED = REPO.parent / "shared"
_CPU_RUN = {
    "teacher_source": str(_SHARED / "models" / "ecapa-openspk"),
    "teacher_n_classes": 450,
    "methods": [
        "none",
        "kd",
        "dkd",
        "trkd",
        "gkd",
        "trkd_fixed_tau",
        "tmkd_nckd",
        "tckd_cfkd",
    ],
    "epochs": 10,
    "precision": "bf16",
}
# Defaults of each --profile (explicit options win); without --profile,
# "gpu" on a CUDA device and "cpu" otherwise. Both distil the in-domain
# teacher (it knows the training speakers, so no head is trained).
# "cpu" fits 2 CPU cores: the teacher through a teacher cache, an ECAPA
# C=128 student (0.8 M) or a ResNet of about 1 M, the non-overlapping 2 s
# segments of every training utterance, each with one clean and two
# augmented cached views (the student sees the view the teacher labelled),
# a warm-up then exponential decay of the learning rate per step, two
# student processes of one thread each; KD settings come with --tag.
# "gpu": an ECAPA C=512 student (6.2 M) with the online teacher and the
# recipe's augmentation, three students at once. "bare": the option
# defaults alone (the Hub teacher, with a head fine-tuned for the training
# speakers first).
PROFILES = {
    "bare": {},
    "cpu": dict(
        _CPU_RUN,
        seg_dur=2.0,
        teacher_cache=True,
        teacher_cache_views=3,
        teacher_cache_precision="bf16",
        batch_size=64,
        num_workers=0,
        workers=2,
        threads=1,
        device="cpu",
        throughput_methods=["trkd"],
        time_epoch=False,
        throughput_steps=5,
        throughput_warmup=2,
        profile_steps=2,
        student_override=[
            "sentence_len=2.0",
            "lr=0.002",
            "lr_final=0.00002",
            "lr_per_step=True",
            "lr_warmup_epochs=!ref <number_of_epochs> * 3 / 10",
            "wav_augment=null",
            "teacher_cache_augment=True",
            "teacher_cache_clean_views=1",
            "ckpt_interval_minutes=5",
        ],
        pair_override=[
            ["ecapa_to_small", "student_channels=128"],
            ["ecapa_to_resnet", "student_channels=[16, 32, 64, 128]"],
        ],
    ),
    "gpu": dict(
        _CPU_RUN,
        results_folder=str(BENCH_DIR / "results" / "gpu"),
        batch_size=128,
        workers=3,
        student_override=["sentence_len=2.0"],
    ),
}
SPLIT_RATIO = [90, 10]
# Throughput variants: name -> (run options, recipe overrides), and the
# ratios reported (option over baseline) of each profile. The teacher cache
# is compared with the online teacher at one precision, in one process.
SPEED_VARIANTS = {
    "fp32": ({"precision": "fp32"}, {}),
    "bf16": ({"precision": "bf16"}, {}),
    "online fp32": ({"precision": "fp32"}, {"teacher_cache": None}),
    "online bf16": ({"precision": "bf16"}, {"teacher_cache": None}),
    "cached bf16": ({"precision": "bf16"}, {}),
}
SPEED_COMPARISONS = {
    "bare": [("fp32", "bf16")],
    "gpu": [("fp32", "bf16")],
    "cpu": [("online fp32", "online bf16"), ("online bf16", "cached bf16")],
}
# Runs without KD do not depend on the distillation settings: one set of
# them, under this tag, serves every --tag.
NO_KD_TAG = "no_kd"
# The students without KD: from the cache's views (augmented with the
# cpu profile), and from clean crops with no cache.
NO_KD_METHODS = ("none", "none_clean")
RESULT_FILE = "benchmark_result.json"
TEACHER_FILE = "benchmark_teacher.json"
THROUGHPUT_FILE = "throughput.json"
INVOCATIONS_FILE = "invocations.json"
# The report's DET figure: one curve per method, from these score files.
DET_FILE = "det_methods.png"
DET_BACKEND = "cosine"


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def method_overrides(method, fixed_tau=0.3):
    """The recipe overrides of one benchmark method.

    Every method is a ``kd_method`` of the recipe: a KD method or one of
    its named configurations (``speechbrain_trkd.losses.CONFIGURATIONS``:
    the paper's ablation rows ``tmkd_nckd`` and ``tckd_cfkd``,
    ``trkd_no_mass``, and ``trkd_fixed_tau``, whose tau is given here);
    ``none_clean`` is the student without KD trained on clean crops, with
    no teacher cache.

    Arguments
    ---------
    method : str
        One of ``METHODS``.
    fixed_tau : float
        Tau of ``trkd_fixed_tau``.

    Returns
    -------
    dict

    Example
    -------
    >>> method_overrides("dkd")
    {'kd_method': 'dkd'}
    >>> method_overrides("none_clean")
    {'kd_method': 'none', 'teacher_cache': None}
    >>> method_overrides("tckd_cfkd")
    {'kd_method': 'tckd_cfkd'}
    >>> method_overrides("trkd_fixed_tau", 0.2)["kd_method_options"]
    {'trkd_fixed_tau': {'fixed_tau': 0.2}}
    >>> method_overrides("fitnet")
    Traceback (most recent call last):
    ...
    ValueError: unknown method 'fitnet'; choose from none, none_clean, kd, ...
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown method {method!r}; choose from {', '.join(METHODS)}"
        )
    if method == "none_clean":
        return {"kd_method": "none", "teacher_cache": None}
    if method == "trkd_fixed_tau":
        return {
            "kd_method": method,
            "kd_method_options": {method: {"fixed_tau": fixed_tau}},
        }
    return {"kd_method": method}


def parse_assignments(items, option):
    """Parses ``KEY=VALUE`` items into an ordered dict of strings.

    Values stay strings: the recipe's YAML parser reads them, so lists and
    mappings work (``channels=[8,8,16,16]``).

    Arguments
    ---------
    items : list of str
        ``KEY=VALUE`` strings.
    option : str
        The command-line option, for the error message.

    Returns
    -------
    dict

    Example
    -------
    >>> parse_assignments(["lr=0.01", "channels=[8, 16]"], "--override")
    {'lr': '0.01', 'channels': '[8, 16]'}
    >>> parse_assignments(["lr"], "--override")
    Traceback (most recent call last):
    ...
    ValueError: --override expects KEY=VALUE, got 'lr'
    """
    parsed = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        parsed[key] = value
    return parsed


def trial_lists(data_folder, names, extra_trials):
    """Names and locates the base and the extra trial lists.

    Arguments
    ---------
    data_folder : str
        The corpus root; base lists are ``<data_folder>/trials/<name>.txt``.
    names : list of str
        Base list names (e.g. ``["O", "H"]``).
    extra_trials : list of (str, str)
        ``(root, trials file)`` pairs; each is named by its file stem.

    Returns
    -------
    list of dict
        ``{"name", "root", "path", "extra"}``, base lists first.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "trials"))
    >>> open(os.path.join(root, "trials", "O.txt"), "w").close()
    >>> [t["name"] for t in trial_lists(root, ["O"], [])]
    ['O']
    >>> trial_lists(root, ["O"], [(root, os.path.join(root, "trials/O.txt"))])
    Traceback (most recent call last):
    ...
    ValueError: extra trial list .../O.txt is named 'O' like another list: ...
    """
    lists = []
    for name in names:
        path = os.path.join(data_folder, "trials", f"{name}.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"trial list {name!r} not found: {path}")
        lists.append(
            {"name": name, "root": data_folder, "path": path, "extra": False}
        )
    for root, path in extra_trials or []:
        name = Path(path).stem
        if any(t["name"] == name for t in lists):
            raise ValueError(
                f"extra trial list {path} is named {name!r} like another "
                "list: rename the file"
            )
        if not os.path.isfile(path):
            raise FileNotFoundError(f"extra trial list not found: {path}")
        if not os.path.isdir(os.path.join(root, "wav")):
            raise FileNotFoundError(
                f"the root {root} of extra trial list {path} has no wav/"
            )
        lists.append(
            {
                "name": name,
                "root": os.path.abspath(root),
                "path": os.path.abspath(path),
                "extra": True,
            }
        )
    return lists


def check_held_out(lists, data_folder, train_speakers):
    """Raises if an extra list on the training corpus uses its speakers.

    Arguments
    ---------
    lists : list of dict
        From :func:`trial_lists`.
    data_folder : str
        The training corpus root.
    train_speakers : set of str
        Speakers of the prepared ``train.csv``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "X.txt")
    >>> _ = open(path, "w").write("1 s1/a/u1.wav s1/a/u2.wav\\n")
    >>> lists = [{"name": "X", "root": "/d", "path": path, "extra": True}]
    >>> check_held_out(lists, "/d", {"s1"})
    Traceback (most recent call last):
    ...
    ValueError: extra trial list ... uses training speakers: s1
    """
    for trials in lists:
        if not trials["extra"]:
            continue
        if os.path.realpath(trials["root"]) != os.path.realpath(data_folder):
            continue
        used = set()
        with open(trials["path"], encoding="utf-8") as fin:
            for line in fin:
                fields = line.split()
                used.update(f.split("/")[0] for f in fields[1:3])
        overlap = sorted(used & train_speakers)
        if overlap:
            raise ValueError(
                f"extra trial list {trials['path']} uses training speakers: "
                f"{', '.join(overlap[:5])}"
            )


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


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


def _free_memory():
    """Releases Python garbage and cached device memory."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def recipe_modules():
    """The recipe's modules that read audio through ``audio_io``.

    Returns
    -------
    list of module

    Example
    -------
    >>> [m.__name__.split(".")[-1] for m in recipe_modules()]
    ['data', 'verification', 'voxceleb_prepare']
    """
    return [data, verification, voxceleb_prepare]


# ---------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------


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
    overrides = dict(
        config["common"],
        teacher_source=config["teacher_source"],
        output_folder=teacher_out,
        number_of_epochs=config["teacher_epochs"],
        seed=config["seeds"][0],
    )
    overrides.update(config["override"])
    overrides.update(config["teacher_override"])
    argv = demo.command_line(
        str(RECIPE_DIR / "hparams" / "finetune_teacher.yaml"),
        overrides,
        config["run_opts"],
    )
    tic = time.perf_counter()
    brain = train_teacher.main(argv)
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
    _free_memory()
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
    _free_memory()
    with open(info_path, "w", encoding="utf-8") as fout:
        json.dump(info, fout, indent=2)
    return info


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
    _free_memory()
    return info


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
        views=hparams["teacher_cache_views"],
        seed=hparams["teacher_cache_seed"],
        precision=hparams["teacher_cache_precision"],
        batch_size=hparams["teacher_cache_batch_size"],
        crop_seconds=hparams["sentence_len"],
        sample_rate=hparams["sample_rate"],
        prepare_options_file=os.path.join(
            hparams["prep_folder"], "prepare_options.json"
        ),
        augment=hparams["cache_view_augment"],
    )
    del hparams
    _free_memory()
    return time.perf_counter() - tic


def student_argv(config, teacher, pair, method, seed, output_folder):
    """``train_trkd.py``'s arguments for one student run.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.
    teacher : dict
        From :func:`run_teacher`.
    pair : str
        A key of ``PAIRS``.
    method : str
        One of ``METHODS``.
    seed : int
        The run's seed.
    output_folder : str
        The run's folder.

    Returns
    -------
    list of str

    Example
    -------
    >>> config = {
    ...     "common": {"batch_size": 4}, "epochs": 2, "override": {},
    ...     "student_override": {}, "pair_override": {}, "fixed_tau": 0.3,
    ...     "run_opts": {"device": "cpu"},
    ... }
    >>> teacher = {"export_folder": "/t", "n_speakers": 5, "channels": 32}
    >>> argv = student_argv(config, teacher, "ecapa_to_small", "kd", 7, "/o")
    >>> argv[1:]
    ['--batch_size=4', '--teacher_source=/t', '--teacher_n_classes=5',
     '--teacher_channels=32', '--number_of_epochs=2', '--seed=7',
     '--output_folder=/o', '--kd_method=kd', '--device=cpu']
    """
    overrides = dict(
        config["common"],
        teacher_source=teacher["export_folder"],
        teacher_n_classes=teacher["n_speakers"],
        teacher_channels=teacher["channels"],
        number_of_epochs=config["epochs"],
        seed=seed,
        output_folder=output_folder,
    )
    overrides.update(method_overrides(method, config["fixed_tau"]))
    overrides.update(config["override"])
    overrides.update(config["student_override"])
    overrides.update(config["pair_override"].get(pair, {}))
    if method in NO_KD_METHODS:  # distillation settings do not shape these
        overrides = {
            key: value
            for key, value in overrides.items()
            if key == "kd_method"
            or not (key.startswith("kd_") or key == "tau_schedule")
        }
    if method == "none_clean":  # no cache: its options do not count either
        overrides = {
            key: value
            for key, value in overrides.items()
            if not key.startswith("teacher_cache")
        }
        overrides["teacher_cache"] = None
    return demo.command_line(
        str(RECIPE_DIR / "hparams" / PAIRS[pair]), overrides, config["run_opts"]
    )


def run_throughput(config, teacher):
    """Measures throughput per pair, method and precision, once each.

    Results accumulate in ``throughput.json``; measured entries are not
    measured again. The first of ``throughput_methods`` also times a whole
    epoch. Nothing starts after the deadline.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.
    teacher : dict
        From :func:`run_teacher`.

    Returns
    -------
    list of dict
        One row per measured configuration.

    Example
    -------
    >>> import tempfile
    >>> run_throughput({"output_folder": tempfile.mkdtemp(),
    ...                 "throughput_methods": []}, teacher={})
    []
    """
    path = os.path.join(config["output_folder"], THROUGHPUT_FILE)
    done = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fin:
            done = {row["key"]: row for row in json.load(fin)}
    methods = config["throughput_methods"]
    comparisons = SPEED_COMPARISONS[config.get("profile", "gpu")]
    variants = list(dict.fromkeys(v for pair in comparisons for v in pair))
    for pair in config.get("pairs", []) if methods else []:
        for method in methods:
            for precision in variants:
                key = f"{pair}/{method}/{precision}"
                if key in done:
                    continue
                if time.time() > config["deadline"]:
                    print(f"throughput {key}: past --stop_after, left out")
                    continue
                folder = os.path.join(
                    config["output_folder"], "throughput", pair, method
                )
                run_opts, overrides = SPEED_VARIANTS[precision]
                argv = student_argv(
                    dict(
                        config,
                        run_opts=dict(config["run_opts"], **run_opts),
                        override=dict(config["override"], **overrides),
                    ),
                    teacher,
                    pair,
                    method,
                    config["seeds"][0],
                    os.path.join(folder, precision.replace(" ", "_")),
                )
                result = measure_throughput(
                    argv,
                    steps=config["throughput_steps"],
                    warmup=config["throughput_warmup"],
                    profile_steps=config["profile_steps"],
                    time_epoch=method == methods[0] and config["time_epoch"],
                )
                result["threads"] = torch.get_num_threads()
                row = {
                    "key": key,
                    "pair": pair,
                    "method": method,
                    "precision": precision,
                }
                row.update(result)
                done[key] = row
                with open(path, "w", encoding="utf-8") as fout:
                    json.dump(list(done.values()), fout, indent=2)
    return list(done.values())


def checkout_relative(value):
    """``value`` with the checkout's absolute paths made relative to it
    (``../`` for the folders beside it), in strings, lists and dicts: run
    files and reports hold no one machine's paths.

    Example
    -------
    >>> checkout_relative({"a": [str(REPO / "x.yaml"),
    ...                          f"--data={REPO.parent}/shared/d"]})
    {'a': ['x.yaml', '--data=../shared/d']}
    """
    if isinstance(value, str):
        value = value.replace(str(REPO) + os.sep, "")
        return value.replace(str(REPO.parent) + os.sep, ".." + os.sep)
    if isinstance(value, list | tuple):
        return [checkout_relative(item) for item in value]
    if isinstance(value, dict):
        return {key: checkout_relative(item) for key, item in value.items()}
    return value


def run_student(job, spec):
    """Trains and scores one student (in a worker process).

    Arguments
    ---------
    job : dict
        ``argv``, ``pair``, ``method``, ``seed``, ``output_folder``.
    spec : dict
        ``lists`` (extra lists are scored here too) and ``train_csv``.

    Returns
    -------
    dict
        Written to ``<output_folder>/benchmark_result.json``.

    Example
    -------
    >>> run_student({"argv": ["/no/such.yaml"], "output_folder": "/no/run"}, {})
    Traceback (most recent call last):
    ...
    FileNotFoundError: [Errno 2] No such file or directory: '/no/such.yaml'
    """
    hparams_file, _, overrides = sb.parse_arguments(job["argv"])
    try:
        check_same_run(job["output_folder"], hparams_file, overrides)
    except ValueError as error:  # unfinished under older settings: redo
        aside = f"{job['output_folder']}.stale-{time.strftime('%Y%m%d%H%M%S')}"
        os.rename(job["output_folder"], aside)
        print(f"{error}; its folder is kept as {aside} and the run redone")
    tic = time.perf_counter()
    brain = train_trkd.main(job["argv"])
    train_s = time.perf_counter() - tic
    metrics = dict(brain.metrics)
    extras = [t for t in spec["lists"] if t["extra"]]
    metrics.update(
        score_lists(
            student_encoder(brain),
            extras,
            os.path.join(job["output_folder"], "extra"),
            spec["train_csv"],
            brain.hparams,
            brain.device,
        )
    )
    params = sum(p.numel() for p in brain.modules.embedding_model.parameters())
    result = {
        key: job[key]
        for key in ("tag", "pair", "method", "seed", "output_folder")
    }
    result.update(
        train_s=train_s,
        wall_s=time.perf_counter() - tic,
        params=params,
        metrics=metrics,
        argv=job["argv"],
        command=shlex.join(
            ["python", "recipes/VoxCeleb/TRKD/train_trkd.py"] + job["argv"]
        ),
        git_revision=spec.get("git_revision"),
        hardware=spec.get("hardware"),
        threads=torch.get_num_threads(),
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    conf_size = _mean_conf_size(job["output_folder"])
    if conf_size is not None:
        result["mean_conf_size"] = conf_size
    for path in (job["output_folder"], spec.get("runs_folder")):
        if path is None:
            continue
        os.makedirs(path, exist_ok=True)
        name = RESULT_FILE if path == job["output_folder"] else job["run_file"]
        with open(os.path.join(path, name), "w", encoding="utf-8") as fout:
            json.dump(checkout_relative(result), fout, indent=2)
    del brain
    _free_memory()
    return result


def _mean_conf_size(output_folder):
    """Mean over epochs of TRKD's logged confusion-set size, or None.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "train_log.txt"), "w") as f:
    ...     _ = f.write("epoch: 1 - train conf_size: 100.0, kd: 1\\n"
    ...                 "epoch: 2 - train conf_size: 50.0, kd: 1\\n")
    >>> _mean_conf_size(folder)
    75.0
    """
    path = os.path.join(output_folder, "train_log.txt")
    if not os.path.isfile(path):
        return None
    sizes = [
        epoch["train conf_size"]
        for epoch in read_train_log(path)
        if "train conf_size" in epoch
    ]
    return statistics.fmean(sizes) if sizes else None


def run_jobs(spec_file):
    """Worker process: runs its student jobs one after the other.

    A failing job is logged (``FAILED.txt`` in its folder, with the
    traceback) and the next one starts; no job starts past the deadline.

    Arguments
    ---------
    spec_file : str
        JSON with ``jobs``, ``cache_folder``, ``lists``, ``train_csv`` and
        ``deadline``.

    Returns
    -------
    int
        The number of failed jobs.

    Example
    -------
    >>> import tempfile
    >>> spec = os.path.join(tempfile.mkdtemp(), "spec.json")
    >>> with open(spec, "w") as f:
    ...     json.dump({"jobs": [], "cache_folder": None, "lists": [],
    ...                "train_csv": None, "deadline": None}, f)
    >>> run_jobs(spec)
    0
    """
    with open(spec_file, encoding="utf-8") as fin:
        spec = json.load(fin)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    cache = AudioCache(spec["cache_folder"]) if spec["cache_folder"] else None
    failures = 0
    with cached_audio(cache, recipe_modules()):
        for job in spec["jobs"]:
            deadline = spec["deadline"]
            if deadline is not None and time.time() > deadline:
                print(f"{job['output_folder']}: past --stop_after, left out")
                continue
            os.makedirs(job["output_folder"], exist_ok=True)
            failed = os.path.join(job["output_folder"], "FAILED.txt")
            try:
                run_student(job, spec)
            except Exception:
                failures += 1
                with open(failed, "w", encoding="utf-8") as fout:
                    fout.write(traceback.format_exc())
                print(f"{job['output_folder']} failed, see {failed}")
                _free_memory()
            else:
                if os.path.isfile(failed):
                    os.remove(failed)
    return failures


def run_students(config, teacher):
    """Starts the worker processes on the student runs not done yet.

    A run finished with other arguments (another budget) is an error.
    Jobs are ordered pair, method, seed and dealt round-robin to
    ``workers`` processes, so that with one worker per seed the seeds of a
    method train at the same time. Worker logs go to
    ``<output_folder>/logs``.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.
    teacher : dict
        From :func:`run_teacher`.

    Returns
    -------
    int
        The number of worker processes that reported failures.

    Example
    -------
    >>> import tempfile
    >>> run_students({"output_folder": tempfile.mkdtemp(), "pairs": [],
    ...               "methods": [], "seeds": []}, teacher={})
    0
    """
    jobs = []
    tag = config.get("tag", "main")
    runs_folder = config.get("runs_folder")
    for pair in config["pairs"]:
        for method in config["methods"]:
            run_tag = (
                config.get("no_kd_tag", NO_KD_TAG)
                if method in NO_KD_METHODS
                else tag
            )
            for seed in config["seeds"]:
                folder = os.path.join(
                    config["output_folder"],
                    "students",
                    run_tag,
                    pair,
                    method,
                    str(seed),
                )
                argv = student_argv(config, teacher, pair, method, seed, folder)
                run_file = f"{run_tag}__{pair}__{method}__{seed}.json"
                done = os.path.join(folder, RESULT_FILE)
                if runs_folder is not None:
                    done = os.path.join(runs_folder, run_file)
                if os.path.isfile(done):
                    with open(done, encoding="utf-8") as fin:
                        previous = json.load(fin)["argv"]
                    if checkout_relative(previous) != checkout_relative(argv):
                        raise ValueError(
                            f"{done} was trained with other settings "
                            f"({shlex.join(previous)}); every method must "
                            "share one budget: use another --output_folder"
                        )
                    continue
                jobs.append(
                    {
                        "tag": run_tag,
                        "pair": pair,
                        "method": method,
                        "seed": seed,
                        "output_folder": folder,
                        "argv": argv,
                        "run_file": run_file,
                    }
                )
    if not jobs:
        return 0
    log_dir = os.path.join(config["output_folder"], "logs")
    os.makedirs(log_dir, exist_ok=True)
    n_workers = max(1, min(config["workers"], len(jobs)))
    processes = []
    for worker in range(n_workers):
        # Per invocation: several invocations may share the output folder.
        name = f"{tag}_{os.getpid()}_worker{worker}"
        spec_file = os.path.join(log_dir, f"{name}.json")
        with open(spec_file, "w", encoding="utf-8") as fout:
            json.dump(
                {
                    "jobs": jobs[worker::n_workers],
                    "cache_folder": config["cache_folder"],
                    "lists": config["lists"],
                    "train_csv": config["train_csv"],
                    "deadline": config["deadline"],
                    "threads": config.get("threads"),
                    "runs_folder": runs_folder,
                    "git_revision": config.get("git_revision"),
                    "hardware": config.get("hardware"),
                },
                fout,
                indent=2,
            )
        log = open(os.path.join(log_dir, f"{name}.log"), "a", encoding="utf-8")
        command = [sys.executable, __file__, "--run_jobs", spec_file]
        env = dict(os.environ)
        if config.get("threads"):
            env["OMP_NUM_THREADS"] = str(config["threads"])
        processes.append(
            (
                subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    env=env,
                ),
                log,
            )
        )
    failed = 0
    for process, log in processes:
        failed += process.wait() != 0
        log.close()
    return failed


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _mean_std(values):
    """Mean and sample standard deviation (NaN for a single value)."""
    if any(math.isnan(v) for v in values):
        return float("nan"), float("nan")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return mean, std


def aggregate(runs, teacher=None):
    """Mean and standard deviation over seeds, teacher rows first.

    Arguments
    ---------
    runs : list of dict
        From :func:`collect_runs`.
    teacher : dict, optional
        From :func:`run_teacher` (``zero_shot`` and ``fine_tuned``).

    Returns
    -------
    list of dict
        ``pair``, ``method``, ``list``, ``backend``, ``seeds`` and
        ``<metric>_mean`` / ``<metric>_std``.

    Example
    -------
    >>> runs = [
    ...     {"pair": "p", "method": "kd", "seed": s, "list": "O",
    ...      "backend": "cosine", "eer": e, "min_dcf_0.01": 0.5,
    ...      "min_dcf_0.05": 0.3}
    ...     for s, e in [(1, 4.0), (2, 6.0)]
    ... ]
    >>> row = aggregate(runs)[0]
    >>> row["seeds"], row["eer_mean"], round(row["eer_std"], 3)
    (2, 5.0, 1.414)
    """
    rows = []
    for name in ("as_is", "zero_shot", "fine_tuned"):
        for list_name, per_backend in (teacher or {}).get(name, {}).items():
            for backend, values in per_backend.items():
                row = {
                    "tag": "-",
                    "pair": "teacher",
                    "method": name,
                    "list": list_name,
                    "backend": backend,
                    "seeds": 1,
                }
                for metric in METRICS:
                    row[f"{metric}_mean"] = values[metric]
                    row[f"{metric}_std"] = float("nan")
                rows.append(row)
    groups = {}
    for run in runs:
        key = (
            run.get("tag", "main"),
            run["pair"],
            run["method"],
            run["list"],
            run["backend"],
        )
        groups.setdefault(key, []).append(run)
    for (tag, pair, method, list_name, backend), group in groups.items():
        row = {
            "tag": tag,
            "pair": pair,
            "method": method,
            "list": list_name,
            "backend": backend,
            "seeds": len(group),
        }
        for metric in (*METRICS, "train_s", "params_M", "mean_conf_size"):
            values = [r.get(metric, float("nan")) for r in group]
            mean, std = _mean_std(values)
            row[f"{metric}_mean"] = mean
            row[f"{metric}_std"] = std
        rows.append(row)
    return rows


def speed_ratios(throughput, comparisons=SPEED_COMPARISONS["gpu"]):
    """Option-over-baseline ratios of the throughput measurements.

    Arguments
    ---------
    throughput : list of dict
        From :func:`run_throughput`.
    comparisons : list of (str, str)
        ``(baseline, option)`` variant names (see ``SPEED_VARIANTS``).

    Returns
    -------
    list of dict
        Per pair, method and comparison: ``option`` and the ratios of step
        and epoch samples/s (option / baseline; > 1 is faster).

    Example
    -------
    >>> rows = [
    ...     {"pair": "p", "method": "kd", "precision": "fp32",
    ...      "step_samples_per_s": 100.0},
    ...     {"pair": "p", "method": "kd", "precision": "bf16",
    ...      "step_samples_per_s": 250.0},
    ... ]
    >>> speed_ratios(rows)
    [{'pair': 'p', 'method': 'kd', 'option': 'bf16 vs fp32',
      'step_speedup': 2.5, 'epoch_speedup': nan}]
    """
    by_key = {(r["pair"], r["method"], r["precision"]): r for r in throughput}
    ratios = []
    for base, option in comparisons:
        for pair, method, variant in by_key:
            if variant != base or (pair, method, option) not in by_key:
                continue
            slow, fast = (
                by_key[pair, method, base],
                by_key[pair, method, option],
            )
            row = {
                "pair": pair,
                "method": method,
                "option": f"{option} vs {base}",
            }
            for name in ("step", "epoch"):
                key = f"{name}_samples_per_s"
                if key in slow and key in fast:
                    row[f"{name}_speedup"] = fast[key] / slow[key]
                else:
                    row[f"{name}_speedup"] = float("nan")
            ratios.append(row)
    return ratios


def _fmt(value, digits):
    """Formats a number, '-' for a missing or NaN one."""
    if value is None or value == "" or value != value:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def _write_csv(path, rows, columns):
    """Writes rows (dicts) with the given columns."""
    with open(path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _metric_table(rows, lists, backends):
    """Markdown rows: one per (setting, pair, method), mean ± std per
    list and backend, with the student's size, training time and TRKD's
    mean confusion-set size."""
    table = {}
    for row in rows:
        key = (row.get("tag", "main"), row["pair"], row["method"])
        cells = table.setdefault(
            key,
            {
                "setting": key[0],
                "pair": row["pair"],
                "method": row["method"],
                "seeds": str(row["seeds"]),
                "params M": _fmt(row.get("params_M_mean"), 2),
                "train min": _fmt(row.get("train_s_mean", 0) / 60, 1),
                "conf. set": _fmt(row.get("mean_conf_size_mean"), 0),
            },
        )
        prefix = f"{row['list']} {row['backend']}"
        for metric, label, digits in (
            ("eer", "EER %", 2),
            ("min_dcf_0.01", "minDCF 0.01", 3),
        ):
            mean = _fmt(row[f"{metric}_mean"], digits)
            std = _fmt(row[f"{metric}_std"], digits)
            cells[f"{prefix} {label}"] = (
                mean if std == "-" else f"{mean} ± {std}"
            )
    columns = ["setting", "pair", "method", "seeds", "params M", "train min"]
    columns.append("conf. set")
    for list_name in lists:
        for backend in backends:
            for label in ("EER %", "minDCF 0.01"):
                columns.append(f"{list_name} {backend} {label}")
    return [{c: cells.get(c, "-") for c in columns} for cells in table.values()]


def sweep_lines(runs, config, no_kd_tag):
    """The report's sweep section: each tag's KD and DKD EER on the first
    list at the first seed, and the setting the sweep's rule selects."""
    if not config.get("lists"):
        return []
    table, chosen = sweep_summary(
        runs, config["seeds"][0], no_kd_tag, config["lists"][0]["name"]
    )
    if table.empty:
        return []
    lines = [
        "",
        f"## Sweep (seed {config['seeds'][0]}, "
        f"{config['lists'][0]['name']} cosine EER %)",
        "",
    ]
    cells = [
        {
            key: (value if isinstance(value, str) else _fmt(value, 2))
            for key, value in row.items()
        }
        for row in table.to_dict("records")
    ]
    lines.append(demo.markdown_table(cells))
    lines += [
        "",
        "Rule (written before the sweep): the lowest mean of KD's and DKD's "
        f"EER. Selected so far: {chosen or 'none yet'}.",
    ]
    return lines


def _det_runs(config):
    """The run file of each method at the report's pair and first seed."""
    pair, seed = config["pairs"][0], config["seeds"][0]
    tags = (config.get("tag", "main"), NO_KD_TAG)
    runs = {}
    for path in sorted(Path(config["runs_folder"]).glob("*.json")):
        run = _read_json(path)
        if (
            (run["pair"], run["seed"]) == (pair, seed)
            and run.get("tag", "main") in tags
            and run["method"] in config["methods"]
        ):
            runs[run["method"]] = run
    return [runs[m] for m in config["methods"] if m in runs]


def methods_det(config, results):
    """Draws the report's DET figure: one curve per method.

    One student per method (the first of ``config["seeds"]``, not pooled
    over seeds: the trials of different models would mix their score
    scales), of the first pair and the report's tag (no KD from
    ``NO_KD_TAG``), on the first trial list, read from the run's
    ``scores/<list>_cosine.txt``.

    Arguments
    ---------
    config : dict
        Built by :func:`main` (``report_command``: the command that draws).
    results : str
        Where ``det_methods.png`` goes.

    Returns
    -------
    path : str or None
        The PNG, or None when nothing was drawn.
    lines : list of str
        The report's text about it (what it shows, or why it is absent).

    Example
    -------
    >>> import tempfile
    >>> config = {"runs_folder": tempfile.mkdtemp(), "pairs": ["p"],
    ...           "seeds": [1], "methods": ["kd"], "lists": [{"name": "O"}]}
    >>> methods_det(config, tempfile.mkdtemp())
    (None, ['(no finished run of seed 1 to draw)'])
    """
    if not (config["pairs"] and config["seeds"] and config["lists"]):
        return None, ["(no run to draw)"]
    seed, list_name = config["seeds"][0], config["lists"][0]["name"]
    curves, absent = {}, []
    for run in _det_runs(config):
        score_file = os.path.join(
            REPO,  # run files hold paths relative to the checkout
            run["output_folder"],
            "scores",
            f"{list_name}_{DET_BACKEND}.txt",
        )
        if not os.path.isfile(score_file):
            absent.append(score_file)
            continue
        trials, scores = read_scores(score_file)
        curves[run["method"]] = det_points(scores, trials.labels)
    lines = []
    if absent:
        lines.append("Score files not found: " + ", ".join(absent) + ".")
    if not curves:
        return None, [*lines, f"(no finished run of seed {seed} to draw)"]
    pair = config["pairs"][0]
    path = plot_det(
        curves,
        os.path.join(results, DET_FILE),
        title=f"{pair}, seed {seed}, list {list_name}, {DET_BACKEND}",
    )
    if path is None:
        return None, [
            *lines,
            '(matplotlib is not installed: pip install -e ".[plots]")',
        ]
    lines[:0] = [
        f"![DET curves of the methods]({DET_FILE})",
        "",
        f"One student per method ({', '.join(curves)}): seed {seed}, "
        f"pair {pair}, setting {config.get('tag', 'main')!r} (no KD: "
        f"{NO_KD_TAG!r}), trial list {list_name}, {DET_BACKEND} scores "
        f"read from each run's `scores/{list_name}_{DET_BACKEND}.txt`. "
        "One seed, not pooled over seeds: pooling the trials of different "
        "students would mix their score scales. Circles mark each EER, "
        "squares the operating point of minDCF (p = 0.01). Drawn by "
        f"`{config.get('report_command', 'benchmarks/run_benchmark.py')}`.",
    ]
    return path, lines


def write_report(config, teacher, throughput, invocations):
    """Writes the markdown and CSV results.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.
    teacher : dict or None
        From :func:`run_teacher`.
    throughput : list of dict
        From :func:`run_throughput`.
    invocations : list of dict
        Every command that worked on this output folder (command, git
        revision, hardware, wall time).

    Returns
    -------
    list of str
        The files written.

    Example
    -------
    >>> import tempfile
    >>> config = {
    ...     "output_folder": tempfile.mkdtemp(),
    ...     "results_folder": tempfile.mkdtemp(), "lists": [],
    ...     "runs_folder": tempfile.mkdtemp(),
    ...     "pairs": [], "methods": [], "seeds": [], "summary": {},
    ... }
    >>> sorted(os.path.basename(p) for p in write_report(config, None, [], []))
    ['results.csv', 'results.md', 'runs.csv', 'speed.csv', 'throughput.csv']
    """
    results = config["results_folder"]
    os.makedirs(results, exist_ok=True)
    runs = collect_runs(config["runs_folder"])
    rows = aggregate(runs, teacher)
    metric_cols = [
        f"{m}_{s}"
        for m in (*METRICS, "train_s", "params_M", "mean_conf_size")
        for s in ("mean", "std")
    ]
    files = [os.path.join(results, name) for name in ("results.csv",)]
    _write_csv(
        files[0],
        rows,
        ["tag", "pair", "method", "list", "backend", "seeds", *metric_cols],
    )
    files.append(os.path.join(results, "runs.csv"))
    _write_csv(
        files[-1],
        runs,
        [
            "tag",
            "pair",
            "method",
            "seed",
            "list",
            "backend",
            *METRICS,
            "train_s",
            "params_M",
            "mean_conf_size",
        ],
    )
    throughput_cols = [
        "pair",
        "method",
        "precision",
        "batch_size",
        "step_ms",
        "step_samples_per_s",
        "epoch_s",
        "epoch_samples",
        "epoch_samples_per_s",
        "kd_loss_ms",
        "kd_step_ms",
        "kd_loss_share",
        "kd_share_clock",
    ]
    files.append(os.path.join(results, "throughput.csv"))
    _write_csv(files[-1], throughput, throughput_cols)
    ratios = speed_ratios(
        throughput, SPEED_COMPARISONS[config.get("profile", "gpu")]
    )
    files.append(os.path.join(results, "speed.csv"))
    speed_cols = ["pair", "method", "option", "step_speedup", "epoch_speedup"]
    _write_csv(files[-1], ratios, speed_cols)

    lists = [t["name"] for t in config["lists"]]
    backends = list(dict.fromkeys(r["backend"] for r in rows)) or ["cosine"]
    lines = ["# TRKD benchmark", ""]
    lines.append(
        "Generated by `benchmarks/run_benchmark.py` from real runs; every "
        "number below was measured by the commands listed here."
    )
    lines += ["", "## Runs", ""]
    total = 0.0
    for number, inv in enumerate(invocations, 1):
        total += inv["wall_s"]
        lines.append(
            f"{number}. `{inv['command']}`  \n   git {inv['git_revision']}, "
            f"{inv['hardware']}, torch {inv['torch']}, wall time "
            f"{inv['wall_s']:.0f} s"
        )
    lines += ["", f"Total wall time: {total:.0f} s.", ""]
    lines += ["## Configuration", ""]
    for key, value in config["summary"].items():
        lines.append(f"- {key}: {value}")
    lines += ["", "## Verification (mean ± std over seeds)", ""]
    lines.append(
        "Teacher rows: `as_is`, a teacher that already knows the training "
        "speakers, distilled as it is; otherwise the pretrained teacher "
        "zero-shot, and with its head fine-tuned on the training speakers "
        "(one run each; with the backbone frozen, the two embed alike). "
        "`setting` names a set of shared hyperparameters (`--tag`); "
        "`conf. set` is TRKD's confusion-set size averaged over epochs."
    )
    table = _metric_table(rows, lists, backends)
    lines += ["", demo.markdown_table(table) if table else "(no runs yet)"]
    tag = config.get("tag", "main")
    no_kd_tag = config.get("no_kd_tag", NO_KD_TAG)
    lines += ["", f"## Reading (setting {tag!r}), paired by seed", ""]
    paired = paired_table(runs, tag, no_kd_tag)
    lines += (
        [
            "Each method minus another at the same seed (same initial "
            "student, batches and views), EER points; its mean with a 95 % "
            "t-interval on n - 1 degrees of freedom. 'beyond': the interval "
            "excludes 0. The students without KD are compared with the "
            "stronger of `none` and `none_clean`.",
            "",
            *format_paired(paired),
        ]
        if len(paired)
        else ["(no KD run and its baseline at a common seed yet)"]
    )
    lines += sweep_lines(runs, config, no_kd_tag)
    expected = {
        (p, m, s)
        for p in config["pairs"]
        for m in config["methods"]
        for s in config["seeds"]
    }
    done = {
        (r["pair"], r["method"], r["seed"])
        for r in runs
        if r.get("tag", "main") in (tag, NO_KD_TAG)
    }
    missing = sorted(expected - done)
    if missing:
        lines += ["", f"Runs not finished ({len(missing)}):", ""]
        lines += [f"- {p} {m} seed {s}" for p, m, s in missing]
    det_path, det_lines = methods_det(config, results)
    lines += ["", "## DET curves", "", *det_lines]
    lines += ["", "## Throughput", ""]
    if throughput:
        lines.append(
            "samples/s count the loader's examples (with `concat_original` "
            "the models see each twice); the step is timed on one fixed "
            "batch, the epoch through the data loader. KD loss share: the "
            "loss's forward and backward over the whole step, from "
            "torch.profiler (kernel time on CUDA, CPU time on the CPU)."
        )
        table = [
            {
                "pair": r["pair"],
                "method": r["method"],
                "variant": r["precision"],
                "batch": str(r["batch_size"]),
                "step ms": _fmt(r["step_ms"], 1),
                "step samples/s": _fmt(r["step_samples_per_s"], 1),
                "epoch samples/s": _fmt(r.get("epoch_samples_per_s"), 1),
                "KD loss share %": _fmt(
                    100 * r["kd_loss_share"] if "kd_loss_share" in r else None,
                    2,
                ),
            }
            for r in throughput
        ]
        lines += ["", demo.markdown_table(table), ""]
        if ratios:
            table = [
                {
                    "pair": r["pair"],
                    "method": r["method"],
                    "option": r["option"],
                    "step speed-up": _fmt(r["step_speedup"], 2),
                    "epoch speed-up": _fmt(r["epoch_speedup"], 2),
                }
                for r in ratios
            ]
            lines += [demo.markdown_table(table)]
    else:
        lines.append("(not measured)")
    if det_path:
        files.append(det_path)
    files.append(os.path.join(results, "results.md"))
    with open(files[-1], "w", encoding="utf-8") as fout:
        # Paths beside the checkout are shown as a reader at its root
        # would type them (../shared/...).
        text = "\n".join(lines) + "\n"
        fout.write(text.replace(str(REPO.parent) + os.sep, ".." + os.sep))
    return files


def archive_logs(output_folder, path):
    """Packs the benchmark's logs and metrics (no checkpoints, no scores).

    Arguments
    ---------
    output_folder : str
        The benchmark's output folder.
    path : str
        The ``.tar.gz`` to write.

    Returns
    -------
    str
        ``path``.

    Example
    -------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> _ = open(os.path.join(out, "log.txt"), "w").write("hello")
    >>> os.makedirs(os.path.join(out, "scores"))
    >>> _ = open(os.path.join(out, "scores", "O.txt"), "w").write("1 a b")
    >>> archive = archive_logs(out, os.path.join(tempfile.mkdtemp(), "a.tgz"))
    >>> tarfile.open(archive).getnames()
    ['log.txt']
    """
    keep = (".txt", ".json", ".csv", ".yaml", ".log", ".md")
    with tarfile.open(path, "w:gz") as tar:
        for folder, dirs, names in os.walk(output_folder):
            dirs[:] = sorted(
                d
                for d in dirs
                if d not in ("scores", "save", "audio_cache", "pretrained")
                and not os.path.islink(os.path.join(folder, d))
            )
            for name in sorted(names):
                full = os.path.join(folder, name)
                if name.endswith(keep) and not os.path.islink(full):
                    tar.add(full, os.path.relpath(full, output_folder))
    return path


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def git_revision():
    """The repository's HEAD commit (with ``+changes`` if files differ).

    Returns
    -------
    str
        ``unknown`` without git or a repository.

    Example
    -------
    >>> isinstance(git_revision(), str)
    True
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        clean = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head if clean.returncode == 0 else f"{head}+changes"


def hardware(device):
    """Names the device the benchmark runs on.

    Arguments
    ---------
    device : str
        ``cuda``, ``cuda:N`` or ``cpu``.

    Returns
    -------
    str

    Example
    -------
    >>> hardware("cpu").startswith("CPU")
    True
    """
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    return f"CPU {name}, {os.cpu_count()} cores"


def _read_json(path):
    """A JSON file's content, or None when there is no such file."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fin:
        return json.load(fin)


def build_parser():
    """The command-line parser.

    Returns
    -------
    argparse.ArgumentParser

    Example
    -------
    >>> args = build_parser().parse_args(["--methods", "kd", "trkd"])
    >>> args.methods, args.seeds, args.precision
    (['kd', 'trkd'], [1986, 1987, 1988], 'fp32')
    """
    shared = REPO.parent / "shared"
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data_folder", default=str(shared / "data" / "openspk")
    )
    parser.add_argument(
        "--teacher_source",
        default=str(shared / "models" / "spkrec-ecapa-voxceleb"),
        help="pretrained teacher folder (Hub layout)",
    )
    parser.add_argument(
        "--output_folder",
        default=str(REPO / "results" / "benchmark"),
        help="every run's folder; kept, and reused to resume",
    )
    parser.add_argument("--results_folder", default=str(BENCH_DIR / "results"))
    parser.add_argument(
        "--cache_folder",
        default=None,
        help="decoded audio (default: <output_folder>/audio_cache)",
    )
    parser.add_argument("--no_cache", action="store_true")
    parser.add_argument(
        "--trials",
        nargs="+",
        default=["O", "H"],
        help="base lists <data_folder>/trials/<name>.txt",
    )
    parser.add_argument(
        "--extra_trials",
        nargs=2,
        action="append",
        default=[],
        metavar=("ROOT", "TRIALS"),
        help="another trial list, utterances under ROOT/wav (repeatable)",
    )
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[1986, 1987, 1988]
    )
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--teacher_epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seg_dur", type=float, default=3.0)
    parser.add_argument(
        "--num_workers", type=int, default=2, help="data loader workers"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="concurrent student processes (default: one per seed)",
    )
    parser.add_argument("--decode_workers", type=int, default=None)
    parser.add_argument(
        "--precision", choices=["fp32", "bf16", "fp16"], default="fp32"
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument(
        "--fixed_tau", type=float, default=0.3, help="tau of trkd_fixed_tau"
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override for every run, teacher included",
    )
    parser.add_argument(
        "--student_override", action="append", default=[], metavar="KEY=VALUE"
    )
    parser.add_argument(
        "--teacher_override", action="append", default=[], metavar="KEY=VALUE"
    )
    parser.add_argument(
        "--pair_override",
        nargs=2,
        action="append",
        default=[],
        metavar=("PAIR", "KEY=VALUE"),
    )
    parser.add_argument(
        "--throughput_methods",
        nargs="*",
        default=["trkd", "kd", "dkd"],
        help="the first also times a whole epoch; none: skip",
    )
    parser.add_argument(
        "--time_epoch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the first throughput method also times a whole epoch",
    )
    parser.add_argument("--throughput_steps", type=int, default=10)
    parser.add_argument("--throughput_warmup", type=int, default=3)
    parser.add_argument("--profile_steps", type=int, default=3)
    parser.add_argument(
        "--stop_after",
        type=float,
        default=None,
        help="seconds after which no new stage or run starts",
    )
    parser.add_argument(
        "--archive", default=None, help="also pack the logs into this .tgz"
    )
    parser.add_argument("--git_revision", default=None)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="a set of defaults: see PROFILES (explicit options win); "
        "gpu on a CUDA device, else cpu",
    )
    parser.add_argument(
        "--teacher_n_classes",
        type=int,
        default=None,
        help="the teacher already knows the training speakers (this many "
        "classes): distil it as it is, no head fine-tuning",
    )
    parser.add_argument(
        "--teacher_cache",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="embed fixed views once (<output_folder>/teacher_cache) and "
        "train every student from them",
    )
    parser.add_argument("--teacher_cache_views", type=int, default=2)
    parser.add_argument(
        "--teacher_cache_precision", choices=["fp32", "bf16"], default="fp32"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of each student process (default: torch's)",
    )
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="write the report from the finished runs; train nothing",
    )
    parser.add_argument(
        "--no_kd_tag",
        default=NO_KD_TAG,
        help="name of the runs without KD (shared by every --tag)",
    )
    parser.add_argument(
        "--tag",
        default="main",
        help="name of this set of shared settings; results of each tag "
        "are kept apart",
    )
    return parser


def parse_args(argv):
    """Parses the command line, the chosen profile's defaults applied.

    Arguments
    ---------
    argv : list of str

    Returns
    -------
    argparse.Namespace

    Example
    -------
    >>> args = parse_args(["--profile", "cpu", "--epochs", "3"])
    >>> args.epochs, args.teacher_cache, args.threads, args.pairs[0]
    (3, True, 1, 'ecapa_to_small')
    """
    parser = build_parser()
    known = parser.parse_known_args(argv)[0]
    if known.profile is None:
        known.profile = "gpu" if known.device.startswith("cuda") else "cpu"
    parser.set_defaults(profile=known.profile, **PROFILES[known.profile])
    return parser.parse_args(argv)


def main(argv=None):
    """Runs (or resumes) the benchmark and writes the results.

    Arguments
    ---------
    argv : list of str, optional
        The command line (``sys.argv[1:]`` by default).

    Returns
    -------
    int
        0, or 1 when a run failed.

    Example
    -------
    >>> main(["--methods", "fitnet"])
    Traceback (most recent call last):
    ...
    ValueError: unknown method 'fitnet'; choose from none, none_clean, kd, ...
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--run_jobs"]:
        return 1 if run_jobs(argv[1]) else 0
    start = time.time()
    args = parse_args(argv)
    for method in [*args.methods, *args.throughput_methods]:
        method_overrides(method)
    for pair in [*args.pairs, *(p for p, _ in args.pair_override)]:
        if pair not in PAIRS:
            raise ValueError(
                f"unknown pair {pair!r}; choose from {', '.join(PAIRS)}"
            )
    data_folder = os.path.abspath(args.data_folder)
    output_folder = os.path.abspath(args.output_folder)
    os.makedirs(output_folder, exist_ok=True)
    cache_folder = os.path.abspath(
        args.cache_folder or os.path.join(output_folder, "audio_cache")
    )
    lists = trial_lists(data_folder, args.trials, args.extra_trials)
    invocation = {
        "command": shlex.join(["python", "benchmarks/run_benchmark.py", *argv]),
        "git_revision": args.git_revision or git_revision(),
        "hardware": hardware(args.device),
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"benchmark: {invocation}", flush=True)

    cache = None
    if not args.no_cache:
        tic = time.perf_counter()
        cache = build_audio_cache(
            data_folder, cache_folder, num_workers=args.decode_workers
        )
        print(
            f"audio cache: {len(cache)} files, "
            f"{time.perf_counter() - tic:.1f} s",
            flush=True,
        )
    prep_folder = os.path.join(output_folder, "prep")
    base_paths = [t["path"] for t in lists if not t["extra"]]
    with cached_audio(cache, recipe_modules()):
        voxceleb_prepare.prepare_voxceleb(
            data_folder,
            prep_folder,
            base_paths,
            split_ratio=SPLIT_RATIO,
            seg_dur=args.seg_dur,
        )
    train_csv = os.path.join(prep_folder, "train.csv")
    with open(train_csv, newline="", encoding="utf-8") as fin:
        train_speakers = {row["spk_id"] for row in csv.DictReader(fin)}
    check_held_out(lists, data_folder, train_speakers)
    config = {
        "output_folder": output_folder,
        "results_folder": os.path.abspath(args.results_folder),
        "cache_folder": None if args.no_cache else cache_folder,
        "teacher_source": os.path.abspath(args.teacher_source),
        "lists": lists,
        "train_csv": train_csv,
        "n_speakers": len(train_speakers),
        "pairs": list(args.pairs),
        "methods": list(args.methods),
        "seeds": list(args.seeds),
        "epochs": args.epochs,
        "teacher_epochs": args.teacher_epochs,
        "fixed_tau": args.fixed_tau,
        "workers": args.workers or len(args.seeds),
        "threads": args.threads,
        "tag": args.tag,
        "no_kd_tag": args.no_kd_tag,
        "runs_folder": os.path.join(
            os.path.abspath(args.results_folder), "runs"
        ),
        "git_revision": invocation["git_revision"],
        "report_command": invocation["command"],
        "hardware": invocation["hardware"],
        "teacher_n_classes": args.teacher_n_classes,
        "throughput_methods": list(args.throughput_methods),
        "time_epoch": args.time_epoch,
        "profile": args.profile,
        "throughput_steps": args.throughput_steps,
        "throughput_warmup": args.throughput_warmup,
        "profile_steps": args.profile_steps,
        "deadline": (
            start + args.stop_after if args.stop_after else float("inf")
        ),
        "run_opts": {
            "device": args.device,
            "precision": args.precision,
            "noprogressbar": True,
        },
        "common": {
            "data_folder": data_folder,
            "verification_lists": base_paths,
            "prep_folder": prep_folder,
            "split_ratio": SPLIT_RATIO,
            "seg_dur": args.seg_dur,
            "out_n_neurons": len(train_speakers),
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "verification_backends": ["cosine", "asnorm"],
        },
        "teacher_cache": (
            os.path.join(output_folder, "teacher_cache")
            if args.teacher_cache
            else None
        ),
        "override": parse_assignments(args.override, "--override"),
        "student_override": parse_assignments(
            args.student_override, "--student_override"
        ),
        "teacher_override": parse_assignments(
            args.teacher_override, "--teacher_override"
        ),
        "pair_override": {},
    }
    for pair, item in args.pair_override:
        config["pair_override"].setdefault(pair, {}).update(
            parse_assignments([item], "--pair_override")
        )
    if config["teacher_cache"]:
        config["common"].update(
            teacher_cache=config["teacher_cache"],
            teacher_cache_views=args.teacher_cache_views,
            teacher_cache_precision=args.teacher_cache_precision,
        )
    if config["deadline"] == float("inf"):
        config["deadline"] = time.time() + 10**9
    config["summary"] = {
        "profile": args.profile,
        "data": f"{data_folder} ({len(train_speakers)} training speakers)",
        "teacher": config["teacher_source"],
        "pairs": ", ".join(config["pairs"]),
        "methods": ", ".join(config["methods"]),
        "seeds": ", ".join(map(str, config["seeds"])),
        "student epochs": args.epochs,
        "teacher epochs (head)": (
            "none (teacher used as is)"
            if args.teacher_n_classes
            else args.teacher_epochs
        ),
        "teacher cache": (
            f"{args.teacher_cache_views} views per segment, "
            f"{args.teacher_cache_precision}"
            if args.teacher_cache
            else "none (teacher runs online)"
        ),
        "threads per student process": args.threads or "torch default",
        "concurrent student processes": config["workers"],
        "batch size": args.batch_size,
        "precision": args.precision,
        "fixed tau (trkd_fixed_tau)": args.fixed_tau,
        "overrides (all runs)": config["override"] or "none",
        "student overrides": config["student_override"] or "none",
        "teacher overrides": config["teacher_override"] or "none",
        "pair overrides": config["pair_override"] or "none",
        "lists": ", ".join(
            f"{t['name']} ({t['path']})" for t in config["lists"]
        ),
    }

    log_path = os.path.join(output_folder, INVOCATIONS_FILE)
    if args.report_only:
        teacher = _read_json(
            os.path.join(output_folder, "teacher", TEACHER_FILE)
        )
        throughput = _read_json(os.path.join(output_folder, THROUGHPUT_FILE))
        files = write_report(
            config, teacher, throughput or [], _read_json(log_path) or []
        )
        print("written: " + ", ".join(files), flush=True)
        return 0

    failed = 0
    teacher = None
    throughput = []
    if time.time() <= config["deadline"]:
        with cached_audio(cache, recipe_modules()):
            teacher = run_teacher(config)
            if config["teacher_cache"]:
                seconds = run_teacher_cache(config, teacher)
                print(f"teacher cache: {seconds:.0f} s", flush=True)
            throughput = run_throughput(config, teacher)
        failed = run_students(config, teacher)
    else:
        print("past --stop_after before the teacher stage: nothing run")

    invocation["wall_s"] = time.time() - start
    invocations = _read_json(log_path) or []
    invocations.append(invocation)
    with open(log_path, "w", encoding="utf-8") as fout:
        json.dump(invocations, fout, indent=2)
    files = write_report(config, teacher, throughput, invocations)
    if args.archive:
        files.append(archive_logs(output_folder, args.archive))
    print("written: " + ", ".join(files), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
