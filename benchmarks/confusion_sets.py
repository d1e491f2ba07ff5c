#!/usr/bin/env python3
"""How large TRKD's confusion set is, as a function of tau, on real speech.

For each of ``--crops`` training crops, a teacher's logits (its cosine
scores times ``kd_scale`` = 30, the logits the recipe distils) are turned
into a posterior at each temperature, and TRKD's triage is applied at each
tau of a grid. Per (temperature, tau): the median and the 10th / 90th
percentiles over crops of the confusion-set size, and of the share of the
non-target mass left in the background. Writes ``confusion_sets.csv`` and,
when matplotlib is installed, ``confusion_sets.png``.

The target of a crop is its speaker's class when the teacher knows the
corpus's speakers (``--targets=labels``); otherwise (e.g. the Hub teacher,
trained on VoxCeleb, on another corpus) it is the teacher's own top class
(``--targets=top1``).

Example::

    python benchmarks/confusion_sets.py \\
        --teacher ../shared/models/ecapa-openspk --targets labels \\
        --teacher ../shared/models/spkrec-ecapa-voxceleb --targets top1 \\
        --data_folder ../shared/data/openspk --output_folder results/conf

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import csv
import os
import random

import numpy as np
import torch
from speechbrain.dataio import audio_io
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.processing.features import InputNormalization

from speechbrain_trkd.losses import triage_partition
from speechbrain_trkd.plots import figure_class, save_figure
from speechbrain_trkd.teacher import FrozenTeacher

TAUS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99)
TEMPERATURES = (1.0, 4.0)
KD_SCALE = 30.0
PERCENTILES = (10, 50, 90)


def load_ecapa_teacher(folder):
    """An ECAPA-1024 teacher from a Hub-layout folder, weights only.

    The architecture is ours (the Hub model's: C=1024, 192-d embeddings);
    only ``embedding_model.ckpt``, ``classifier.ckpt`` and
    ``label_encoder.txt`` are read, with ``weights_only=True``; nothing in
    the folder is executed.

    Arguments
    ---------
    folder : str
        Holds the three files.

    Returns
    -------
    teacher : FrozenTeacher
    encoder : CategoricalEncoder
        The teacher's classes.

    Example
    -------
    >>> load_ecapa_teacher("/no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: ...
    """
    classifier_state = torch.load(
        os.path.join(folder, "classifier.ckpt"),
        map_location="cpu",
        weights_only=True,
    )
    n_classes, emb_dim = classifier_state["weight"].shape
    embedding_model = ECAPA_TDNN(
        80,
        channels=[1024, 1024, 1024, 1024, 3072],
        kernel_sizes=[5, 3, 3, 3, 1],
        dilations=[1, 2, 3, 4, 1],
        attention_channels=128,
        lin_neurons=emb_dim,
    )
    embedding_model.load_state_dict(
        torch.load(
            os.path.join(folder, "embedding_model.ckpt"),
            map_location="cpu",
            weights_only=True,
        )
    )
    classifier = Classifier(emb_dim, out_neurons=n_classes)
    classifier.load_state_dict(classifier_state)
    encoder = CategoricalEncoder()
    encoder.load(os.path.join(folder, "label_encoder.txt"))
    teacher = FrozenTeacher(
        Fbank(n_mels=80),
        InputNormalization(norm_type="sentence", std_norm=False),
        embedding_model,
        classifier,
    )
    return teacher, encoder


def training_crops(data_folder, n_crops, crop_seconds, seed):
    """Random crops of the corpus's training speakers' audio.

    Training speakers are those in ``<data_folder>/wav`` that appear in no
    trial list of ``<data_folder>/trials``.

    Arguments
    ---------
    data_folder : str
        A corpus in VoxCeleb layout.
    n_crops : int
        How many crops (at most one per file).
    crop_seconds : float
        Crop length; shorter files are taken whole.
    seed : int
        Chooses the files and offsets.

    Returns
    -------
    list of (str, torch.Tensor)
        ``(speaker, waveform)``.
    """
    trial_speakers = set()
    trial_dir = os.path.join(data_folder, "trials")
    for name in sorted(os.listdir(trial_dir)):
        with open(os.path.join(trial_dir, name), encoding="utf-8") as fin:
            for line in fin:
                parts = line.split()
                trial_speakers.update(p.split("/")[0] for p in parts[1:])
    files = []
    wav_root = os.path.join(data_folder, "wav")
    for speaker in sorted(os.listdir(wav_root)):
        if speaker in trial_speakers:
            continue
        for root, _, names in sorted(os.walk(os.path.join(wav_root, speaker))):
            files += [(speaker, os.path.join(root, n)) for n in sorted(names)]
    chooser = random.Random(seed)
    crops = []
    for speaker, path in chooser.sample(files, min(n_crops, len(files))):
        info = audio_io.info(path)
        crop = int(crop_seconds * info.sample_rate)
        start = chooser.randint(0, max(0, info.frames - crop))
        sig, _ = audio_io.load(path, frame_offset=start, num_frames=crop)
        crops.append((speaker, sig.mean(dim=0)))  # the recipe's rule
    return crops


@torch.no_grad()
def teacher_logits(teacher, crops, batch_size=16):
    """The teacher's KD logits (``KD_SCALE`` x cosine) of each crop.

    Crops of one length share a batch, so no padding enters the network.
    """
    by_length = {}
    for index, (_, wav) in enumerate(crops):
        by_length.setdefault(wav.shape[0], []).append(index)
    logits = [None] * len(crops)
    for indices in by_length.values():
        for first in range(0, len(indices), batch_size):
            chunk = indices[first : first + batch_size]
            wavs = torch.stack([crops[i][1] for i in chunk])
            _, cosine = teacher(wavs, torch.ones(len(chunk)))
            for i, row in zip(chunk, cosine.squeeze(1), strict=True):
                logits[i] = KD_SCALE * row
    return torch.stack(logits)


def triage_statistics(logits, targets, taus=TAUS, temperatures=TEMPERATURES):
    """Confusion-set sizes and background mass shares over a grid.

    Arguments
    ---------
    logits : torch.Tensor
        ``[N, C]`` teacher logits.
    targets : torch.Tensor
        ``[N]`` target classes.
    taus, temperatures : sequence of float
        The grid.

    Returns
    -------
    list of dict
        One per (temperature, tau): ``size_p10/p50/p90`` and
        ``background_share_p10/p50/p90`` (percentiles over crops; the
        share is the background's fraction of the non-target mass).

    Example
    -------
    >>> logits = torch.tensor([[5.0, 3.0, 2.0, 0.0, -1.0]] * 3)
    >>> rows = triage_statistics(logits, torch.zeros(3, dtype=torch.long),
    ...                          taus=(0.5, 0.99), temperatures=(1.0,))
    >>> [(r["tau"], r["size_p50"]) for r in rows]
    [(0.5, 1.0), (0.99, 4.0)]
    """
    rows = []
    for temperature in temperatures:
        log_p = torch.log_softmax(logits.double() / temperature, dim=-1)
        target_mask = torch.zeros_like(log_p, dtype=torch.bool)
        target_mask[torch.arange(len(targets)), targets] = True
        non_target = torch.logsumexp(log_p.masked_fill(target_mask, -1e300), -1)
        for tau in taus:
            confusion, background = triage_partition(
                logits, targets, tau, temperature
            )
            back = torch.logsumexp(log_p.masked_fill(~background, -1e300), -1)
            share = torch.where(
                background.any(-1),
                (back - non_target).exp(),
                torch.zeros_like(back),
            )
            sizes = confusion.sum(-1).double().numpy()
            row = {"temperature": temperature, "tau": tau}
            for q in PERCENTILES:
                row[f"size_p{q}"] = float(np.percentile(sizes, q))
                row[f"background_share_p{q}"] = float(
                    np.percentile(share.numpy(), q)
                )
            rows.append(row)
    return rows


def plot(rows_by_teacher, path):
    """Size and background share against tau, one panel each (PNG).

    Returns the path, or None without matplotlib.
    """
    Figure = figure_class()
    if Figure is None:
        return None
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    for (label, rows), style in zip(
        rows_by_teacher.items(), styles, strict=False
    ):
        for temperature, color in zip(TEMPERATURES, ("C0", "C3"), strict=True):
            sel = [r for r in rows if r["temperature"] == temperature]
            taus = [r["tau"] for r in sel]
            for ax, key in zip(axes, ("size", "background_share"), strict=True):
                ax.plot(
                    taus,
                    [r[f"{key}_p50"] for r in sel],
                    style,
                    color=color,
                    label=f"{label}, T={temperature:g}",
                )
                ax.fill_between(
                    taus,
                    [r[f"{key}_p10"] for r in sel],
                    [r[f"{key}_p90"] for r in sel],
                    color=color,
                    alpha=0.12,
                )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("confusion-set size (classes)")
    axes[1].set_ylabel("background share of the non-target mass")
    for ax in axes:
        ax.set_xlabel("tau")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title("median, 10-90 % band over crops")
    return save_figure(fig, path)


def main(argv=None):
    """Measures each teacher and writes the CSV (and PNG)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", action="append", required=True)
    parser.add_argument(
        "--targets", action="append", choices=["labels", "top1"], default=[]
    )
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--crops", type=int, default=400)
    parser.add_argument("--crop_seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1986)
    args = parser.parse_args(argv)
    if len(args.targets) != len(args.teacher):
        parser.error("give one --targets per --teacher")
    torch.set_flush_denormal(True)
    crops = training_crops(
        args.data_folder, args.crops, args.crop_seconds, args.seed
    )
    os.makedirs(args.output_folder, exist_ok=True)
    rows_by_teacher, table = {}, []
    for folder, target_kind in zip(args.teacher, args.targets, strict=True):
        teacher, encoder = load_ecapa_teacher(folder)
        logits = teacher_logits(teacher, crops)
        if target_kind == "labels":
            targets = torch.tensor([encoder.lab2ind[s] for s, _ in crops])
        else:
            targets = logits.argmax(-1)
        label = (
            f"{os.path.basename(os.path.normpath(folder))} "
            f"({logits.shape[1]} classes, {target_kind})"
        )
        rows = triage_statistics(logits, targets)
        rows_by_teacher[label] = rows
        table += [dict(teacher=label, **row) for row in rows]
        del teacher
    path = os.path.join(args.output_folder, "confusion_sets.csv")
    with open(path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    print(f"written: {path}")
    plot(
        rows_by_teacher, os.path.join(args.output_folder, "confusion_sets.png")
    )
    return table


if __name__ == "__main__":
    main()
