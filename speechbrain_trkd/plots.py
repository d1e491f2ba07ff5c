"""Pictures of a scored model and of a distillation run (PNG files).

Verification (:func:`write_verification_plots`), from the score files of
``scoring.write_scores``:

* ``det_<list>.png``: the DET curve of each backend on normal-deviate axes,
  with its EER point and its minDCF operating point marked;
* ``scores_<list>_<backend>.png``: the target and non-target score
  histograms, with the two thresholds.

Training (:func:`write_training_plots`), from the run's ``train_log.txt``:

* ``losses.png``: the loss terms per epoch;
* ``confusion_set_size.png``: TRKD's mean confusion-set size per epoch;
* ``tau.png``: the tau schedule over the run's optimizer steps, with the tau
  logged at the end of each epoch.

matplotlib is an optional dependency (``pip install -e ".[plots]"``). The
figures are drawn on ``matplotlib.figure.Figure`` objects, which render
PNGs with the Agg canvas, so that nothing touches pyplot's global state or
backend. Without matplotlib the writers log one line and return no file.

Authors
 * speechbrain-trkd developers 2026
"""

import functools
import logging
import math
import os
from typing import NamedTuple

import numpy
import torch
from scipy.stats import norm

from speechbrain_trkd.metrics import compute_eer, compute_min_dcf, det_curve
from speechbrain_trkd.trials import read_scores

logger = logging.getLogger(__name__)

SKIPPED = (
    'matplotlib is not installed: pictures skipped (pip install -e ".[plots]"'
    " gives them)"
)
# Rates labelled on the DET axes.
DET_TICKS = (0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6)
DET_TICKS += (0.8, 0.9, 0.95, 0.99)
# The DET axes never reach below this rate (one error in 10,000 trials).
DET_FLOOR = 1e-4
DPI = 120


@functools.cache
def figure_class():
    """``matplotlib.figure.Figure``, or None when matplotlib is absent.

    The first call without matplotlib logs that pictures are skipped and
    how to get them; the answer is then kept for the process.

    Returns
    -------
    type or None

    Example
    -------
    >>> Figure = figure_class()
    >>> Figure is None or Figure.__name__ == "Figure"
    True
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning(SKIPPED)
        return None
    return Figure


def save_figure(fig, path):
    """Writes a figure as PNG (its folder created) and returns the path.

    Arguments
    ---------
    fig : matplotlib.figure.Figure
    path : str

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> Figure = figure_class()
    >>> if Figure is not None:
    ...     path = save_figure(Figure(), tempfile.mkdtemp() + "/a/b.png")
    ...     assert open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    """
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------


class DETPoints(NamedTuple):
    """A DET curve with its EER point and its minDCF operating point.

    Attributes
    ----------
    far : numpy.ndarray
        False-acceptance rate at every threshold (``scoring.det_curve``).
    frr : numpy.ndarray
        False-rejection rate at every threshold.
    eer : float
        ``scoring.compute_eer``; the EER point is ``(eer, eer)``.
    eer_threshold : float
        Its threshold.
    p_target : float
        Target prior of the minDCF.
    min_dcf : float
        ``scoring.compute_min_dcf`` at ``p_target``.
    min_dcf_threshold : float
        Its threshold.
    min_dcf_far : float
        False-acceptance rate at that threshold.
    min_dcf_frr : float
        False-rejection rate at that threshold.

    Example
    -------
    >>> points = det_points([0.9, 0.8, 0.3, 0.4, 0.1, 0.2], [1, 1, 1, 0, 0, 0])
    >>> round(points.eer, 4), points.min_dcf_far, points.min_dcf_frr
    (0.3333, 0.0, 0.3333333333333333)
    """

    far: numpy.ndarray
    frr: numpy.ndarray
    eer: float
    eer_threshold: float
    p_target: float
    min_dcf: float
    min_dcf_threshold: float
    min_dcf_far: float
    min_dcf_frr: float


def det_points(scores, labels, p_target=0.01):
    """The DET curve, EER point and minDCF point of scored trials.

    All come from :mod:`speechbrain_trkd.scoring`: the curve is
    ``det_curve``, the EER ``compute_eer`` and the minDCF point the
    operating point at ``compute_min_dcf``'s threshold.

    Arguments
    ---------
    scores : torch.Tensor or array-like
        One score per trial [T].
    labels : torch.Tensor or array-like
        One label per trial [T] (1 target, 0 non-target).
    p_target : float
        Target prior of the minDCF (c_miss = c_fa = 1).

    Returns
    -------
    DETPoints

    Example
    -------
    >>> points = det_points([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0], p_target=0.5)
    >>> points.far.tolist(), points.frr.tolist(), points.eer
    ([1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 1.0], 0.25)
    >>> points.min_dcf, points.min_dcf_far, points.min_dcf_frr
    (0.5, 0.5, 0.0)
    """
    thresholds, frr, far = det_curve(scores, labels)
    eer, eer_threshold = compute_eer(scores, labels)
    min_dcf, dcf_threshold = compute_min_dcf(scores, labels, p_target)
    at = int(
        torch.searchsorted(
            thresholds, torch.tensor([dcf_threshold], dtype=thresholds.dtype)
        )
    )
    return DETPoints(
        far=far.numpy(),
        frr=frr.numpy(),
        eer=eer,
        eer_threshold=eer_threshold,
        p_target=p_target,
        min_dcf=min_dcf,
        min_dcf_threshold=dcf_threshold,
        min_dcf_far=float(far[at]),
        min_dcf_frr=float(frr[at]),
    )


def _det_range(curves):
    """Rates at the two ends of the DET axes, from the curves shown."""
    low = 0.05
    for points in curves:
        for rates in (points.far, points.frr):
            positive = rates[rates > 0]
            if positive.size:
                low = min(low, float(positive.min()))
    # Up to the tick above the EER and minDCF points, with some margin.
    marked = max(max(p.eer, p.min_dcf_far, p.min_dcf_frr) for p in curves)
    high = next((t for t in DET_TICKS if t >= max(0.4, 1.1 * marked)), 0.99)
    return max(low, DET_FLOOR), high


def _rate_label(rate):
    """A DET tick label in percent (``0.01``, ``0.5``, ``40``)."""
    return f"{100 * rate:g}"


def plot_det(curves, path, title=None):
    """Draws DET curves on normal-deviate axes and writes a PNG.

    Each curve gets its EER point (circle, on the diagonal) and its minDCF
    operating point (square), in its colour.

    Arguments
    ---------
    curves : dict
        ``{label: DETPoints}``, drawn in that order.
    path : str
        The PNG to write.
    title : str, optional

    Returns
    -------
    str or None
        ``path``, or None without matplotlib.

    Example
    -------
    >>> import tempfile
    >>> gen = torch.Generator().manual_seed(0)
    >>> labels = torch.arange(400) % 2
    >>> scores = labels + torch.randn(400, generator=gen)
    >>> path = plot_det({"toy": det_points(scores, labels)},
    ...                 tempfile.mkdtemp() + "/det.png")
    >>> path is None or os.path.getsize(path) > 0
    True
    """
    if not curves:
        raise ValueError(f"no DET curve to draw in {path}")
    Figure = figure_class()
    if Figure is None:
        return None
    fig = Figure(figsize=(5.6, 5.6))
    ax = fig.subplots()
    low, high = _det_range(curves.values())
    for label, points in curves.items():
        inside = (points.far > 0) & (points.far < 1)
        shown = inside & (points.frr > 0) & (points.frr < 1)
        (line,) = ax.plot(
            norm.ppf(points.far[shown]),
            norm.ppf(points.frr[shown]),
            label=f"{label}: EER {100 * points.eer:.2f} %, minDCF "
            f"{points.min_dcf:.3f}",
        )
        marks = [
            ((points.eer, points.eer), "o"),
            ((points.min_dcf_far, points.min_dcf_frr), "s"),
        ]
        for (far, frr), marker in marks:
            x, y = norm.ppf(numpy.clip([far, frr], low, high))
            ax.plot(x, y, marker, color=line.get_color(), mfc="none", ms=8)
    p_target = next(iter(curves.values())).p_target
    ax.plot([], [], "ko", mfc="none", label="EER point")
    ax.plot([], [], "ks", mfc="none", label=f"minDCF point (p={p_target:g})")
    ticks = [t for t in DET_TICKS if low <= t <= high]
    limits = norm.ppf([low, high])
    ax.plot(limits, limits, ":", color="0.6", lw=0.8)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(norm.ppf(ticks), [_rate_label(t) for t in ticks])
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_xlabel("false acceptance rate (%)")
    ax.set_ylabel("false rejection (miss) rate (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def plot_score_histograms(scores, labels, points, path, title=None):
    """Target and non-target score densities, with the EER and minDCF
    thresholds; writes a PNG.

    Arguments
    ---------
    scores : torch.Tensor or array-like
        One score per trial [T].
    labels : torch.Tensor or array-like
        One label per trial [T] (1 target, 0 non-target).
    points : DETPoints
        From :func:`det_points` on the same trials (the thresholds).
    path : str
        The PNG to write.
    title : str, optional

    Returns
    -------
    str or None
        ``path``, or None without matplotlib.

    Example
    -------
    >>> import tempfile
    >>> labels = torch.arange(200) % 2
    >>> scores = labels + torch.randn(200, generator=torch.manual_seed(0))
    >>> path = plot_score_histograms(
    ...     scores, labels, det_points(scores, labels),
    ...     tempfile.mkdtemp() + "/hist.png")
    >>> path is None or os.path.getsize(path) > 0
    True
    """
    Figure = figure_class()
    if Figure is None:
        return None
    scores = numpy.asarray(scores, dtype=numpy.float64)
    target = numpy.asarray(labels) == 1
    bins = numpy.histogram_bin_edges(scores, bins=80)
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    classes = ((target, "target", "C0"), (~target, "non-target", "C3"))
    for chosen, name, color in classes:
        ax.hist(
            scores[chosen],
            bins=bins,
            density=True,
            histtype="stepfilled",
            alpha=0.35,
            color=color,
            label=f"{name} ({int(chosen.sum())} trials)",
        )
    thresholds = (
        (points.eer_threshold, "--", "EER threshold"),
        (points.min_dcf_threshold, ":", f"minDCF (p={points.p_target:g})"),
    )
    for threshold, style, name in thresholds:
        if math.isfinite(threshold):
            ax.axvline(threshold, ls=style, color="k", lw=1, label=name)
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def write_verification_plots(metrics, output_folder, p_target=0.01):
    """The DET and histogram PNGs of every scored list and backend.

    Reads ``<output_folder>/scores/<list>_<backend>.txt`` (as written by
    ``evaluate_verification``) and writes, beside ``metrics.json``,
    ``det_<list>.png`` (one curve per backend) and
    ``scores_<list>_<backend>.png``.

    Arguments
    ---------
    metrics : dict
        ``{list_name: {backend: ...}}``, the lists and backends scored.
    output_folder : str
        The scoring's output folder.
    p_target : float
        Target prior of the minDCF point marked.

    Returns
    -------
    list of str
        The PNGs written (none without matplotlib).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.trials import write_scores
    >>> out = tempfile.mkdtemp()
    >>> labels = torch.arange(100) % 2
    >>> scores = labels + torch.randn(100, generator=torch.manual_seed(0))
    >>> ids = [f"u{i}" for i in range(100)]
    >>> write_scores(f"{out}/scores/O_cosine.txt", ids, ids, labels, scores)
    >>> paths = write_verification_plots({"O": {"cosine": {}}}, out)
    >>> [os.path.basename(p) for p in paths] in ([],
    ...     ["scores_O_cosine.png", "det_O.png"])
    True
    """
    if figure_class() is None:
        return []
    paths = []
    for name, per_backend in metrics.items():
        curves = {}
        for backend in per_backend:
            trials, scores = read_scores(
                os.path.join(output_folder, "scores", f"{name}_{backend}.txt")
            )
            points = det_points(scores, trials.labels, p_target)
            curves[backend] = points
            paths.append(
                plot_score_histograms(
                    scores,
                    trials.labels,
                    points,
                    os.path.join(output_folder, f"scores_{name}_{backend}.png"),
                    title=f"trial list {name}, {backend} scores",
                )
            )
        paths.append(
            plot_det(
                curves,
                os.path.join(output_folder, f"det_{name}.png"),
                title=f"DET, trial list {name}",
            )
        )
    return paths


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------
