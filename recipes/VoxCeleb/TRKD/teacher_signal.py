#!/usr/bin/env python3
"""How much a teacher teaches, before any student is trained.

For random training crops (the teacher cache's views when
``--teacher_cache`` is given, so augmented views count as they will in
training), prints and plots, per temperature and KD margin: the teacher's
top-1 accuracy, its target probability and non-target mass, the entropy of
its renormalised non-target distribution, TRKD's confusion-set size at the
curriculum's taus, and each KD term at ``--signal_weight`` as a ratio to
the AAM loss of an untrained student on the same crops (see
``speechbrain_trkd.teacher_signal``). Use it to choose ``kd_temperature``,
``kd_margin`` and ``kd_weight`` (the recipe README's "How to choose T and
kd_weight").

To run, with the distillation's own hparams file and overrides::

    python teacher_signal.py hparams/ecapa_to_small.yaml \\
        --data_folder=/path/to/corpus --teacher_source=<teacher folder> \\
        --teacher_cache=<cache folder> \\
        --signal_temperatures=[1,2,3,4] --signal_margins=[0,0.2]

It writes ``teacher_signal.md``, ``.csv`` and ``.png`` in
``--signal_output`` (default ``<output_folder>/teacher_signal``).

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import csv
import math
import os
import random
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.distributed import infer_device, run_on_main
from voxceleb_prepare import prepare_voxceleb

from speechbrain_trkd.corpus_cache import (
    open_teacher_cache,
)
from speechbrain_trkd.data import dataio_prep
from speechbrain_trkd.teacher_loading import (
    check_teacher_speakers,
    load_teacher,
    teacher_embedder,
)
from speechbrain_trkd.teacher_signal import (
    format_signal_table,
    plot_signal,
    signal_rows,
)
from speechbrain_trkd.training_run import with_teacher_sizes


def signal_parser():
    """The report's own options (the rest are the recipe's overrides).

    Example
    -------
    >>> options, rest = signal_parser().parse_known_args(
    ...     ["h.yaml", "--signal_crops=8", "--lr=0.1"])
    >>> options.signal_crops, rest
    (8, ['h.yaml', '--lr=0.1'])
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--signal_crops", type=int, default=256)
    parser.add_argument("--signal_temperatures", default="[1, 2, 3, 4]")
    parser.add_argument("--signal_margins", default="[0, 0.2]")
    parser.add_argument(
        "--signal_taus",
        default=None,
        help="default: the curriculum's first, geometric middle and last tau",
    )
    parser.add_argument(
        "--signal_weight",
        type=float,
        default=None,
        help="the KD weight of the ratios (default: the hparams' kd_weight)",
    )
    parser.add_argument("--signal_output", default=None)
    parser.add_argument("--signal_batch_size", type=int, default=32)
    return parser


def number_list(text, option):
    """Parses ``[1, 2.5]`` (or ``1,2.5``) into floats, naming the option.

    Example
    -------
    >>> number_list("[1, 2.5]", "--signal_margins")
    [1.0, 2.5]
    >>> number_list("[a]", "--signal_margins")
    Traceback (most recent call last):
    ...
    ValueError: --signal_margins expects numbers like [1, 2], got '[a]'
    """
    try:
        return [float(x) for x in text.strip("[] ").split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"{option} expects numbers like [1, 2], got {text!r}"
        ) from None


def curriculum_taus(schedule):
    """The first, geometric middle and last tau of the curriculum.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> curriculum_taus(SimpleNamespace(tau_init=1.0, tau_final=0.04))
    [1.0, 0.2, 0.04]
    """
    first, last = float(schedule.tau_init), float(schedule.tau_final)
    middle = round(math.sqrt(first * last), 3)
    return sorted({first, middle, last}, reverse=True)


def crop_batches(train_data, n_crops, batch_size, seed):
    """Batches of ``n_crops`` training items drawn at random (seeded; each
    item is a random view of its segment with a cache).

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset(
    ...     {f"u{i}": {"sig": torch.zeros(4)} for i in range(5)})
    >>> data.set_output_keys(["id", "sig"])
    >>> [len(batch.id) for batch in crop_batches(data, 4, 3, seed=1)]
    [3, 1]
    """
    generator = torch.Generator().manual_seed(seed)
    random.seed(seed)
    order = torch.randperm(len(train_data), generator=generator)[:n_crops]
    items = [train_data[int(index)] for index in order]
    for first in range(0, len(items), batch_size):
        yield PaddedBatch(items[first : first + batch_size])


def crop_scores(hparams, train_data, teacher, n_crops, batch_size):
    """Cosine scores of the teacher and of the untrained student on the
    same crops, their targets, and the student's AAM loss on them.

    Example
    -------
    >>> crop_scores({}, [], None, 4, 2)
    Traceback (most recent call last):
    ...
    KeyError: 'modules'
    """
    modules = hparams["modules"]
    teacher.eval()
    torch.manual_seed(hparams["seed"])
    teacher_cos, student_cos, targets, losses = [], [], [], []
    with torch.no_grad():
        for batch in crop_batches(
            train_data, n_crops, batch_size, hparams["seed"]
        ):
            wavs, lens = batch.sig
            if hasattr(batch, "teacher_emb"):
                cosine = teacher.classify(batch.teacher_emb.data.unsqueeze(1))
            else:
                cosine = teacher(wavs, lens)[1]
            feats = modules["compute_features"](wavs)
            feats = modules["mean_var_norm"](feats, lens)
            student = modules["classifier"](
                modules["embedding_model"](feats, lens)
            )
            labels = batch.spk_id_encoded.data
            losses.append(
                float(hparams["compute_cost"](student, labels, lens))
                * len(labels)
            )
            teacher_cos.append(cosine.squeeze(1))
            student_cos.append(student.squeeze(1))
            targets.append(labels.squeeze(-1))
    n = sum(len(t) for t in targets)
    return (
        torch.cat(teacher_cos),
        torch.cat(student_cos),
        torch.cat(targets),
        sum(losses) / n,
    )


def write_report(rows, taus, folder, header):
    """Writes the table (markdown and CSV) and the figure; returns the
    markdown text.

    Example
    -------
    >>> import tempfile
    >>> rows = signal_rows(torch.rand(4, 5), torch.zeros(4, 5),
    ...                    torch.arange(4), 9.0, [2.0], [0.0], [0.5], 0.1)
    >>> folder = tempfile.mkdtemp()
    >>> text = write_report(rows, [0.5], folder, "Header.")
    >>> text.splitlines()[0], sorted(os.listdir(folder))[:2]
    ('Header.', ['teacher_signal.csv', 'teacher_signal.md'])
    """
    os.makedirs(folder, exist_ok=True)
    table = format_signal_table(rows, taus)
    text = f"{header}\n\n{table}\n"
    with open(os.path.join(folder, "teacher_signal.md"), "w") as fout:
        fout.write(text)
    with open(os.path.join(folder, "teacher_signal.csv"), "w") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_signal(rows, taus, os.path.join(folder, "teacher_signal.png"))
    return text


if __name__ == "__main__":
    options, rest = signal_parser().parse_known_args(sys.argv[1:])
    temperatures = number_list(
        options.signal_temperatures, "--signal_temperatures"
    )
    margins = number_list(options.signal_margins, "--signal_margins")
    hparams_file, run_opts, overrides = sb.parse_arguments(rest)
    overrides = with_teacher_sizes(hparams_file, overrides)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    taus = (
        number_list(options.signal_taus, "--signal_taus")
        if options.signal_taus
        else curriculum_taus(hparams["tau_schedule"])
    )
    weight = (
        hparams["kd_weight"]
        if options.signal_weight is None
        else options.signal_weight
    )
    run_on_main(prepare_voxceleb, kwargs=hparams["prepare_options"])
    cache = None
    cache_augment = hparams["cache_view_augment"]
    if hparams["teacher_cache"]:
        # A teacher that cannot align to the training speakers is refused
        # before its cache is built.
        check_teacher_speakers(
            hparams["pretrainer"],
            hparams["teacher_revision"],
            hparams["train_annotation"],
            hparams["teacher_source"],
        )
        cache = open_teacher_cache(
            hparams["teacher_cache"],
            [hparams["train_annotation"], hparams["valid_annotation"]],
            lambda device: teacher_embedder(
                hparams["pretrainer"],
                hparams["teacher_revision"],
                hparams["teacher_sha256"],
                hparams["teacher"],
                device,
            ),
            run_opts.get("device") or infer_device(),
            **hparams["teacher_cache_options"],
            augment=cache_augment,
        )
    train_data, _, label_encoder = dataio_prep(
        hparams["train_annotation"],
        hparams["valid_annotation"],
        hparams["save_folder"],
        n_classes=hparams["out_n_neurons"],
        crop_seconds=hparams["sentence_len"],
        sample_rate=hparams["sample_rate"],
        random_chunk=hparams["random_chunk"],
        cache=cache,
        cache_augment=cache_augment,
    )
    # The teacher is loaded whatever kd_method the file names.
    teacher = load_teacher(
        hparams["pretrainer"],
        hparams["teacher"],
        label_encoder,
        revision=hparams["teacher_revision"],
        sha256=hparams["teacher_sha256"],
        source=hparams["teacher_source"],
        n_classes=hparams["teacher_n_classes"],
    )
    teacher_cos, student_cos, targets, aam = crop_scores(
        hparams,
        train_data,
        teacher,
        options.signal_crops,
        options.signal_batch_size,
    )
    rows = signal_rows(
        teacher_cos,
        student_cos,
        targets,
        aam,
        temperatures,
        margins,
        taus,
        weight,
        hparams["kd_scale"],
        hparams["kd_method_options"],
    )
    source = "teacher cache views" if cache else "random crops"
    header = (
        f"Teacher signal of {hparams['teacher_source']}: {len(targets)} "
        f"{source} of {hparams['sentence_len']} s, logits = "
        f"{hparams['kd_scale']:g} x cosine; KD terms at weight {weight:g} "
        f"against the untrained student's AAM loss ({aam:.2f}). Medians "
        "over crops (top-1: mean)."
    )
    folder = options.signal_output or os.path.join(
        hparams["output_folder"], "teacher_signal"
    )
    print(write_report(rows, taus, folder, header))
