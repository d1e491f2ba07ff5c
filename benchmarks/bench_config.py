"""The benchmark's configuration: where things are, the student pairs, the
methods (each a named configuration of the recipe), the profiles of
defaults, the result files' names, and the small helpers that read them.

Authors
 * speechbrain-trkd developers 2026
"""

import gc
import json
import os
import time
from pathlib import Path

import torch

from speechbrain_trkd.training_run import command_line

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RECIPE_DIR = REPO / "recipes" / "VoxCeleb" / "TRKD"

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


def read_json(path):
    """A JSON file's content, or None when there is no such file."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fin:
        return json.load(fin)


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


def free_memory():
    """Releases Python garbage and cached device memory."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    return command_line(
        str(RECIPE_DIR / "hparams" / PAIRS[pair]), overrides, config["run_opts"]
    )


def run_config(
    args,
    *,
    data_folder,
    output_folder,
    cache_folder,
    lists,
    prep_folder,
    train_csv,
    n_speakers,
    invocation,
    start,
):
    """Everything the stages read, from the parsed command line and the
    prepared data.

    Arguments
    ---------
    args : argparse.Namespace
        The benchmark's options (profile applied).
    data_folder, output_folder, cache_folder, prep_folder : str
        Absolute folders.
    lists : list of dict
        The trial lists (see ``stage_data.trial_lists``).
    train_csv : str
        The prepared training CSV.
    n_speakers : int
        Its speakers.
    invocation : dict
        ``command``, ``git_revision``, ``hardware`` of this invocation.
    start : float
        When it started (``time.time()``), for ``--stop_after``.

    Returns
    -------
    dict

    Example
    -------
    >>> from run_benchmark import build_parser
    >>> args = build_parser().parse_args([])
    >>> config = run_config(
    ...     args, data_folder="/d", output_folder="/o", cache_folder="/c",
    ...     lists=[{"name": "O", "path": "/d/O.txt", "extra": False}],
    ...     prep_folder="/o/prep", train_csv="/o/prep/train.csv",
    ...     n_speakers=3, invocation={"command": "c", "git_revision": "g",
    ...     "hardware": "h"}, start=0.0)
    >>> config["common"]["out_n_neurons"], config["summary"]["lists"]
    (3, 'O (/d/O.txt)')
    """
    config = {
        "output_folder": output_folder,
        "results_folder": os.path.abspath(args.results_folder),
        "teacher_source": os.path.abspath(args.teacher_source),
        "lists": lists,
        "train_csv": train_csv,
        "n_speakers": n_speakers,
        **_stage_options(args),
        "git_revision": invocation["git_revision"],
        "report_command": invocation["command"],
        "hardware": invocation["hardware"],
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
            "verification_lists": [t["path"] for t in lists if not t["extra"]],
            "prep_folder": prep_folder,
            "split_ratio": SPLIT_RATIO,
            "seg_dur": args.seg_dur,
            "out_n_neurons": n_speakers,
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "verification_backends": ["cosine", "asnorm"],
        },
        "teacher_cache": (
            os.path.join(output_folder, "teacher_cache")
            if args.teacher_cache
            else None
        ),
        **_overrides(args),
    }
    if not args.no_cache:  # the recipe reads the decoded corpus
        config["common"]["audio_cache"] = cache_folder
    if config["teacher_cache"]:
        config["common"].update(
            teacher_cache=config["teacher_cache"],
            teacher_cache_views=args.teacher_cache_views,
            teacher_cache_precision=args.teacher_cache_precision,
        )
    if config["deadline"] == float("inf"):
        config["deadline"] = time.time() + 10**9
    config["summary"] = run_summary(args, config, data_folder, n_speakers)
    return config


def _stage_options(args):
    """The stages' options, as the command line gives them."""
    return {
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
        "teacher_n_classes": args.teacher_n_classes,
        "throughput_methods": list(args.throughput_methods),
        "time_epoch": args.time_epoch,
        "profile": args.profile,
        "throughput_steps": args.throughput_steps,
        "throughput_warmup": args.throughput_warmup,
        "profile_steps": args.profile_steps,
    }


def _overrides(args):
    """The recipe overrides of the command line: for every run, the
    students, the teacher, and per pair."""
    overrides = {
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
        overrides["pair_override"].setdefault(pair, {}).update(
            parse_assignments([item], "--pair_override")
        )
    return overrides


def run_summary(args, config, data_folder, n_speakers):
    """The configuration as the report lists it.

    Example
    -------
    >>> from run_benchmark import build_parser
    >>> args = build_parser().parse_args([])
    >>> config = {"teacher_source": "t", "pairs": ["p"], "methods": ["kd"],
    ...           "seeds": [1], "workers": 1, "override": {},
    ...           "student_override": {}, "teacher_override": {},
    ...           "pair_override": {}, "lists": []}
    >>> run_summary(args, config, "/d", 3)["data"]
    '/d (3 training speakers)'
    """
    return {
        "profile": args.profile,
        "data": f"{data_folder} ({n_speakers} training speakers)",
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
