"""The benchmark's report: the committed run files aggregated into
``results.md`` / ``.csv`` (with the paired reading and the DET figure).

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import math
import os
import statistics
from pathlib import Path

import pandas as pd
from bench_config import (
    DET_BACKEND,
    DET_FILE,
    NO_KD_TAG,
    REPO,
    SPEED_COMPARISONS,
    read_json,
)
from paired_reading import (
    METRICS,
    collect_runs,
    format_paired,
    paired_table,
    sweep_summary,
)

from speechbrain_trkd.markdown import markdown_table
from speechbrain_trkd.plots import det_points, plot_det
from speechbrain_trkd.trials import read_scores


def aggregate(runs, teacher=None):
    """Mean and standard deviation over seeds, teacher rows first.

    Arguments
    ---------
    runs : list of dict
        From :func:`collect_runs`.
    teacher : dict, optional
        From :func:`run_teacher` (``zero_shot`` and ``fine_tuned``).

    Returns
    -------
    list of dict
        ``pair``, ``method``, ``list``, ``backend``, ``seeds`` and
        ``<metric>_mean`` / ``<metric>_std``.

    Example
    -------
    >>> runs = [
    ...     {"pair": "p", "method": "kd", "seed": s, "list": "O",
    ...      "backend": "cosine", "eer": e, "min_dcf_0.01": 0.5,
    ...      "min_dcf_0.05": 0.3}
    ...     for s, e in [(1, 4.0), (2, 6.0)]
    ... ]
    >>> row = aggregate(runs)[0]
    >>> row["seeds"], row["eer_mean"], round(row["eer_std"], 3)
    (2, 5.0, 1.414)
    """
    rows = []
    for name in ("as_is", "zero_shot", "fine_tuned"):
        for list_name, per_backend in (teacher or {}).get(name, {}).items():
            for backend, values in per_backend.items():
                row = {
                    "tag": "-",
                    "pair": "teacher",
                    "method": name,
                    "list": list_name,
                    "backend": backend,
                    "seeds": 1,
                }
                for metric in METRICS:
                    row[f"{metric}_mean"] = values[metric]
                    row[f"{metric}_std"] = float("nan")
                rows.append(row)
    if not runs:
        return rows
    frame = pd.DataFrame(runs)
    frame["tag"] = frame["tag"].fillna("main") if "tag" in frame else "main"
    metrics = [*METRICS, "train_s", "params_M", "mean_conf_size"]
    frame = frame.reindex(columns=[*GROUP_KEYS, *metrics])
    grouped = frame.groupby(GROUP_KEYS, sort=False)[metrics]
    means, stds = grouped.agg(_mean), grouped.agg(_std)
    seeds = grouped.size()
    for key in means.index:
        row = dict(zip(GROUP_KEYS, key, strict=True), seeds=int(seeds[key]))
        for metric in metrics:
            row[f"{metric}_mean"] = float(means.at[key, metric])
            row[f"{metric}_std"] = float(stds.at[key, metric])
        rows.append(row)
    return rows


# The columns that name one aggregated row.
GROUP_KEYS = ["tag", "pair", "method", "list", "backend"]


# statistics' mean and standard deviation, exactly rounded (numpy's sum is
# not: the standard deviation of three equal parameter counts came out as
# 1.4e-16); a NaN (a run without the figure) makes the group's figure NaN.
def _mean(values):
    """The exactly rounded mean, NaN when a value is."""
    return math.nan if values.isna().any() else statistics.fmean(values)


def _std(values):
    """The sample standard deviation, NaN for one value or a NaN."""
    if values.isna().any() or len(values) < 2:
        return math.nan
    return statistics.stdev(values)


def speed_ratios(throughput, comparisons=SPEED_COMPARISONS["gpu"]):
    """Option-over-baseline ratios of the throughput measurements.

    Arguments
    ---------
    throughput : list of dict
        From :func:`run_throughput`.
    comparisons : list of (str, str)
        ``(baseline, option)`` variant names (see ``SPEED_VARIANTS``).

    Returns
    -------
    list of dict
        Per pair, method and comparison: ``option`` and the ratios of step
        and epoch samples/s (option / baseline; > 1 is faster).

    Example
    -------
    >>> rows = [
    ...     {"pair": "p", "method": "kd", "precision": "fp32",
    ...      "step_samples_per_s": 100.0},
    ...     {"pair": "p", "method": "kd", "precision": "bf16",
    ...      "step_samples_per_s": 250.0},
    ... ]
    >>> speed_ratios(rows)
    [{'pair': 'p', 'method': 'kd', 'option': 'bf16 vs fp32',
      'step_speedup': 2.5, 'epoch_speedup': nan}]
    """
    by_key = {(r["pair"], r["method"], r["precision"]): r for r in throughput}
    ratios = []
    for base, option in comparisons:
        for pair, method, variant in by_key:
            if variant != base or (pair, method, option) not in by_key:
                continue
            slow, fast = (
                by_key[pair, method, base],
                by_key[pair, method, option],
            )
            row = {
                "pair": pair,
                "method": method,
                "option": f"{option} vs {base}",
            }
            for name in ("step", "epoch"):
                key = f"{name}_samples_per_s"
                if key in slow and key in fast:
                    row[f"{name}_speedup"] = fast[key] / slow[key]
                else:
                    row[f"{name}_speedup"] = float("nan")
            ratios.append(row)
    return ratios


def _fmt(value, digits):
    """Formats a number, '-' for a missing or NaN one."""
    if value is None or value == "" or value != value:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def _write_csv(path, rows, columns):
    """Writes rows (dicts) with the given columns."""
    with open(path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _metric_table(rows, lists, backends):
    """Markdown rows: one per (setting, pair, method), mean ± std per
    list and backend, with the student's size, training time and TRKD's
    mean confusion-set size."""
    table = {}
    for row in rows:
        key = (row.get("tag", "main"), row["pair"], row["method"])
        cells = table.setdefault(
            key,
            {
                "setting": key[0],
                "pair": row["pair"],
                "method": row["method"],
                "seeds": str(row["seeds"]),
                "params M": _fmt(row.get("params_M_mean"), 2),
                "train min": _fmt(row.get("train_s_mean", 0) / 60, 1),
                "conf. set": _fmt(row.get("mean_conf_size_mean"), 0),
            },
        )
        prefix = f"{row['list']} {row['backend']}"
        for metric, label, digits in (
            ("eer", "EER %", 2),
            ("min_dcf_0.01", "minDCF 0.01", 3),
        ):
            mean = _fmt(row[f"{metric}_mean"], digits)
            std = _fmt(row[f"{metric}_std"], digits)
            cells[f"{prefix} {label}"] = (
                mean if std == "-" else f"{mean} ± {std}"
            )
    columns = ["setting", "pair", "method", "seeds", "params M", "train min"]
    columns.append("conf. set")
    for list_name in lists:
        for backend in backends:
            for label in ("EER %", "minDCF 0.01"):
                columns.append(f"{list_name} {backend} {label}")
    return [{c: cells.get(c, "-") for c in columns} for cells in table.values()]


def sweep_lines(runs, config, no_kd_tag):
    """The report's sweep section: each tag's KD and DKD EER on the first
    list at the first seed, and the setting the sweep's rule selects."""
    if not config.get("lists"):
        return []
    table, chosen = sweep_summary(
        runs, config["seeds"][0], no_kd_tag, config["lists"][0]["name"]
    )
    if table.empty:
        return []
    lines = [
        "",
        f"## Sweep (seed {config['seeds'][0]}, "
        f"{config['lists'][0]['name']} cosine EER %)",
        "",
    ]
    cells = [
        {
            key: (value if isinstance(value, str) else _fmt(value, 2))
            for key, value in row.items()
        }
        for row in table.to_dict("records")
    ]
    lines.append(markdown_table(cells))
    lines += [
        "",
        "Rule (written before the sweep): the lowest mean of KD's and DKD's "
        f"EER. Selected so far: {chosen or 'none yet'}.",
    ]
    return lines


def _det_runs(config):
    """The run file of each method at the report's pair and first seed."""
    pair, seed = config["pairs"][0], config["seeds"][0]
    tags = (config.get("tag", "main"), NO_KD_TAG)
    runs = {}
    for path in sorted(Path(config["runs_folder"]).glob("*.json")):
        run = read_json(path)
        if (
            (run["pair"], run["seed"]) == (pair, seed)
            and run.get("tag", "main") in tags
            and run["method"] in config["methods"]
        ):
            runs[run["method"]] = run
    return [runs[m] for m in config["methods"] if m in runs]


def methods_det(config, results):
    """Draws the report's DET figure: one curve per method.

    One student per method (the first of ``config["seeds"]``, not pooled
    over seeds: the trials of different models would mix their score
    scales), of the first pair and the report's tag (no KD from
    ``NO_KD_TAG``), on the first trial list, read from the run's
    ``scores/<list>_cosine.txt``.

    Arguments
    ---------
    config : dict
        Built by :func:`main` (``report_command``: the command that draws).
    results : str
        Where ``det_methods.png`` goes.

    Returns
    -------
    path : str or None
        The PNG, or None when nothing was drawn.
    lines : list of str
        The report's text about it (what it shows, or why it is absent).

    Example
    -------
    >>> import tempfile
    >>> config = {"runs_folder": tempfile.mkdtemp(), "pairs": ["p"],
    ...           "seeds": [1], "methods": ["kd"], "lists": [{"name": "O"}]}
    >>> methods_det(config, tempfile.mkdtemp())
    (None, ['(no finished run of seed 1 to draw)'])
    """
    if not (config["pairs"] and config["seeds"] and config["lists"]):
        return None, ["(no run to draw)"]
    seed, list_name = config["seeds"][0], config["lists"][0]["name"]
    curves, absent = {}, []
    for run in _det_runs(config):
        score_file = os.path.join(
            REPO,  # run files hold paths relative to the checkout
            run["output_folder"],
            "scores",
            f"{list_name}_{DET_BACKEND}.txt",
        )
        if not os.path.isfile(score_file):
            absent.append(os.path.relpath(score_file, REPO))
            continue
        trials, scores = read_scores(score_file)
        curves[run["method"]] = det_points(scores, trials.labels)
    lines = []
    if absent:
        lines.append("Score files not found: " + ", ".join(absent) + ".")
    if not curves:
        return None, [*lines, f"(no finished run of seed {seed} to draw)"]
    pair = config["pairs"][0]
    path = plot_det(
        curves,
        os.path.join(results, DET_FILE),
        title=f"{pair}, seed {seed}, list {list_name}, {DET_BACKEND}",
    )
    if path is None:
        return None, [
            *lines,
            '(matplotlib is not installed: pip install -e ".[plots]")',
        ]
    lines[:0] = [
        f"![DET curves of the methods]({DET_FILE})",
        "",
        f"One student per method ({', '.join(curves)}): seed {seed}, "
        f"pair {pair}, setting {config.get('tag', 'main')!r} (no KD: "
        f"{NO_KD_TAG!r}), trial list {list_name}, {DET_BACKEND} scores "
        f"read from each run's `scores/{list_name}_{DET_BACKEND}.txt`. "
        "One seed, not pooled over seeds: pooling the trials of different "
        "students would mix their score scales. Circles mark each EER, "
        "squares the operating point of minDCF (p = 0.01). Drawn by "
        f"`{config.get('report_command', 'benchmarks/run_benchmark.py')}`.",
    ]
    return path, lines


def write_report(config, teacher, throughput, invocations):
    """Writes the markdown and CSV results.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.
    teacher : dict or None
        From :func:`run_teacher`.
    throughput : list of dict
        From :func:`run_throughput`.
    invocations : list of dict
        Every command that worked on this output folder (command, git
        revision, hardware, wall time).

    Returns
    -------
    list of str
        The files written.

    Example
    -------
    >>> import tempfile
    >>> config = {
    ...     "output_folder": tempfile.mkdtemp(),
    ...     "results_folder": tempfile.mkdtemp(), "lists": [],
    ...     "runs_folder": tempfile.mkdtemp(),
    ...     "pairs": [], "methods": [], "seeds": [], "summary": {},
    ... }
    >>> sorted(os.path.basename(p) for p in write_report(config, None, [], []))
    ['results.csv', 'results.md', 'runs.csv', 'speed.csv', 'throughput.csv']
    """
    results = config["results_folder"]
    os.makedirs(results, exist_ok=True)
    runs = collect_runs(config["runs_folder"])
    rows = aggregate(runs, teacher)
    ratios = speed_ratios(
        throughput, SPEED_COMPARISONS[config.get("profile", "gpu")]
    )
    files = _write_csv_files(results, rows, runs, throughput, ratios)
    lines = _header_lines(config, invocations)
    lines += _verification_lines(config, rows, runs)
    det_path, det_lines = methods_det(config, results)
    lines += ["", "## DET curves", "", *det_lines]
    lines += _throughput_lines(throughput, ratios)
    if det_path:
        files.append(det_path)
    files.append(os.path.join(results, "results.md"))
    with open(files[-1], "w", encoding="utf-8") as fout:
        # Paths beside the checkout are shown as a reader at its root
        # would type them (../shared/...).
        text = "\n".join(lines) + "\n"
        fout.write(text.replace(str(REPO.parent) + os.sep, ".." + os.sep))
    return files


def _write_csv_files(results, rows, runs, throughput, ratios):
    """Writes results.csv, runs.csv, throughput.csv and speed.csv."""
    metric_cols = [
        f"{m}_{s}"
        for m in (*METRICS, "train_s", "params_M", "mean_conf_size")
        for s in ("mean", "std")
    ]
    files = [os.path.join(results, name) for name in ("results.csv",)]
    _write_csv(
        files[0],
        rows,
        ["tag", "pair", "method", "list", "backend", "seeds", *metric_cols],
    )
    files.append(os.path.join(results, "runs.csv"))
    _write_csv(
        files[-1],
        runs,
        [
            "tag",
            "pair",
            "method",
            "seed",
            "list",
            "backend",
            *METRICS,
            "train_s",
            "params_M",
            "mean_conf_size",
        ],
    )
    throughput_cols = [
        "pair",
        "method",
        "precision",
        "batch_size",
        "step_ms",
        "step_samples_per_s",
        "epoch_s",
        "epoch_samples",
        "epoch_samples_per_s",
        "kd_loss_ms",
        "kd_step_ms",
        "kd_loss_share",
        "kd_share_clock",
    ]
    files.append(os.path.join(results, "throughput.csv"))
    _write_csv(files[-1], throughput, throughput_cols)
    files.append(os.path.join(results, "speed.csv"))
    speed_cols = ["pair", "method", "option", "step_speedup", "epoch_speedup"]
    _write_csv(files[-1], ratios, speed_cols)

    return files


def _header_lines(config, invocations):
    """The report's title, the commands that made it and the settings."""
    lines = ["# TRKD benchmark", ""]
    lines.append(
        "Generated by `benchmarks/run_benchmark.py` from real runs; every "
        "number below was measured by the commands listed here."
    )
    lines += ["", "## Runs", ""]
    total = 0.0
    for number, inv in enumerate(invocations, 1):
        total += inv["wall_s"]
        lines.append(
            f"{number}. `{inv['command']}`  \n   git {inv['git_revision']}, "
            f"{inv['hardware']}, torch {inv['torch']}, wall time "
            f"{inv['wall_s']:.0f} s"
        )
    lines += ["", f"Total wall time: {total:.0f} s.", ""]
    lines += ["## Configuration", ""]
    for key, value in config["summary"].items():
        lines.append(f"- {key}: {value}")
    return lines


def _verification_lines(config, rows, runs):
    """The metric table, the paired reading, the sweep and what is left."""
    lists = [t["name"] for t in config["lists"]]
    backends = list(dict.fromkeys(r["backend"] for r in rows)) or ["cosine"]
    lines = []
    lines += ["", "## Verification (mean ± std over seeds)", ""]
    lines.append(
        "Teacher rows: `as_is`, a teacher that already knows the training "
        "speakers, distilled as it is; otherwise the pretrained teacher "
        "zero-shot, and with its head fine-tuned on the training speakers "
        "(one run each; with the backbone frozen, the two embed alike). "
        "`setting` names a set of shared hyperparameters (`--tag`); "
        "`conf. set` is TRKD's confusion-set size averaged over epochs."
    )
    table = _metric_table(rows, lists, backends)
    lines += ["", markdown_table(table) if table else "(no runs yet)"]
    tag = config.get("tag", "main")
    no_kd_tag = config.get("no_kd_tag", NO_KD_TAG)
    lines += ["", f"## Reading (setting {tag!r}), paired by seed", ""]
    paired = paired_table(runs, tag, no_kd_tag)
    lines += (
        [
            "Each method minus another at the same seed (for the methods "
            "trained from the cache, the same initial student, batches and "
            "views, as `tests/test_paired_seeds.py` checks for no KD, KD, "
            "DKD, GKD and TRKD), EER points; its mean with a 95 % "
            "t-interval on n - 1 degrees of freedom. 'beyond': the interval "
            "excludes 0. The KD students are compared with the stronger "
            "student without KD (`none` on the augmented views, or "
            "`none_clean` on clean crops), and, when that is `none_clean`, "
            "with `none` too: the same views, so the teacher's signal alone.",
            "",
            *format_paired(paired),
        ]
        if len(paired)
        else ["(no KD run and its baseline at a common seed yet)"]
    )
    lines += sweep_lines(runs, config, no_kd_tag)
    expected = {
        (p, m, s)
        for p in config["pairs"]
        for m in config["methods"]
        for s in config["seeds"]
    }
    done = {
        (r["pair"], r["method"], r["seed"])
        for r in runs
        if r.get("tag", "main") in (tag, NO_KD_TAG)
    }
    missing = sorted(expected - done)
    if missing:
        lines += ["", f"Runs not finished ({len(missing)}):", ""]
        lines += [f"- {p} {m} seed {s}" for p, m, s in missing]
    return lines


def _throughput_lines(throughput, ratios):
    """The throughput table and the speed-up ratios."""
    lines = []
    lines += ["", "## Throughput", ""]
    if throughput:
        lines.append(
            "samples/s count the loader's examples (with `concat_original` "
            "the models see each twice); the step is timed on one fixed "
            "batch, the epoch through the data loader. KD loss share: the "
            "loss's forward and backward over the whole step, from "
            "torch.profiler (kernel time on CUDA, CPU time on the CPU)."
        )
        table = [
            {
                "pair": r["pair"],
                "method": r["method"],
                "variant": r["precision"],
                "batch": str(r["batch_size"]),
                "step ms": _fmt(r["step_ms"], 1),
                "step samples/s": _fmt(r["step_samples_per_s"], 1),
                "epoch samples/s": _fmt(r.get("epoch_samples_per_s"), 1),
                "KD loss share %": _fmt(
                    100 * r["kd_loss_share"] if "kd_loss_share" in r else None,
                    2,
                ),
            }
            for r in throughput
        ]
        lines += ["", markdown_table(table), ""]
        if ratios:
            table = [
                {
                    "pair": r["pair"],
                    "method": r["method"],
                    "option": r["option"],
                    "step speed-up": _fmt(r["step_speedup"], 2),
                    "epoch speed-up": _fmt(r["epoch_speedup"], 2),
                }
                for r in ratios
            ]
            lines += [markdown_table(table)]
    else:
        lines.append("(not measured)")
    return lines
