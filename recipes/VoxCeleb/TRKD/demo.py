#!/usr/bin/env python3
"""Offline demo: from nothing to a table comparing KD methods.

Without a data folder it generates a deterministic synthetic speaker corpus
in VoxCeleb layout; without a teacher it trains a small one from scratch
(with one, it fine-tunes a head on the corpus's speakers). It then distils
one student per KD method with the same budget through ``train_trkd.py``,
scores each on the trial lists and prints one table (EER, minDCF,
parameters, time), also written to ``<output_folder>/results.md`` and
``results.csv``.

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
import sys
import time

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from speechbrain_trkd.synthetic import make_synthetic_corpus

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, RECIPE_DIR)
import train_teacher  # noqa: E402
import train_trkd  # noqa: E402
from voxceleb_prepare import prepare_voxceleb  # noqa: E402

logger = logging.getLogger(__name__)


def command_line(hparams_file, overrides, run_opts=None):
    """Builds the argument list of a recipe script.

    Arguments
    ---------
    hparams_file : str
        The hparams file.
    overrides : dict
        Hyperparameters to override, as ``--key=value`` (non-strings in
        JSON, which YAML reads back).
    run_opts : dict, optional
        SpeechBrain run options; True flags are passed bare.

    Returns
    -------
    list of str

    Example
    -------
    >>> command_line("a.yaml", {"lr": 0.1, "x": None}, {"debug": True})
    ['a.yaml', '--lr=0.1', '--x=null', '--debug']
    """
    args = [hparams_file]
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args.append(f"--{key}={text}")
    for key, value in (run_opts or {}).items():
        args.append(f"--{key}" if value is True else f"--{key}={value}")
    return args


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


def result_row(name, brain, seconds):
    """Summarises one trained model for the table.

    Arguments
    ---------
    name : str
        Row label.
    brain : speechbrain.core.Brain
        The trained brain, with ``metrics`` set by the recipe scripts.
    seconds : float
        Wall time of the stage.

    Returns
    -------
    dict
        ``model``, ``params_M``, ``time_s`` and, for each trial list,
        ``<list> EER %`` and ``<list> minDCF 0.01``.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> import torch
    >>> brain = SimpleNamespace(
    ...     modules=SimpleNamespace(embedding_model=torch.nn.Linear(10, 2)),
    ...     metrics={"O": {"cosine": {"eer": 5.0, "min_dcf_0.01": 0.41}}},
    ... )
    >>> result_row("student trkd", brain, 61.2)
    {'model': 'student trkd', 'params_M': '0.00', 'time_s': '61',
     'O EER %': '5.00', 'O minDCF 0.01': '0.410'}
    """
    params = sum(p.numel() for p in brain.modules.embedding_model.parameters())
    row = {
        "model": name,
        "params_M": f"{params / 1e6:.2f}",
        "time_s": f"{seconds:.0f}",
    }
    for list_name, per_backend in brain.metrics.items():
        values = per_backend["cosine"]
        row[f"{list_name} EER %"] = f"{values['eer']:.2f}"
        row[f"{list_name} minDCF 0.01"] = f"{values['min_dcf_0.01']:.3f}"
    return row


def markdown_table(rows):
    """Formats rows of equal keys as a markdown table.

    Arguments
    ---------
    rows : list of dict

    Returns
    -------
    str

    Example
    -------
    >>> print(markdown_table([{"a": "1", "b": "x"}]))
    | a | b |
    |---|---|
    | 1 | x |
    """
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(row[k] for k in keys) + " |" for row in rows]
    return "\n".join(lines)


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
    n_speakers = count_speakers(os.path.join(prep_folder, "train.csv"))
    common = dict(
        hparams["common_overrides"],
        data_folder=data_folder,
        verification_lists=trial_lists,
        prep_folder=prep_folder,
        out_n_neurons=n_speakers,
    )

    if hparams["teacher_source"] is None:
        teacher_overrides = hparams["scratch_teacher_overrides"]
    else:
        teacher_overrides = dict(
            hparams["pretrained_teacher_overrides"],
            teacher_source=os.path.abspath(hparams["teacher_source"]),
        )
    teacher_overrides = dict(
        common, **teacher_overrides, output_folder=os.path.join(out, "teacher")
    )
    rows = []
    tic = time.perf_counter()
    teacher = train_teacher.main(
        command_line(
            os.path.join(RECIPE_DIR, "hparams", hparams["teacher_hparams"]),
            teacher_overrides,
            passed_opts,
        )
    )
    rows.append(result_row("teacher", teacher, time.perf_counter() - tic))

    for method in hparams["methods"]:
        student_overrides = dict(
            common,
            **hparams["student_overrides"],
            kd_method=method,
            teacher_source=teacher.hparams.export_folder,
            teacher_n_classes=n_speakers,
            teacher_channels=teacher.hparams.channels,
            output_folder=os.path.join(out, "students", method),
        )
        tic = time.perf_counter()
        student = train_trkd.main(
            command_line(
                os.path.join(RECIPE_DIR, "hparams", hparams["student_hparams"]),
                student_overrides,
                passed_opts,
            )
        )
        rows.append(
            result_row(f"student {method}", student, time.perf_counter() - tic)
        )

    table = markdown_table(rows)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fout:
        fout.write(table + "\n")
    with open(
        os.path.join(out, "results.csv"), "w", newline="", encoding="utf-8"
    ) as fout:
        writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nData: {data_folder}")
    print(f"Teacher: {hparams['teacher_source'] or 'trained from scratch'}")
    print(table)
    print(f"Total time: {time.perf_counter() - start:.0f} s; see {out}")
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(sys.argv[1:])
