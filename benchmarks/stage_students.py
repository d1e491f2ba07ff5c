"""The benchmark's student stage: one ``train_trkd.py`` run per pair,
method and seed, each a process of its own as a user would start it,
several at a time, each finished run written to one result file.

Authors
 * speechbrain-trkd developers 2026
"""

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import speechbrain as sb
import torch
from bench_config import (
    NO_KD_METHODS,
    NO_KD_TAG,
    RECIPE_DIR,
    REPO,
    RESULT_FILE,
    checkout_relative,
    free_memory,
    read_json,
    student_argv,
)
from stage_teacher import score_lists

import speechbrain_trkd
from speechbrain_trkd import pretrained
from speechbrain_trkd.run_identity import check_same_run, resolved_settings
from speechbrain_trkd.training_plots import read_train_log


def run_student(job, config):
    """Trains and scores one student: ``train_trkd.py`` run as a user runs
    it, in its own process (its output in ``<output_folder>/logs``), then
    its exported model scored on the extra lists.

    Arguments
    ---------
    job : dict
        ``argv``, ``pair``, ``method``, ``seed``, ``output_folder``,
        ``run_file``.
    config : dict
        Built by ``main``: ``lists`` (extra lists are scored here),
        ``train_csv``, ``threads``, ``runs_folder``, ``run_opts``, ...

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
    settings = resolved_settings(hparams_file, overrides)
    try:
        check_same_run(job["output_folder"], hparams_file, overrides)
    except ValueError as error:  # unfinished under older settings: redo
        aside = f"{job['output_folder']}.stale-{time.strftime('%Y%m%d%H%M%S')}"
        os.rename(job["output_folder"], aside)
        print(f"{error}; its folder is kept as {aside} and the run redone")
    tic = time.perf_counter()
    _train(job, config)
    train_s = time.perf_counter() - tic
    metrics = read_json(os.path.join(job["output_folder"], "metrics.json"))
    encoder = _exported_student(settings["export_folder"], config)
    extras = [t for t in config["lists"] if t["extra"]]
    metrics.update(
        score_lists(
            pretrained.pretrained_encode_fn(encoder),
            extras,
            os.path.join(job["output_folder"], "extra"),
            config["train_csv"],
            settings,
            encoder.device,
        )
    )
    result = {
        key: job[key]
        for key in ("tag", "pair", "method", "seed", "output_folder")
    }
    result.update(
        train_s=train_s,
        wall_s=time.perf_counter() - tic,
        params=sum(
            p.numel() for p in encoder.mods.embedding_model.parameters()
        ),
        metrics=metrics,
        argv=job["argv"],
        command=shlex.join(
            ["python", "recipes/VoxCeleb/TRKD/train_trkd.py"] + job["argv"]
        ),
        git_revision=config.get("git_revision"),
        hardware=config.get("hardware"),
        threads=config.get("threads") or torch.get_num_threads(),
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    conf_size = _mean_conf_size(job["output_folder"])
    if conf_size is not None:
        result["mean_conf_size"] = conf_size
    for path in (job["output_folder"], config.get("runs_folder")):
        if path is None:
            continue
        os.makedirs(path, exist_ok=True)
        name = RESULT_FILE if path == job["output_folder"] else job["run_file"]
        with open(os.path.join(path, name), "w", encoding="utf-8") as fout:
            json.dump(checkout_relative(result), fout, indent=2)
    del encoder
    free_memory()
    return result


def _train(job, config):
    """Runs ``python recipes/VoxCeleb/TRKD/train_trkd.py <argv>`` from the
    checkout, on ``threads`` torch threads; its output goes to
    ``<output_folder>/logs/train_trkd.log``. A failed run is an error."""
    log_folder = os.path.join(job["output_folder"], "logs")
    os.makedirs(log_folder, exist_ok=True)
    env = dict(os.environ)
    # The plugin this process imported, whichever checkout it is from.
    plugin_root = os.path.dirname(os.path.dirname(speechbrain_trkd.__file__))
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [plugin_root, env.get("PYTHONPATH")])
    )
    if config.get("threads"):
        env["OMP_NUM_THREADS"] = str(config["threads"])
    log_path = os.path.join(log_folder, "train_trkd.log")
    with open(log_path, "a", encoding="utf-8") as log:
        code = subprocess.call(
            [sys.executable, str(RECIPE_DIR / "train_trkd.py"), *job["argv"]],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
    if code != 0:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            tail = "".join(log.readlines()[-20:])
        raise RuntimeError(
            f"train_trkd.py exited with code {code}; the end of its output "
            f"({log_path}):\n{tail}"
        )


def _exported_student(folder, config):
    """The exported student, loaded weights-only into the recipe's own
    architecture (an ECAPA-TDNN or a ResNet, told by its weights)."""
    held = pretrained.sizes_in_weights(folder)
    return pretrained.load_pretrained_encoder(
        folder,
        config.get("run_opts", {}).get("device") or "cpu",
        architecture="resnet" if "resnet_channels" in held else "ecapa",
    )


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


def _student_job(config, teacher, pair, method, seed):
    """A student run not done yet, as a job of :func:`run_students`; None
    when its run file exists with the same arguments (refused with other
    ones)."""
    run_tag = (
        config.get("no_kd_tag", NO_KD_TAG)
        if method in NO_KD_METHODS
        else config.get("tag", "main")
    )
    folder = os.path.join(
        config["output_folder"], "students", run_tag, pair, method, str(seed)
    )
    argv = student_argv(config, teacher, pair, method, seed, folder)
    run_file = f"{run_tag}__{pair}__{method}__{seed}.json"
    done = os.path.join(folder, RESULT_FILE)
    if config.get("runs_folder") is not None:
        done = os.path.join(config["runs_folder"], run_file)
    if os.path.isfile(done):
        with open(done, encoding="utf-8") as fin:
            previous = json.load(fin)["argv"]
        if _run_arguments(previous) != _run_arguments(argv):
            raise ValueError(
                f"{done} was trained with other settings "
                f"({shlex.join(previous)}); every method must "
                "share one budget: use another --output_folder"
            )
        return None
    return {
        "tag": run_tag,
        "pair": pair,
        "method": method,
        "seed": seed,
        "output_folder": folder,
        "argv": argv,
        "run_file": run_file,
    }


def _run_arguments(argv):
    """A student's arguments as a finished run is matched by: relative to
    the checkout, without ``--audio_cache`` (where the audio is read from
    is not a setting of the run: ``run_identity.NOT_TRAINING_KEYS``).

    Example
    -------
    >>> _run_arguments(["a.yaml", "--audio_cache=/c", "--seed=3"])
    ['a.yaml', '--seed=3']
    """
    return [
        arg
        for arg in checkout_relative(argv)
        if not arg.startswith("--audio_cache=")
    ]


def _run_job(job, config):
    """One job of :func:`run_students`: True when it failed (its traceback
    in ``FAILED.txt`` of its folder); none starts past the deadline."""
    if time.time() > config["deadline"]:
        print(f"{job['output_folder']}: past --stop_after, left out")
        return False
    os.makedirs(job["output_folder"], exist_ok=True)
    failed = os.path.join(job["output_folder"], "FAILED.txt")
    try:
        run_student(job, config)
    except Exception:
        with open(failed, "w", encoding="utf-8") as fout:
            fout.write(traceback.format_exc())
        print(f"{job['output_folder']} failed, see {failed}", flush=True)
        free_memory()
        return True
    if os.path.isfile(failed):
        os.remove(failed)
    return False


def run_students(config, teacher):
    """Trains the student runs not done yet, ``workers`` at a time.

    A run finished with other arguments (another budget) is an error.
    Jobs are ordered pair, method, seed, and each run starts when one
    before it ends, so that with one worker per seed the seeds of a method
    train at the same time. A failed run is logged and the next one starts.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.
    teacher : dict
        From :func:`run_teacher`.

    Returns
    -------
    int
        The number of runs that failed.

    Example
    -------
    >>> import tempfile
    >>> run_students({"output_folder": tempfile.mkdtemp(), "pairs": [],
    ...               "methods": [], "seeds": []}, teacher={})
    0
    """
    jobs = [
        job
        for pair in config["pairs"]
        for method in config["methods"]
        for seed in config["seeds"]
        if (job := _student_job(config, teacher, pair, method, seed))
    ]
    if not jobs:
        return 0
    # The pool's threads wait on the recipe processes, then score the
    # extra lists on as many torch threads as a run has.
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    n_workers = max(1, min(config["workers"], len(jobs)))
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return sum(pool.map(lambda job: _run_job(job, config), jobs))
