#!/usr/bin/env python3
"""Offline demo: from nothing to a table comparing KD methods.

Without a data folder it generates a deterministic synthetic speaker corpus
in VoxCeleb layout; without a teacher it trains a small one from scratch
(with one, it fine-tunes a head on the corpus's speakers). It then distils
one student per KD method and seed of ``student_seeds`` with the same budget
through ``train_trkd.py``, from a teacher-output cache built once, scores
each on the trial lists and prints one table of mean ± std over the seeds
(EER, minDCF, parameters, time), also written to
``<output_folder>/results.md``; every run is in ``results.csv``. On one
machine a second run prints the same figures: every stage is seeded and reads
its data in a fixed order.

To run (2 CPU cores, under 10 minutes)::

    python demo.py hparams/demo.yaml

On real speech with the real teacher::

    python demo.py hparams/demo.yaml --data_folder=../shared/data/openspk \\
        --teacher_source=../shared/models/spkrec-ecapa-voxceleb

Run options (``--device``, ``--precision``, ...) are passed to every stage.

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import glob
import json
import logging
import os
import statistics
import sys
import time

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from voxceleb_prepare import prepare_voxceleb

from speechbrain_trkd.markdown import markdown_table
from speechbrain_trkd.synthetic import make_synthetic_corpus
from speechbrain_trkd.training_run import command_line, run_script

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))

logger = logging.getLogger(__name__)


def count_speakers(train_csv):
    """Counts the speakers of a prepared training CSV.

    Arguments
    ---------
    train_csv : str
        A CSV with an ``spk_id`` column.

    Returns
    -------
    int

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> _ = open(path, "w").write("ID,spk_id\\na,s1\\nb,s2\\nc,s1\\n")
    >>> count_speakers(path)
    2
    """
    with open(train_csv, newline="", encoding="utf-8") as fin:
        return len({row["spk_id"] for row in csv.DictReader(fin)})


def result_row(name, seed, run_folder, seconds):
    """Summarises one trained model from its run folder: the metrics the
    script wrote (``metrics.json``) and the exported embedding model's
    parameters (``export/embedding_model.ckpt``, loaded weights-only).

    Arguments
    ---------
    name : str
        Row label.
    seed : int
        The seed the model was trained with.
    run_folder : str
        The script's ``output_folder``.
    seconds : float
        Wall time of the stage.

    Returns
    -------
    dict
        ``model``, ``seed``, ``params_M``, ``time_s`` and, for each trial
        list, ``<list> EER %`` and ``<list> minDCF 0.01`` (numbers).

    Example
    -------
    >>> import tempfile
    >>> import torch
    >>> run = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(run, "export"))
    >>> model = torch.nn.Sequential(torch.nn.Linear(10, 2),
    ...                             torch.nn.BatchNorm1d(2))
    >>> torch.save(model.state_dict(),
    ...            os.path.join(run, "export", "embedding_model.ckpt"))
    >>> metrics = {"O": {"cosine": {"eer": 5.0, "min_dcf_0.01": 0.41}}}
    >>> with open(os.path.join(run, "metrics.json"), "w") as fout:
    ...     json.dump(metrics, fout)
    >>> result_row("student trkd", 1986, run, 61.2)
    {'model': 'student trkd', 'seed': 1986, 'params_M': 2.6e-05,
     'time_s': 61.2, 'O EER %': 5.0, 'O minDCF 0.01': 0.41}
    """
    weights = torch.load(
        os.path.join(run_folder, "export", "embedding_model.ckpt"),
        map_location="cpu",
        weights_only=True,
    )
    # Batch-norm statistics are buffers, not parameters.
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    params = sum(
        tensor.numel()
        for key, tensor in weights.items()
        if not key.endswith(buffers)
    )
    with open(os.path.join(run_folder, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    row = {
        "model": name,
        "seed": seed,
        "params_M": params / 1e6,
        "time_s": seconds,
    }
    for list_name, per_backend in metrics.items():
        values = per_backend["cosine"]
        row[f"{list_name} EER %"] = values["eer"]
        row[f"{list_name} minDCF 0.01"] = values["min_dcf_0.01"]
    return row


def summary_row(runs):
    """Mean ± standard deviation over the seeds of one model.

    Arguments
    ---------
    runs : list of dict
        Rows of ``result_row`` for one model, one per seed.

    Returns
    -------
    dict of str
        ``model``, ``seeds`` and each measure as ``mean ± std`` (the mean
        alone for one seed); parameters and time as plain means.

    Example
    -------
    >>> runs = [
    ...     {"model": "m", "seed": 1, "params_M": 0.14, "time_s": 40.0,
    ...      "O EER %": 30.0, "O minDCF 0.01": 0.9},
    ...     {"model": "m", "seed": 2, "params_M": 0.14, "time_s": 50.0,
    ...      "O EER %": 32.0, "O minDCF 0.01": 0.94},
    ... ]
    >>> summary_row(runs)
    {'model': 'm', 'seeds': '2', 'params_M': '0.14', 'time_s': '45',
     'O EER %': '31.00 ± 1.41', 'O minDCF 0.01': '0.920 ± 0.028'}
    """
    row = {
        "model": runs[0]["model"],
        "seeds": str(len(runs)),
        "params_M": f"{runs[0]['params_M']:.2f}",
        "time_s": f"{statistics.mean(r['time_s'] for r in runs):.0f}",
    }
    for key in runs[0]:
        if key in ("model", "seed", "params_M", "time_s"):
            continue
        values = [r[key] for r in runs]
        digits = 2 if key.endswith("%") else 3
        text = f"{statistics.mean(values):.{digits}f}"
        if len(values) > 1:
            text += f" ± {statistics.stdev(values):.{digits}f}"
        row[key] = text
    return row


def prepare_corpus(hparams, out):
    """Generates (or takes) the corpus, prepares it and names its lists.

    Arguments
    ---------
    hparams : dict
        The demo's hyperparameters.
    out : str
        The demo's output folder.

    Returns
    -------
    dict
        The overrides every stage shares: ``common_overrides`` plus the
        data folder, trial lists, preparation folder and speaker count.

    Example
    -------
    >>> import tempfile
    >>> hparams = {
    ...     "data_folder": None,
    ...     "synthetic_corpus": {"n_train_speakers": 3, "n_dev_speakers": 2,
    ...         "sessions_per_speaker": 2, "utterances_per_session": 3,
    ...         "duration": [2.0, 2.5], "seed": 1},
    ...     "common_overrides": {"seg_dur": 2.0, "seed": 1},
    ... }
    >>> common = prepare_corpus(hparams, tempfile.mkdtemp())
    >>> common["out_n_neurons"], [os.path.basename(t) for t in
    ...     common["verification_lists"]]
    (3, ['O.txt'])
    """
    data_folder = hparams["data_folder"]
    if data_folder is None:
        corpus = make_synthetic_corpus(
            os.path.join(out, "corpus"), **hparams["synthetic_corpus"]
        )
        data_folder = corpus.folder
    data_folder = os.path.abspath(data_folder)
    trial_lists = sorted(
        glob.glob(os.path.join(data_folder, "trials", "*.txt"))
    )
    if not trial_lists:
        raise FileNotFoundError(
            f"No trial lists in {data_folder}/trials: the demo scores the "
            "lists it finds there (lines `label enrol test`)"
        )
    prep_folder = os.path.join(out, "prep")
    prepare_voxceleb(
        data_folder,
        prep_folder,
        trial_lists,
        seg_dur=hparams["common_overrides"]["seg_dur"],
    )
    return dict(
        hparams["common_overrides"],
        data_folder=data_folder,
        verification_lists=trial_lists,
        prep_folder=prep_folder,
        out_n_neurons=count_speakers(os.path.join(prep_folder, "train.csv")),
    )


def run_stage(script, hparams_file, overrides, run_opts):
    """Runs one recipe script as its command line does (in this process,
    ``runpy``) and times it.

    Arguments
    ---------
    script : str
        ``train_teacher.py`` or ``train_trkd.py``, in the recipe's folder.
    hparams_file : str
        Name of a file of the recipe's ``hparams/`` folder.
    overrides : dict
        Its overrides (``output_folder`` among them).
    run_opts : dict
        SpeechBrain run options.

    Returns
    -------
    seconds : float
        The stage's wall time.

    Example
    -------
    >>> run_stage("train_trkd.py", "no_such.yaml", {}, {})
    Traceback (most recent call last):
    ...
    FileNotFoundError: ... No such file or directory: '...no_such.yaml'
    """
    argv = command_line(
        os.path.join(RECIPE_DIR, "hparams", hparams_file), overrides, run_opts
    )
    tic = time.perf_counter()
    run_script(os.path.join(RECIPE_DIR, script), argv)
    return time.perf_counter() - tic


def write_results(runs, out):
    """Writes every run to ``results.csv`` and the summary to ``results.md``.

    Arguments
    ---------
    runs : list of dict
        Rows of ``result_row``.
    out : str
        The demo's output folder.

    Returns
    -------
    str
        The summary table (markdown), one row per model.

    Example
    -------
    >>> import tempfile
    >>> runs = [
    ...     {"model": "m", "seed": s, "params_M": 0.1, "time_s": 10.0,
    ...      "O EER %": eer, "O minDCF 0.01": 0.5}
    ...     for s, eer in ((1, 30.0), (2, 34.0))
    ... ]
    >>> out = tempfile.mkdtemp()
    >>> print(write_results(runs, out))
    | model | seeds | params_M | time_s | O EER % | O minDCF 0.01 |
    |---|---|---|---|---|---|
    | m | 2 | 0.10 | 10 | 32.00 ± 2.83 | 0.500 ± 0.000 |
    >>> sorted(os.listdir(out))
    ['results.csv', 'results.md']
    """
    models = dict.fromkeys(run["model"] for run in runs)
    table = markdown_table(
        [summary_row([r for r in runs if r["model"] == m]) for m in models]
    )
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fout:
        fout.write(table + "\n")
    with open(
        os.path.join(out, "results.csv"), "w", newline="", encoding="utf-8"
    ) as fout:
        writer = csv.DictWriter(fout, fieldnames=list(runs[0]))
        writer.writeheader()
        writer.writerows(runs)
    return table


def main(argv):
    """Runs the whole demo and prints the table."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    passed_opts = {
        key: getattr(run_opts, key)
        for key in sorted(run_opts.overridden_args)
        if key != "param_file"
    }
    out = os.path.abspath(hparams["output_folder"])
    start = time.perf_counter()
    common = prepare_corpus(hparams, out)

    if hparams["teacher_source"] is None:
        teacher_overrides = hparams["scratch_teacher_overrides"]
    else:
        teacher_overrides = dict(
            hparams["pretrained_teacher_overrides"],
            teacher_source=os.path.abspath(hparams["teacher_source"]),
        )
    teacher_folder = os.path.join(out, "teacher")
    seconds = run_stage(
        "train_teacher.py",
        hparams["teacher_hparams"],
        dict(common, **teacher_overrides, output_folder=teacher_folder),
        passed_opts,
    )
    runs = [result_row("teacher", common["seed"], teacher_folder, seconds)]
    # The exported teacher, sized from its weights by the recipe.
    teacher_export = os.path.join(teacher_folder, "export")
    for method in hparams["methods"]:
        for seed in hparams["student_seeds"]:
            run_folder = os.path.join(out, "students", method, str(seed))
            seconds = run_stage(
                "train_trkd.py",
                hparams["student_hparams"],
                dict(
                    common,
                    **hparams["student_overrides"],
                    seed=seed,
                    kd_method=method,
                    teacher_source=teacher_export,
                    output_folder=run_folder,
                ),
                passed_opts,
            )
            runs.append(
                result_row(f"student {method}", seed, run_folder, seconds)
            )

    table = write_results(runs, out)
    print(f"\nData: {common['data_folder']}")
    print(f"Teacher: {hparams['teacher_source'] or 'trained from scratch'}")
    print(table)
    print(f"Total time: {time.perf_counter() - start:.0f} s; see {out}")
    return runs


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(sys.argv[1:])
