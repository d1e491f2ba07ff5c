"""Speed of our EER / minDCF against SpeechBrain's, side by side.

``speechbrain_trkd.scoring.compute_eer`` / ``compute_min_dcf`` sort the
scores once; ``speechbrain.utils.metric_stats.EER`` loops over every
threshold (quadratic time) and ``minDCF`` builds a [thresholds x trials]
matrix (quadratic memory). Both are run on the same random trials, one
after the other in this process, with one thread; ours at the full size
as well (580k trials: Vox1-E/H). Where upstream's cannot run at the full
size (``minDCF`` would need about 2.7 TB), its time there is extrapolated
from the largest measured size by its quadratic cost, and said so.

Usage::

    python benchmarks/scoring_speed.py [--trials 580000] \\
        [--upstream-eer-trials 580000] [--upstream-dcf-trials 8000]

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import time

import torch
from speechbrain.utils.metric_stats import EER, minDCF

from speechbrain_trkd.metrics import compute_eer, compute_min_dcf


def random_trials(n_trials, seed=0):
    """Scores and labels of ``n_trials`` random trials, 10 % targets."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n_trials, generator=generator) < 0.1).long()
    scores = torch.randn(n_trials, generator=generator) + 2.0 * labels
    return scores, labels


def timed(function, *args, repeats=1):
    """(result, seconds) of the fastest of ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


def compare(n_ours, n_upstream, ours, upstream, name):
    """Times ours at both sizes and upstream at the smaller; prints ratios."""
    scores, labels = random_trials(n_upstream)
    (value_up, _), t_up = timed(
        upstream, scores[labels == 1], scores[labels == 0]
    )
    (value_ours, _), t_ours = timed(ours, scores, labels, repeats=3)
    print(
        f"{name} at {n_upstream} trials: upstream {t_up:.3f} s "
        f"({value_up:.5f}), ours {t_ours:.4f} s ({value_ours:.5f}), "
        f"ratio {t_up / t_ours:.0f}x"
    )
    if n_ours == n_upstream:
        return
    scores, labels = random_trials(n_ours)
    _, t_full = timed(ours, scores, labels, repeats=3)
    t_up_full = t_up * (n_ours / n_upstream) ** 2
    print(
        f"{name} at {n_ours} trials: ours {t_full:.3f} s; upstream "
        f"extrapolated (quadratic) {t_up_full:.0f} s, ratio "
        f"{t_up_full / t_full:.0f}x"
    )


def main():
    """Runs the comparison from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=580_000)
    parser.add_argument("--upstream-eer-trials", type=int, default=580_000)
    parser.add_argument("--upstream-dcf-trials", type=int, default=8_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    compare(args.trials, args.upstream_eer_trials, compute_eer, EER, "EER")

    def upstream_dcf(positive, negative):
        return minDCF(positive, negative, p_target=0.01)

    def ours_dcf(scores, labels):
        return compute_min_dcf(scores, labels, p_target=0.01)

    compare(
        args.trials, args.upstream_dcf_trials, ours_dcf, upstream_dcf, "minDCF"
    )


if __name__ == "__main__":
    main()
