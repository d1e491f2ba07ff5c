#!/usr/bin/env python3
"""On-device cost of the teacher and the students: size, MACs and latency.

For each model (the ECAPA-1024 teacher and the student of each recipe's
hparams defaults: ECAPA-512, -256, -128 and the ResNet) and each backend
(PyTorch eager, ONNX Runtime fp32, dynamic int8, static int8 and the fp32
graph that starts from the waveform):

* parameters of the embedding model;
* MACs of one 2 s utterance: ``torch.utils.flop_counter.FlopCounterMode``
  counts the FLOPs of the matrix products and convolutions (2 per
  multiply-add), halved; element-wise operations, pooling and the features
  are not counted;
* file size: ``embedding_model.ckpt`` (a state dict) or the ``.onnx`` file;
* latency of one utterance of each duration (default 2 s and 10 s) on each
  of ``--threads`` CPU threads (default 1 and 2; ``torch.set_num_threads``,
  ONNX Runtime ``intra_op_num_threads``, its threads not spinning between
  runs, so that one session's do not take the next one's cores): the
  median of ``--repeats`` runs from the waveform, features included; the
  features alone are a row of their own. For each thread count the runs
  go round-robin over every (duration, model, backend), so a change in the
  machine's load hits all of them alike, and each latency is also given
  as a ratio to the reference (the first model, the teacher) on PyTorch at
  that thread count.

Students are built from the training hparams files the way
``export_student.py`` writes them (the ``inference_hparams`` template with
the ``inference_overrides``), with random weights: cost does not depend on
the weights. The teacher is loaded from ``--teacher_folder`` when given::

    python benchmarks/deploy_cost.py \\
        --teacher_folder=/path/to/ecapa-openspk \\
        --output_folder benchmarks/results

writes ``deploy.md`` and ``deploy.csv`` there.

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import csv
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

import ruamel.yaml
import ruamel.yaml.constructor
import torch
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import resolve_references
from provenance import git_revision
from torch.utils.flop_counter import FlopCounterMode

from speechbrain_trkd.onnx_export import (
    INPUT_NAME,
    WAVEFORM_INPUT,
    export_onnx,
    onnx_session,
    speaker_features,
)
from speechbrain_trkd.onnx_int8 import quantize_int8, quantize_int8_static
from speechbrain_trkd.onnx_waveform import export_waveform_onnx
from speechbrain_trkd.pretrained import RECIPE_HPARAMS

SAMPLE_RATE = 16000
BACKENDS = (
    "pytorch",
    "onnx_fp32",
    "onnx_int8",
    "onnx_int8_static",
    "onnx_waveform",
)
# name: (training hparams file, overrides); "teacher" is special-cased.
MODELS = {
    "teacher": ("ecapa_to_small.yaml", None),
    "ecapa512": ("ecapa_to_small.yaml", {}),
    "ecapa256": ("ecapa_to_small.yaml", {"student_channels": 256}),
    "ecapa128": ("ecapa_to_small.yaml", {"student_channels": 128}),
    "resnet": ("ecapa_to_resnet.yaml", {}),
}
LABELS = {
    "teacher": "teacher ECAPA-1024",
    "ecapa512": "student ECAPA-512",
    "ecapa256": "student ECAPA-256",
    "ecapa128": "student ECAPA-128",
    "resnet": "student ResNet-34 (32-256)",
}


class _ObjectsAsNone(ruamel.yaml.constructor.SafeConstructor):
    """Reads a HyperPyYAML file's plain values; its tagged nodes are None."""


_ObjectsAsNone.add_multi_constructor("!", lambda loader, suffix, node: None)


def resolved_hparams(hparams_file, overrides=None):
    """The top-level values of a training hparams file, nothing built.

    Arguments
    ---------
    hparams_file : str
        A training hparams file (relative to the recipe's ``hparams``).
    overrides : dict, optional
        Overrides of that file (e.g. ``{"student_channels": 128}``).

    Returns
    -------
    dict
        Values with references resolved; objects (``!new:``...) are None.

    Example
    -------
    >>> values = resolved_hparams("ecapa_to_small.yaml")
    >>> values["teacher_channels"], values["inference_overrides"]["channels"]
    (1024, 512)
    """
    path = os.path.join(RECIPE_HPARAMS, hparams_file)
    with open(path, encoding="utf-8") as fin:
        # data_folder is a placeholder that no model size depends on.
        text = resolve_references(fin, dict(overrides or {}, data_folder="-"))
    loader = ruamel.yaml.YAML(typ="safe", pure=True)
    loader.Constructor = _ObjectsAsNone
    return loader.load(text)


def student_encoder(hparams_file, overrides=None):
    """The embedding model ``export_student.py`` would export, untrained.

    The training hparams' ``inference_hparams`` template, filled with its
    ``inference_overrides``.

    Arguments
    ---------
    hparams_file : str
        A training hparams file (relative to the recipe's ``hparams``).
    overrides : dict, optional
        Overrides of that file (e.g. ``{"student_channels": 128}``).

    Returns
    -------
    tuple
        ``(embedding_model in eval mode, n_mels)``.

    Example
    -------
    >>> model, n_mels = student_encoder("ecapa_to_small.yaml",
    ...                                 {"student_channels": 128})
    >>> type(model).__name__, n_mels
    ('ECAPA_TDNN', 80)
    """
    values = resolved_hparams(hparams_file, overrides)
    template = os.path.join(RECIPE_HPARAMS, values["inference_hparams"])
    with open(template, encoding="utf-8") as fin:
        inference = load_hyperpyyaml(
            fin, dict(values["inference_overrides"], pretrained_path="-")
        )
    return inference["embedding_model"].eval(), values["n_mels"]


def teacher_encoder(teacher_folder=None):
    """The ECAPA teacher: trained weights, or the recipe's shape untrained.

    Arguments
    ---------
    teacher_folder : str, optional
        A pretrained model folder (Hub layout); without it, an ECAPA of
        ``ecapa_to_small.yaml``'s ``teacher_channels``, untrained.

    Returns
    -------
    tuple
        ``(embedding_model in eval mode, n_mels)``.
    """
    if teacher_folder is None:
        channels = resolved_hparams("ecapa_to_small.yaml")["teacher_channels"]
        return student_encoder(
            "ecapa_to_small.yaml", {"student_channels": channels}
        )
    from speechbrain_trkd import pretrained

    encoder = pretrained.load_pretrained_encoder(teacher_folder, device="cpu")
    return encoder.mods.embedding_model.eval(), encoder.hparams.n_mels


def count_macs(model, frames, n_mels):
    """Multiply-adds of the matrix products and convolutions of one input.

    Arguments
    ---------
    model : torch.nn.Module
        An encoder taking features ``[1, frames, n_mels]``.
    frames : int
        Feature frames.
    n_mels : int
        Feature size.

    Returns
    -------
    int
        MACs (FLOPs counted by ``FlopCounterMode`` / 2).

    Example
    -------
    >>> count_macs(torch.nn.Linear(80, 10), 100, 80)
    80000
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, frames, n_mels))
    return counter.get_total_flops() // 2


def round_robin_medians(runners, repeats, warmup=2):
    """Median wall time of each runner, timed in turns.

    Arguments
    ---------
    runners : dict
        ``{key: callable}``.
    repeats : int
        Timed runs of each.
    warmup : int
        Untimed runs of each first.

    Returns
    -------
    dict
        ``{key: median seconds}``.

    Example
    -------
    >>> sorted(round_robin_medians({"a": lambda: 1, "b": lambda: 2}, 3))
    ['a', 'b']
    """
    times = {key: [] for key in runners}
    for turn in range(warmup + repeats):
        for key, run in runners.items():
            start = time.perf_counter()
            run()
            if turn >= warmup:
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def _runner(backend, model, session, wav, n_mels):
    """One call of a backend from the waveform, features included."""
    if backend == "pytorch":

        def run():
            with torch.no_grad():
                return model(speaker_features(wav, n_mels=n_mels))

    elif backend == "onnx_waveform":

        def run():
            return session.run(None, {WAVEFORM_INPUT: wav.numpy()})

    else:

        def run():
            feats = speaker_features(wav, n_mels=n_mels)
            return session.run(None, {INPUT_NAME: feats.numpy()})

    return run


def _calibration_inputs(n_mels, n_crops=8):
    """Static int8's calibration inputs: features of 2 s of noise each (the
    models have random weights, and latency does not depend on the ranges
    measured; the accuracy of a calibrated student is onnx_parity's)."""
    generator = torch.Generator().manual_seed(1)
    return [
        speaker_features(
            0.1 * torch.randn(1, 2 * SAMPLE_RATE, generator=generator),
            n_mels=n_mels,
        ).numpy()
        for _ in range(n_crops)
    ]


def build_models(names, teacher_folder, work_dir):
    """Builds, saves and exports each model; counts its parameters and MACs.

    Returns
    -------
    dict
        ``{name: {"model", "n_mels", "params", "macs_2s", "files"}}``.
    """
    built = {}
    for name in names:
        if name == "teacher":
            model, n_mels = teacher_encoder(teacher_folder)
        else:
            model, n_mels = student_encoder(*MODELS[name])
        ckpt = os.path.join(work_dir, f"{name}.ckpt")
        torch.save(model.state_dict(), ckpt)
        fp32 = export_onnx(
            model, os.path.join(work_dir, f"{name}.onnx"), n_mels
        )
        int8 = quantize_int8(fp32)
        static = quantize_int8_static(
            fp32,
            _calibration_inputs(n_mels),
            os.path.join(work_dir, f"{name}.s8"),
        )
        waveform = export_waveform_onnx(
            model, os.path.join(work_dir, f"{name}.waveform.onnx"), n_mels
        )
        frames = speaker_features(torch.zeros(2 * SAMPLE_RATE)).shape[1]
        built[name] = {
            "model": model,
            "n_mels": n_mels,
            "params": sum(p.numel() for p in model.parameters()),
            "macs_2s": count_macs(model, frames, n_mels),
            "files": {
                "pytorch": ckpt,
                "onnx_fp32": fp32,
                "onnx_int8": int8,
                "onnx_int8_static": static,
                "onnx_waveform": waveform,
            },
        }
    return built


def measure(names, teacher_folder, durations, repeats, warmup=2, threads=(1,)):
    """Builds the models and measures every row of the cost table.

    Arguments
    ---------
    names : list of str
        Keys of ``MODELS``; the first one is the latency reference.
    teacher_folder : str or None
        See :func:`teacher_encoder`.
    durations : list of float
        Utterance durations in seconds.
    repeats : int
        Timed runs per latency.
    warmup : int
        Untimed runs first.
    threads : sequence of int
        CPU thread counts, each timed in a round-robin of its own.

    Returns
    -------
    list of dict
        Per thread count, one row per (model, backend), plus one for the
        features alone.
    """
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        torch.set_num_threads(1)
        built = build_models(names, teacher_folder, work_dir)
        for count in threads:
            rows += _timed_rows(
                built, names[0], durations, repeats, warmup, count
            )
    return rows


def _timed_rows(built, reference, durations, repeats, warmup, threads):
    """The rows of one thread count: every latency in one round-robin."""
    torch.set_num_threads(threads)
    sessions = {
        (name, backend): onnx_session(
            info["files"][backend], threads, spinning=False
        )
        for name, info in built.items()
        for backend in BACKENDS
        if backend != "pytorch"
    }
    generator = torch.Generator().manual_seed(0)
    runners = {}
    for duration in durations:
        wav = 0.1 * torch.randn(
            1, int(duration * SAMPLE_RATE), generator=generator
        )
        runners[(duration, "features", "")] = lambda wav=wav: speaker_features(
            wav
        )
        for name, info in built.items():
            for backend in BACKENDS:
                runners[(duration, name, backend)] = _runner(
                    backend,
                    info["model"],
                    sessions.get((name, backend)),
                    wav,
                    info["n_mels"],
                )
    # One round-robin over every duration too: a change of load hits all.
    medians = round_robin_medians(runners, repeats, warmup)
    latency = {duration: {} for duration in durations}
    for (duration, name, backend), seconds in medians.items():
        latency[duration][(name, backend)] = seconds
    reference = (reference, "pytorch")
    timing = (latency, durations, reference, threads)
    rows = [_row("features", "", None, timing)]
    for name, info in built.items():
        for backend in BACKENDS:
            rows.append(_row(name, backend, info, timing))
    return rows


def _row(name, backend, info, timing):
    """One row of the cost table; ``timing`` is ``(latency, durations,
    reference, threads)``."""
    latency, durations, reference, threads = timing
    row = {
        "model": LABELS.get(name, name) if info else "features only",
        "backend": backend or "python (Fbank + mean norm)",
        "threads": str(threads),
        "params_M": "",
        "macs_2s_G": "",
        "size_MB": "",
    }
    if info:
        row["params_M"] = f"{info['params'] / 1e6:.2f}"
        row["macs_2s_G"] = f"{info['macs_2s'] / 1e9:.3f}"
        size = os.path.getsize(info["files"][backend])
        row["size_MB"] = f"{size / 1e6:.2f}"
    for duration in durations:
        seconds = latency[duration][(name, backend)]
        ratio = seconds / latency[duration][reference]
        row[f"latency_{duration:g}s_ratio"] = f"{ratio:.3f}"
        row[f"latency_{duration:g}s_ms"] = f"{1000 * seconds:.1f}"
    return row


def _environment():
    """The software and machine the figures come from."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as fin:
            names = [ln for ln in fin if ln.startswith("model name")]
        if names:
            cpu = names[0].split(":", 1)[1].strip()
    return (
        f"git {git_revision()}, {cpu}, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}"
    )


COLUMNS = {
    "model": "model",
    "backend": "backend",
    "threads": "threads",
    "params_M": "params (M)",
    "macs_2s_G": "MACs, 2 s (G)",
    "size_MB": "file (MB)",
}


def format_markdown(rows, command, environment):
    """The cost table as Markdown.

    Arguments
    ---------
    rows : list of dict
        From :func:`measure`.
    command : str
        The command that made the figures.
    environment : str
        Software and machine.

    Returns
    -------
    str
        The text of ``deploy.md``.

    Example
    -------
    >>> row = {"model": "m", "backend": "pytorch", "threads": "1",
    ...        "params_M": "1.00",
    ...        "macs_2s_G": "0.500", "size_MB": "4.00",
    ...        "latency_2s_ratio": "1.000", "latency_2s_ms": "12.0"}
    >>> text = format_markdown([row], "cmd", "env")
    >>> text.splitlines()[-1]
    '| m | pytorch | 1 | 1.00 | 0.500 | 4.00 | 1.000 | 12.0 |'
    """
    durations = [
        k[len("latency_") : -len("s_ratio")]
        for k in rows[0]
        if k.endswith("s_ratio")
    ]
    reference = rows[1]["model"] if len(rows) > 1 else rows[0]["model"]
    header = list(COLUMNS.values())
    for duration in durations:
        header += [f"{duration} s latency / ref.", f"{duration} s (ms)"]
    lines = [
        "# Deployment cost of the teacher and the students",
        "",
        "Written by `benchmarks/deploy_cost.py`; every figure below was "
        "measured by:",
        "",
        f"    {command}",
        "",
        f"on {environment}.",
        "",
        "- Latency: one utterance (random noise of that duration), from the "
        "waveform to the embedding, features included (their own row gives "
        "them alone), on the row's number of CPU threads (ONNX Runtime's "
        "not spinning between runs); the median of the "
        "runs, every (duration, model, backend) of one thread count timed in "
        "turn. The ratio (ref.) is to the "
        f"{reference} on PyTorch at the same thread count, in the same "
        "round-robin: compare ratios across machines, not milliseconds.",
        "- MACs: multiply-adds of the matrix products and convolutions "
        "(`torch.utils.flop_counter.FlopCounterMode` FLOPs / 2) for 2 s of "
        "audio (201 frames); element-wise operations, pooling and the "
        "features are not counted.",
        "- File: `embedding_model.ckpt` (PyTorch state dict), "
        "`embedding_model.onnx` (fp32) or `embedding_model.int8.onnx` "
        "(`onnx_int8`: ONNX Runtime dynamic int8, int8 weights, "
        "activations quantised at run time; `onnx_int8_static`: static "
        "QDQ int8, per-channel weights, activation ranges calibrated on "
        "8 crops of 2 s of noise here, the same quantisation that "
        "`export_student.py --onnx_int8` calibrates on training audio; "
        "`onnx_waveform`: the fp32 graph from the waveform, its features "
        "inside, `embedding_model.waveform.onnx`). "
        "Students have the recipe's default sizes, untrained "
        "(cost does not depend on the weights).",
        "- Accuracy of the exported student (fp32, int8 and the waveform "
        "graph) on real speech: "
        "[`onnx_parity.md`](onnx_parity.md).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(v) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows, output_folder, text):
    """Writes ``deploy.csv`` and ``deploy.md``."""
    os.makedirs(output_folder, exist_ok=True)
    with open(
        os.path.join(output_folder, "deploy.csv"),
        "w",
        newline="",
        encoding="utf-8",
    ) as fout:
        writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(
        os.path.join(output_folder, "deploy.md"), "w", encoding="utf-8"
    ) as fout:
        fout.write(text)


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher_folder", default=None)
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=list(MODELS),
        help="the first one is the latency reference",
    )
    parser.add_argument(
        "--durations", nargs="+", type=float, default=[2.0, 10.0]
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output_folder", required=True)
    args = parser.parse_args(argv)
    arguments = list(argv if argv is not None else sys.argv[1:])
    command = shlex.join(["python", "benchmarks/deploy_cost.py", *arguments])
    environment = _environment()  # the revision measured, read first
    rows = measure(
        args.models,
        args.teacher_folder,
        args.durations,
        args.repeats,
        args.warmup,
        args.threads,
    )
    text = format_markdown(rows, command, environment)
    write_results(rows, args.output_folder, text)
    print(text)


if __name__ == "__main__":
    main()
