"""The benchmark's reading: methods compared seed by seed, and the sweep.

A seed gives every method the same initial student, batches and views
(``tests/test_paired_seeds.py``), so two methods are compared on the
differences of their EERs at each seed. Their mean is reported with a 95 %
t-interval on ``n - 1`` degrees of freedom, and a difference is "beyond
the spread" only when that interval excludes 0.

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

# Methods compared with TRKD, and the students without KD.
TRKD_BASELINES = (
    "kd",
    "dkd",
    "gkd",
    "trkd_fixed_tau",
    "tmkd_nckd",
    "tckd_cfkd",
)
NO_KD = ("none", "none_clean")
# The metrics of a run file's lists and backends.
METRICS = ("eer", "min_dcf_0.01", "min_dcf_0.05")


def collect_runs(runs_folder):
    """Reads every finished student run.

    Arguments
    ---------
    runs_folder : str
        The results' ``runs`` folder: one JSON file per finished run.

    Returns
    -------
    list of dict
        One row per run, list and backend: ``tag``, ``pair``, ``method``,
        ``seed``, ``list``, ``backend``, the metrics, ``train_s``,
        ``params_M`` and ``mean_conf_size`` (TRKD; else NaN).

    Example
    -------
    >>> import tempfile
    >>> collect_runs(tempfile.mkdtemp())
    []
    """
    rows = []
    for path in sorted(Path(runs_folder).glob("*.json")):
        with open(path, encoding="utf-8") as fin:
            result = json.load(fin)
        for list_name, per_backend in result["metrics"].items():
            for backend, values in per_backend.items():
                row = {
                    "tag": result.get("tag", "main"),
                    "pair": result["pair"],
                    "method": result["method"],
                    "seed": result["seed"],
                    "list": list_name,
                    "backend": backend,
                }
                row.update({m: values[m] for m in METRICS})
                row["train_s"] = result["train_s"]
                row["params_M"] = result["params"] / 1e6
                row["mean_conf_size"] = result.get(
                    "mean_conf_size", float("nan")
                )
                rows.append(row)
    return rows


def paired_difference(differences, confidence=0.95):
    """Mean, 95 % t-interval and verdict of paired differences.

    Arguments
    ---------
    differences : list of float
        One per seed (method minus baseline).
    confidence : float
        The interval's coverage.

    Returns
    -------
    dict
        ``n``, ``mean``, ``low``, ``high`` (NaN for a single seed) and
        ``beyond`` (the interval excludes 0).

    Example
    -------
    >>> result = paired_difference([-0.3, -0.5, -0.4])
    >>> round(result["mean"], 2), round(result["high"], 3), result["beyond"]
    (-0.4, -0.152, True)
    >>> paired_difference([-0.3, 0.5, -0.4])["beyond"]
    False
    >>> math.isnan(paired_difference([0.2])["low"])
    True
    """
    n = len(differences)
    mean = sum(differences) / n
    if n < 2:
        return {
            "n": n,
            "mean": mean,
            "low": math.nan,
            "high": math.nan,
            "beyond": False,
        }
    series = pd.Series(differences)
    half = float(
        stats.t.ppf(0.5 + confidence / 2, n - 1) * series.std() / n**0.5
    )
    low, high = mean - half, mean + half
    return {
        "n": n,
        "mean": mean,
        "low": low,
        "high": high,
        "beyond": bool(low > 0 or high < 0),
    }


def baseline_method(frame, pair, tags):
    """The stronger student without KD of a pair: the lower mean cosine EER
    on the first list, or None when neither ran.

    Example
    -------
    >>> frame = pd.DataFrame([
    ...     {"tag": "no_kd", "pair": "p", "method": m, "seed": 1,
    ...      "list": "O", "backend": "cosine", "eer": e}
    ...     for m, e in [("none", 5.0), ("none_clean", 4.6)]])
    >>> baseline_method(frame, "p", ["no_kd"])
    'none_clean'
    """
    mine = frame[
        (frame["pair"] == pair)
        & frame["tag"].isin(tags)
        & frame["method"].isin(NO_KD)
        & (frame["backend"] == "cosine")
    ]
    if mine.empty:
        return None
    first = mine["list"].iloc[0]
    means = mine[mine["list"] == first].groupby("method")["eer"].mean()
    return str(means.idxmin())


def paired_table(runs, tag, no_kd_tag):
    """Every KD method against the stronger student without KD (and, when
    that one trained on clean crops, against the one on the same augmented
    views too: the teacher's signal alone), and TRKD against each other
    method, per pair, list and backend.

    Arguments
    ---------
    runs : list of dict
        One row per run, list and backend (``collect_runs``).
    tag : str
        The KD setting read.
    no_kd_tag : str
        The tag of the runs without KD.

    Returns
    -------
    pandas.DataFrame
        ``pair``, ``method``, ``baseline``, ``list``, ``backend``, ``n``,
        ``mean``, ``low``, ``high``, ``beyond`` (EER points).

    Example
    -------
    >>> runs = [{"tag": t, "pair": "p", "method": m, "seed": s, "list": "O",
    ...          "backend": "cosine", "eer": e}
    ...         for t, m, base in [("w", "trkd", 4.0), ("w", "dkd", 4.4),
    ...                            ("no_kd", "none", 4.8)]
    ...         for s, e in [(1, base), (2, base + 0.1), (3, base - 0.05)]]
    >>> table = paired_table(runs, "w", "no_kd")
    >>> table[["method", "baseline", "n"]].values.tolist()[:2]
    [['dkd', 'none', 3], ['trkd', 'none', 3]]
    >>> clean = [dict(run, method="none_clean", eer=run["eer"] - 1)
    ...          for run in runs if run["method"] == "none"]
    >>> table = paired_table(runs + clean, "w", "no_kd")
    >>> sorted(set(map(tuple, table[["method", "baseline"]].values)))[:2]
    [('dkd', 'none'), ('dkd', 'none_clean')]
    """
    columns = [
        "pair",
        "method",
        "baseline",
        "list",
        "backend",
        "n",
        "mean",
        "low",
        "high",
        "beyond",
    ]
    frame = pd.DataFrame(runs)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame[frame["tag"].isin([tag, no_kd_tag])]
    rows = []
    for pair in sorted(frame["pair"].unique()):
        here = frame[frame["pair"] == pair]
        methods = sorted(set(here["method"]) - set(NO_KD))
        baseline = baseline_method(here, pair, [no_kd_tag])
        wanted = [(m, baseline) for m in methods if baseline]
        no_kd = here[here["tag"] == no_kd_tag]
        if baseline == "none_clean" and "none" in set(no_kd["method"]):
            wanted += [(m, "none") for m in methods]
        if "trkd" in methods:
            wanted += [("trkd", b) for b in TRKD_BASELINES if b in methods]
        for method, base in wanted:
            for (list_name, backend), group in here.groupby(
                ["list", "backend"], sort=True
            ):
                pivot = group.pivot_table(
                    index="seed", columns="method", values="eer"
                )
                if method not in pivot or base not in pivot:
                    continue
                diffs = (pivot[method] - pivot[base]).dropna().tolist()
                if diffs:
                    rows.append(
                        {
                            "pair": pair,
                            "method": method,
                            "baseline": base,
                            "list": list_name,
                            "backend": backend,
                            **paired_difference(diffs),
                        }
                    )
    return pd.DataFrame(rows, columns=columns)


def format_paired(table):
    """The paired table as markdown lines.

    Example
    -------
    >>> table = pd.DataFrame([{"pair": "p", "method": "trkd",
    ...     "baseline": "none", "list": "O", "backend": "cosine", "n": 3,
    ...     "mean": -0.4, "low": -0.65, "high": -0.15, "beyond": True}])
    >>> print(format_paired(table)[2])
    | p | trkd | none | O | cosine | 3 | -0.40 | [-0.65, -0.15] | beyond |
    """
    lines = [
        "| pair | method | minus | list | backend | seeds | mean "
        "difference, EER points | 95 % t-interval | reading |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        interval = (
            "-" if math.isnan(row.low) else f"[{row.low:.2f}, {row.high:.2f}]"
        )
        verdict = (
            "one seed: no interval"
            if math.isnan(row.low)
            else ("beyond" if row.beyond else "within")
        )
        lines.append(
            f"| {row.pair} | {row.method} | {row.baseline} | {row.list} | "
            f"{row.backend} | {row.n} | {row.mean:+.2f} | {interval} | "
            f"{verdict} |"
        )
    return lines


def sweep_summary(runs, seed, no_kd_tag, list_name="O", backend="cosine"):
    """The sweep's table and the setting its rule selects: per tag, the EER
    of KD and DKD at ``seed`` and their mean; the lowest mean is chosen.

    Returns
    -------
    table : pandas.DataFrame
        One row per tag with both KD and DKD runs (others listed with NaN
        means), sorted by the mean.
    chosen : str or None

    Example
    -------
    >>> runs = [{"tag": t, "pair": "p", "method": m, "seed": 1,
    ...          "list": "O", "backend": "cosine", "eer": e}
    ...         for t, m, e in [("a", "kd", 5.0), ("a", "dkd", 5.4),
    ...                         ("b", "kd", 4.9), ("b", "dkd", 5.1)]]
    >>> table, chosen = sweep_summary(runs, 1, "no_kd")
    >>> chosen, table["mean"].round(2).tolist()
    ('b', [5.0, 5.2])
    """
    frame = pd.DataFrame(runs)
    if frame.empty:
        return pd.DataFrame(), None
    frame = frame[
        (frame["seed"] == seed)
        & (frame["list"] == list_name)
        & (frame["backend"] == backend)
        & (frame["tag"] != no_kd_tag)
        & frame["method"].isin(["kd", "dkd", "emb_cos"])
    ]
    if frame.empty:
        return pd.DataFrame(), None
    table = frame.pivot_table(
        index=["pair", "tag"], columns="method", values="eer"
    ).reset_index()
    table.columns.name = None
    both = [m for m in ("kd", "dkd") if m in table]
    table["mean"] = (
        table[both].mean(axis=1, skipna=False) if len(both) == 2 else math.nan
    )
    keep = ["pair", "tag", *both, *(m for m in ("emb_cos",) if m in table)]
    table = table[[*keep, "mean"]].sort_values("mean", na_position="last")
    ranked = table.dropna(subset=["mean"])
    return table, (str(ranked["tag"].iloc[0]) if len(ranked) else None)


def main(argv=None):
    """Writes the paired reading of a folder of run files as markdown.

    Example
    -------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "paired.md")
    >>> main(["--runs", tempfile.mkdtemp(), "--tag", "w", "--output", out])
    0
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="a runs/ folder")
    parser.add_argument("--tag", required=True, help="the KD setting read")
    parser.add_argument("--no_kd_tag", default="no_kd")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    table = paired_table(collect_runs(args.runs), args.tag, args.no_kd_tag)
    lines = [
        f"# Paired reading of {args.runs} (setting {args.tag!r})",
        "",
        f"Written by `python benchmarks/paired_reading.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`.",
        "",
        *format_paired(table),
    ]
    with open(args.output, "w", encoding="utf-8") as fout:
        fout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
