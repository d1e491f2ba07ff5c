#!/usr/bin/env python3
"""Parity of an exported student's ONNX graphs with PyTorch, on real speech.

Every utterance of the trial lists is embedded by each backend: PyTorch
(the recipe's scoring path, ``pretrained_encode_fn`` of the exported
folder), ONNX Runtime on ``embedding_model.onnx`` and, when present, on
``embedding_model.int8.onnx`` and on the graph from the waveform,
``embedding_model.waveform.onnx``. Utterances are embedded one at a time
(``batch_size=1``, 1 thread), so every backend sees the same frames. The
report gives, per ONNX backend, the worst cosine between its embedding and
PyTorch's over all utterances, and per backend the cosine-scoring EER and
minDCF of each list, the file size and the time the embedding took::

    python benchmarks/onnx_parity.py --model_folder=<export folder> \\
        --data_folder=/path/to/openspk \\
        --trials <data>/trials/O.txt <data>/trials/H.txt \\
        --output benchmarks/results/onnx_parity.md

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

from speechbrain_trkd import pretrained, verification
from speechbrain_trkd.onnx_export import (
    INT8_FILE,
    ONNX_FILE,
    WAVEFORM_FILE,
    onnx_encode_fn,
    onnx_session,
)
from speechbrain_trkd.scoring import cosine_scores
from speechbrain_trkd.trials import index_utterances, read_trials

BACKEND_FILES = {
    "pytorch": "embedding_model.ckpt",
    "onnx_fp32": ONNX_FILE,
    "onnx_int8": INT8_FILE,
    "onnx_waveform": WAVEFORM_FILE,
}


def backend_encoders(model_folder, architecture="ecapa"):
    """The ``encode_fn`` of each backend of an exported folder.

    Arguments
    ---------
    model_folder : str
        An ``export_student.py --onnx`` folder.
    architecture : str
        ``ecapa`` or ``resnet`` (its inference hparams).

    Returns
    -------
    dict
        ``{"pytorch": fn, "onnx_fp32": fn[, "onnx_int8": fn,
        "onnx_waveform": fn]}``.

    Example
    -------
    >>> backend_encoders("/no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder/embedding_model.onnx does not exist...
    """
    onnx_path = os.path.join(model_folder, ONNX_FILE)
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(
            f"{onnx_path} does not exist: export with export_student.py --onnx"
        )
    encoder = pretrained.load_pretrained_encoder(
        model_folder, device="cpu", architecture=architecture
    )
    n_mels = encoder.hparams.n_mels
    encoders = {
        "pytorch": pretrained.pretrained_encode_fn(encoder),
        "onnx_fp32": onnx_encode_fn(onnx_session(onnx_path), n_mels),
    }
    for backend in ("onnx_int8", "onnx_waveform"):
        path = os.path.join(model_folder, BACKEND_FILES[backend])
        if os.path.isfile(path):
            encoders[backend] = onnx_encode_fn(onnx_session(path), n_mels)
    return encoders


def parity_report(encoders, data_folder, trial_paths):
    """Embeds the trial utterances with each backend and scores the lists.

    Arguments
    ---------
    encoders : dict
        ``{backend: encode_fn}``; the first one is the reference.
    data_folder : str
        Dataset root (utterances under ``wav/``).
    trial_paths : list of str
        Trial lists.

    Returns
    -------
    dict
        ``{backend: {"seconds", "worst_cosine", "mean_cosine",
        <list>: metrics}}``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.dataio import audio_io
    >>> root = tempfile.mkdtemp()
    >>> for spk in ("a", "b"):
    ...     for utt in ("1", "2"):
    ...         os.makedirs(os.path.join(root, "wav", spk), exist_ok=True)
    ...         audio_io.save(os.path.join(root, "wav", spk, utt + ".wav"),
    ...                       torch.randn(1, 1600), 16000)
    >>> trials = os.path.join(root, "T.txt")
    >>> _ = open(trials, "w").write("1 a/1.wav a/2.wav\\n0 a/1.wav b/1.wav\\n")
    >>> mean = lambda wavs, lens: wavs.abs().mean(1, keepdim=True)
    >>> report = parity_report({"x": mean, "y": mean}, root, [trials])
    >>> report["y"]["worst_cosine"], sorted(report["y"]["T"])
    (1.0, ['eer', 'min_dcf_0.01', 'min_dcf_0.05'])
    """
    trials = {
        os.path.splitext(os.path.basename(p))[0]: read_trials(p)
        for p in trial_paths
    }
    sides = [side for t in trials.values() for side in (t.enrol, t.test)]
    utterances, indices = index_utterances(*sides)
    wav_paths = [os.path.join(data_folder, "wav", utt) for utt in utterances]
    report, reference = {}, None
    for backend, encode_fn in encoders.items():
        start = time.perf_counter()
        embeddings = verification.compute_embeddings(
            encode_fn, wav_paths, batch_size=1, device="cpu"
        )
        result = {"seconds": time.perf_counter() - start}
        if reference is None:
            reference = embeddings
        cosines = torch.nn.functional.cosine_similarity(
            embeddings, reference, dim=1
        )
        result["worst_cosine"] = cosines.min().item()
        result["mean_cosine"] = cosines.mean().item()
        for number, (name, trial) in enumerate(trials.items()):
            scores = cosine_scores(
                embeddings, indices[2 * number], indices[2 * number + 1]
            )
            result[name] = verification.verification_metrics(
                scores, trial.labels
            )
        report[backend] = result
    return report


def format_report(report, sizes, command):
    """Markdown of a parity report.

    Arguments
    ---------
    report : dict
        From :func:`parity_report`.
    sizes : dict
        ``{backend: file size in MB}``.
    command : str
        The command that made the report.

    Returns
    -------
    str
        The text.

    Example
    -------
    >>> report = {"pytorch": {"seconds": 2.0, "worst_cosine": 1.0,
    ...     "mean_cosine": 1.0, "O": {"eer": 5.0, "min_dcf_0.01": 0.5}}}
    >>> text = format_report(report, {"pytorch": 3.2}, "cmd")
    >>> print(text.splitlines()[-1])
    | pytorch | 3.2 | 1.0000000 | 1.0000000 | 2.0 | 5.000 | 0.5000 |
    """
    first = next(iter(report.values()))
    lists = [key for key, value in first.items() if isinstance(value, dict)]
    header = ["backend", "size MB", "worst cosine", "mean cosine"]
    header.append("embedding s")
    for name in lists:
        header += [f"{name} EER %", f"{name} minDCF 0.01"]
    lines = [
        "# ONNX parity on real speech",
        "",
        f"Made by: `{command}`",
        "",
        "Each utterance of the lists is embedded alone, on 1 CPU thread, by "
        "each backend; the cosines are to PyTorch's embedding of the same "
        "utterance; scoring is cosine. `embedding s` is the wall time of "
        "each backend's pass, one after the other on a machine others "
        "share: not a speed comparison (`deploy_cost.py` times them side "
        "by side).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for backend, result in report.items():
        row = [
            backend,
            f"{sizes.get(backend, float('nan')):.1f}",
            f"{result['worst_cosine']:.7f}",
            f"{result['mean_cosine']:.7f}",
            f"{result['seconds']:.1f}",
        ]
        for name in lists:
            row += [
                f"{result[name]['eer']:.3f}",
                f"{result[name]['min_dcf_0.01']:.4f}",
            ]
        lines.append("| " + " | ".join(row) + " |")
    lines += eer_agreement(report, lists) + int8_verdict(report)
    return "\n".join(lines) + "\n"


def eer_agreement(report, lists, tolerance=0.01):
    """Whether each float ONNX graph's EERs agree with PyTorch's to
    ``tolerance`` points.

    Example
    -------
    >>> report = {"pytorch": {"O": {"eer": 5.0}},
    ...           "onnx_fp32": {"O": {"eer": 5.02}}}
    >>> eer_agreement(report, ["O"])[-1]
    '- O: onnx_fp32 EER - PyTorch EER = 0.020 points: DISAGREE'
    """
    graphs = [b for b in ("onnx_fp32", "onnx_waveform") if b in report]
    if "pytorch" not in report or not graphs:
        return []
    lines = ["", f"EER agreement with PyTorch (to {tolerance:g}):"]
    for backend in graphs:
        for name in lists:
            gap = report[backend][name]["eer"] - report["pytorch"][name]["eer"]
            verdict = "agree" if abs(gap) <= tolerance else "DISAGREE"
            lines.append(
                f"- {name}: {backend} EER - PyTorch EER = {gap:.3f} points: "
                f"{verdict}"
            )
    return lines


def int8_verdict(report, list_name="O", max_cost=0.1):
    """What int8 costs in EER points against fp32 ONNX, and the default.

    Arguments
    ---------
    report : dict
        From :func:`parity_report`.
    list_name : str
        The trial list judged.
    max_cost : float
        EER points int8 may cost before fp32 must stay the default.

    Returns
    -------
    list of str
        Lines of Markdown; none without both ONNX backends.

    Example
    -------
    >>> report = {"onnx_fp32": {"O": {"eer": 5.0}},
    ...           "onnx_int8": {"O": {"eer": 5.5}}}
    >>> int8_verdict(report)[-1]
    'int8 (`embedding_model.int8.onnx`) costs 0.50 EER points on O (more...'
    """
    if not {"onnx_fp32", "onnx_int8"} <= set(report):
        return []
    if list_name not in report["onnx_int8"]:
        return []
    cost = (
        report["onnx_int8"][list_name]["eer"]
        - report["onnx_fp32"][list_name]["eer"]
    )
    if cost > max_cost:
        verdict = f"(more than {max_cost:g}): fp32 stays the default."
    else:
        verdict = f"(at most {max_cost:g}); fp32 stays the default export."
    return [
        "",
        f"int8 (`{INT8_FILE}`) costs {cost:.2f} EER points on {list_name} "
        + verdict,
    ]


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_folder", required=True)
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--trials", nargs="+", required=True)
    parser.add_argument("--architecture", default="ecapa")
    parser.add_argument("--output", help="markdown report (and .json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    encoders = backend_encoders(args.model_folder, args.architecture)
    report = parity_report(encoders, args.data_folder, args.trials)
    sizes = {
        backend: os.path.getsize(os.path.join(args.model_folder, name)) / 1e6
        for backend, name in BACKEND_FILES.items()
        if backend in report
    }
    arguments = list(argv if argv is not None else sys.argv[1:])
    command = shlex.join(["python", "benchmarks/onnx_parity.py", *arguments])
    text = format_report(report, sizes, command)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fout:
            fout.write(text)
        with open(os.path.splitext(args.output)[0] + ".json", "w") as fout:
            json.dump(
                {"command": command, "sizes_mb": sizes, "backends": report},
                fout,
                indent=2,
            )


if __name__ == "__main__":
    main()
