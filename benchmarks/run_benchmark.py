#!/usr/bin/env python3
"""Benchmark of TRKD against no KD, KD, DKD and GKD on real speech.

One command runs the whole comparison with the recipe's own code,
resumably:

1. decodes the corpus once into an int16 cache that every process maps
   (``speechbrain_trkd.audio_cache``); the stages below read it through
   ``audio_cache.reading_from``, and the students through the recipe's
   ``audio_cache`` option;
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
   budget, each run a ``python train_trkd.py`` process as a user would
   start it, several at a time (``--workers``, ``--threads``); each
   finished run writes one file to ``<results_folder>/runs``;
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
import json
import os
import shlex
import sys
import time

import torch
from bench_config import (
    BENCH_DIR,
    INVOCATIONS_FILE,
    METHODS,
    NO_KD_TAG,
    PAIRS,
    PROFILES,
    REPO,
    TEACHER_FILE,
    THROUGHPUT_FILE,
    method_overrides,
    read_json,
    run_config,
)
from provenance import archive_logs, git_revision, hardware
from report import write_report
from stage_data import prepared_speakers, trial_lists
from stage_students import run_students
from stage_teacher import run_teacher, run_teacher_cache
from stage_throughput import run_throughput

from speechbrain_trkd.audio_cache import build_audio_cache, reading_from


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
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_data_options(parser)
    _add_training_options(parser)
    _add_stage_options(parser)
    return parser


def _add_data_options(parser):
    """Where the data, teacher and outputs are; which pairs, methods, seeds."""
    shared = REPO.parent / "shared"
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


def _add_training_options(parser):
    """The students' budget and how they run."""
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


def _add_stage_options(parser):
    """Throughput, stops, archive, profile, teacher cache and tags."""
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
    start = time.time()
    args = parse_args(argv)
    _check_names(args)
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
    cache = (
        None if args.no_cache else _audio_cache(args, data_folder, cache_folder)
    )
    prep_folder = os.path.join(output_folder, "prep")
    train_speakers = prepared_speakers(
        data_folder, lists, prep_folder, args.seg_dur, cache
    )
    config = run_config(
        args,
        data_folder=data_folder,
        output_folder=output_folder,
        cache_folder=cache_folder,
        lists=lists,
        prep_folder=prep_folder,
        train_csv=os.path.join(prep_folder, "train.csv"),
        n_speakers=len(train_speakers),
        invocation=invocation,
        start=start,
    )
    log_path = os.path.join(output_folder, INVOCATIONS_FILE)
    if args.report_only:
        teacher = read_json(
            os.path.join(output_folder, "teacher", TEACHER_FILE)
        )
        throughput = read_json(os.path.join(output_folder, THROUGHPUT_FILE))
        files = write_report(
            config, teacher, throughput or [], read_json(log_path) or []
        )
        print("written: " + ", ".join(files), flush=True)
        return 0

    failed, teacher, throughput = _run_stages(config, cache)
    invocation["wall_s"] = time.time() - start
    invocations = read_json(log_path) or []
    invocations.append(invocation)
    with open(log_path, "w", encoding="utf-8") as fout:
        json.dump(invocations, fout, indent=2)
    files = write_report(config, teacher, throughput, invocations)
    if args.archive:
        files.append(archive_logs(output_folder, args.archive))
    print("written: " + ", ".join(files), flush=True)
    return 1 if failed else 0


def _check_names(args):
    """Refuses an unknown method or pair before any work."""
    for method in [*args.methods, *args.throughput_methods]:
        method_overrides(method)
    for pair in [*args.pairs, *(p for p, _ in args.pair_override)]:
        if pair not in PAIRS:
            raise ValueError(
                f"unknown pair {pair!r}; choose from {', '.join(PAIRS)}"
            )


def _audio_cache(args, data_folder, cache_folder):
    """The corpus's decoded audio, built once
    (``speechbrain_trkd.audio_cache``)."""
    tic = time.perf_counter()
    cache = build_audio_cache(
        data_folder, cache_folder, num_workers=args.decode_workers
    )
    print(
        f"audio cache: {len(cache)} files, {time.perf_counter() - tic:.1f} s",
        flush=True,
    )
    return cache


def _run_stages(config, cache):
    """The teacher, its cache, the throughput and the students, in order,
    until ``--stop_after``; returns ``(failed runs, teacher, throughput)``."""
    if time.time() > config["deadline"]:
        print("past --stop_after before the teacher stage: nothing run")
        return 0, None, []
    with reading_from(cache):
        teacher = run_teacher(config)
        if config["teacher_cache"]:
            seconds = run_teacher_cache(config, teacher)
            print(f"teacher cache: {seconds:.0f} s", flush=True)
        throughput = run_throughput(config, teacher)
        failed = run_students(config, teacher)
    return failed, teacher, throughput


if __name__ == "__main__":
    sys.exit(main())
