"""The benchmark's throughput stage: the distillation step timed under
each speed variant of the profile (precision, cached or online teacher).

Authors
 * speechbrain-trkd developers 2026
"""

import json
import os
import time

import torch
from bench_config import (
    SPEED_COMPARISONS,
    SPEED_VARIANTS,
    THROUGHPUT_FILE,
    student_argv,
)
from throughput import measure_throughput


def run_throughput(config, teacher):
    """Measures throughput per pair, method and precision, once each.

    Results accumulate in ``throughput.json``; measured entries are not
    measured again. The first of ``throughput_methods`` also times a whole
    epoch. Nothing starts after the deadline.

    Arguments
    ---------
    config : dict
        Built by :func:`main`.
    teacher : dict
        From :func:`run_teacher`.

    Returns
    -------
    list of dict
        One row per measured configuration.

    Example
    -------
    >>> import tempfile
    >>> run_throughput({"output_folder": tempfile.mkdtemp(),
    ...                 "throughput_methods": []}, teacher={})
    []
    """
    path = os.path.join(config["output_folder"], THROUGHPUT_FILE)
    done = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fin:
            done = {row["key"]: row for row in json.load(fin)}
    methods = config["throughput_methods"]
    comparisons = SPEED_COMPARISONS[config.get("profile", "gpu")]
    variants = list(dict.fromkeys(v for pair in comparisons for v in pair))
    for pair in config.get("pairs", []) if methods else []:
        for method in methods:
            for precision in variants:
                key = f"{pair}/{method}/{precision}"
                if key in done:
                    continue
                if time.time() > config["deadline"]:
                    print(f"throughput {key}: past --stop_after, left out")
                    continue
                folder = os.path.join(
                    config["output_folder"], "throughput", pair, method
                )
                run_opts, overrides = SPEED_VARIANTS[precision]
                argv = student_argv(
                    dict(
                        config,
                        run_opts=dict(config["run_opts"], **run_opts),
                        override=dict(config["override"], **overrides),
                    ),
                    teacher,
                    pair,
                    method,
                    config["seeds"][0],
                    os.path.join(folder, precision.replace(" ", "_")),
                )
                result = measure_throughput(
                    argv,
                    steps=config["throughput_steps"],
                    warmup=config["throughput_warmup"],
                    profile_steps=config["profile_steps"],
                    time_epoch=method == methods[0] and config["time_epoch"],
                )
                result["threads"] = torch.get_num_threads()
                row = {
                    "key": key,
                    "pair": pair,
                    "method": method,
                    "precision": precision,
                }
                row.update(result)
                done[key] = row
                with open(path, "w", encoding="utf-8") as fout:
                    json.dump(list(done.values()), fout, indent=2)
    return list(done.values())
