"""The benchmark's student stage: one ``train_trkd.py`` run per pair,
method and seed, in concurrent worker processes, each finished run
written to one result file.

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

import speechbrain as sb
import torch
from bench_config import (
    BENCH_DIR,
    NO_KD_METHODS,
    NO_KD_TAG,
    RECIPE_DIR,
    REPO,
    RESULT_FILE,
    checkout_relative,
    free_memory,
    student_argv,
)
from stage_teacher import score_lists

from speechbrain_trkd.audio_cache import AudioCache, reading_from
from speechbrain_trkd.evaluation import student_encoder
from speechbrain_trkd.run_identity import check_same_run
from speechbrain_trkd.training_plots import read_train_log
from speechbrain_trkd.training_run import run_script


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
    brain = run_script(RECIPE_DIR / "train_trkd.py", job["argv"])["brain"]
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
    free_memory()
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
    with reading_from(cache):
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
                free_memory()
            else:
                if os.path.isfile(failed):
                    os.remove(failed)
    return failures


def _student_job(config, teacher, pair, method, seed):
    """A student run not done yet, as a worker's job; None when its run
    file exists with the same arguments (refused with other ones)."""
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
        if checkout_relative(previous) != checkout_relative(argv):
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


def _start_worker(config, jobs, log_dir, worker):
    """Starts one worker process on its jobs (``--run_jobs``); returns the
    process and its open log."""
    # Per invocation: several invocations may share the output folder.
    name = f"{config.get('tag', 'main')}_{os.getpid()}_worker{worker}"
    spec_file = os.path.join(log_dir, f"{name}.json")
    with open(spec_file, "w", encoding="utf-8") as fout:
        json.dump(
            {
                "jobs": jobs,
                "cache_folder": config["cache_folder"],
                "lists": config["lists"],
                "train_csv": config["train_csv"],
                "deadline": config["deadline"],
                "threads": config.get("threads"),
                "runs_folder": config.get("runs_folder"),
                "git_revision": config.get("git_revision"),
                "hardware": config.get("hardware"),
            },
            fout,
            indent=2,
        )
    log = open(os.path.join(log_dir, f"{name}.log"), "a", encoding="utf-8")
    script = str(BENCH_DIR / "run_benchmark.py")
    env = dict(os.environ)
    if config.get("threads"):
        env["OMP_NUM_THREADS"] = str(config["threads"])
    process = subprocess.Popen(
        [sys.executable, script, "--run_jobs", spec_file],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    return process, log


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
    jobs = [
        job
        for pair in config["pairs"]
        for method in config["methods"]
        for seed in config["seeds"]
        if (job := _student_job(config, teacher, pair, method, seed))
    ]
    if not jobs:
        return 0
    log_dir = os.path.join(config["output_folder"], "logs")
    os.makedirs(log_dir, exist_ok=True)
    n_workers = max(1, min(config["workers"], len(jobs)))
    processes = [
        _start_worker(config, jobs[worker::n_workers], log_dir, worker)
        for worker in range(n_workers)
    ]
    failed = 0
    for process, log in processes:
        failed += process.wait() != 0
        log.close()
    return failed
