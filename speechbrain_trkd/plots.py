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

from speechbrain_trkd.scoring import (
    compute_eer,
    compute_min_dcf,
    det_curve,
    read_scores,
)

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
    >>> from speechbrain_trkd.scoring import write_scores
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


def read_train_log(path):
    """The per-epoch lines of a SpeechBrain ``FileTrainLogger`` file.

    A line reads ``epoch: 1, lr: 2.00e-03 - train loss: 10.6, train kd:
    34.4 - valid loss: 8.31``; each gives a dict of its numeric fields
    (``{"epoch": 1, "lr": 0.002, "train loss": 10.6, ...}``). Lines without
    an epoch (e.g. the test results) are left out; an epoch logged twice
    (a resumed run) keeps its last line.

    Arguments
    ---------
    path : str

    Returns
    -------
    list of dict
        One per epoch, by epoch.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("epoch: 1, tau: 5.40e-01 - train loss: 10.64, "
    ...                 "train conf_size: 3.14e+02 - valid loss: 8.31\\n"
    ...                 "Epoch loaded: 1 - test loss: 8.00\\n")
    >>> read_train_log(path)
    [{'epoch': 1, 'tau': 0.54, 'train loss': 10.64, 'train conf_size': 314.0, \
'valid loss': 8.31}]
    """
    epochs = {}
    with open(path, encoding="utf-8") as log_file:
        for line in log_file:
            fields = {}
            for field in line.strip().replace(" - ", ", ").split(", "):
                key, _, value = field.partition(": ")
                try:
                    fields[key.strip()] = float(value)
                except ValueError:
                    continue  # not a number (e.g. a list of rates)
            if "epoch" in fields:
                fields["epoch"] = int(fields["epoch"])
                epochs[fields["epoch"]] = fields
    return [epochs[epoch] for epoch in sorted(epochs)]


def tau_curve(schedule, n_steps, max_points=2000):
    """Tau after each of ``0 .. n_steps`` optimizer steps.

    At most ``max_points`` steps, evenly spread, are evaluated.

    Arguments
    ---------
    schedule : speechbrain_trkd.schedules.TauSchedule
        With its ``steps_per_epoch`` set.
    n_steps : int
        The run's optimizer steps.
    max_points : int

    Returns
    -------
    steps : numpy.ndarray
    taus : numpy.ndarray

    Example
    -------
    >>> from speechbrain_trkd.schedules import ExponentialTauSchedule
    >>> schedule = ExponentialTauSchedule(1.0, 0.5, gamma=0.25,
    ...     start_epoch=0, stop_epoch=1, steps_per_epoch=2)
    >>> steps, taus = tau_curve(schedule, 4)
    >>> steps.tolist(), taus.tolist()
    ([0, 1, 2, 3, 4], [1.0, 0.75, 0.5, 0.5, 0.5])
    """
    steps = numpy.unique(
        numpy.linspace(0, n_steps, min(max_points, n_steps + 1)).round()
    ).astype(int)
    return steps, numpy.array([schedule(int(step)) for step in steps])


def _epoch_figure(epochs, keys, ylabel, path, log_scale=False):
    """One line per logged key against the epoch; writes a PNG."""
    fig = figure_class()(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for key in keys:
        logged = [(e["epoch"], e[key]) for e in epochs if key in e]
        ax.plot(*zip(*logged, strict=True), "o-", ms=3, label=key)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def loss_keys(epochs):
    """The logged loss terms: every train statistic but the confusion-set
    size, and the validation loss.

    Arguments
    ---------
    epochs : list of dict
        From :func:`read_train_log`.

    Returns
    -------
    list of str

    Example
    -------
    >>> loss_keys([{"epoch": 1, "lr": 0.1, "train loss": 2.0,
    ...             "train conf_size": 3.0, "valid loss": 1.0,
    ...             "valid ErrorRate": 0.5}])
    ['train loss', 'valid loss']
    """
    keys = []
    for epoch in epochs:
        keys += [
            key
            for key in epoch
            if key not in keys
            and (
                (key.startswith("train ") and key != "train conf_size")
                or key == "valid loss"
            )
        ]
    return keys


def plot_tau(schedule, epochs, path):
    """The tau schedule over the run's optimizer steps; writes a PNG.

    The run's steps are its logged epochs times the schedule's
    ``steps_per_epoch``; the tau logged at each epoch's end (the value of
    its last step) is marked on the curve.

    Arguments
    ---------
    schedule : speechbrain_trkd.schedules.TauSchedule
        With ``steps_per_epoch`` set (``DistillationBrain.fit`` sets it).
    epochs : list of dict
        From :func:`read_train_log`.
    path : str

    Returns
    -------
    str or None
        ``path``, or None without matplotlib.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.schedules import ExponentialTauSchedule
    >>> schedule = ExponentialTauSchedule(1.0, 0.5, gamma=0.25,
    ...     start_epoch=0, stop_epoch=1, steps_per_epoch=4)
    >>> path = plot_tau(schedule, [{"epoch": 1, "tau": 0.5}],
    ...                 tempfile.mkdtemp() + "/tau.png")
    >>> path is None or os.path.getsize(path) > 0
    True
    """
    Figure = figure_class()
    if Figure is None:
        return None
    per_epoch = schedule.steps_per_epoch
    last_epoch = epochs[-1]["epoch"]
    steps, taus = tau_curve(schedule, last_epoch * per_epoch)
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    ax.plot(
        steps,
        taus,
        drawstyle="steps-post",
        label=f"schedule ({per_epoch} steps per epoch)",
    )
    logged = [
        (e["epoch"] * per_epoch - 1, e["tau"]) for e in epochs if "tau" in e
    ]
    if logged:
        steps, taus = zip(*logged, strict=True)
        ax.plot(steps, taus, "o", ms=4, label="logged at each epoch's end")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("tau")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_training_plots(train_log, output_folder, tau_schedule=None):
    """The loss, confusion-set size and tau PNGs of a training run.

    Writes ``losses.png`` (every loss term of :func:`loss_keys`),
    ``confusion_set_size.png`` when the log holds ``train conf_size``
    (TRKD) and ``tau.png`` when ``tau_schedule`` is given with its
    ``steps_per_epoch`` set.

    Arguments
    ---------
    train_log : str
        The run's ``FileTrainLogger`` file.
    output_folder : str
        Where the PNGs go.
    tau_schedule : speechbrain_trkd.schedules.TauSchedule, optional
        The run's tau schedule (for a method that uses tau).

    Returns
    -------
    list of str
        The PNGs written (none without matplotlib or without a logged
        epoch).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.schedules import ExponentialTauSchedule
    >>> out = tempfile.mkdtemp()
    >>> with open(os.path.join(out, "train_log.txt"), "w") as f:
    ...     for epoch, tau, size in ((1, 0.5, 30.0), (2, 0.1, 2.0)):
    ...         _ = f.write(f"epoch: {epoch}, tau: {tau} - train loss: 2.0,"
    ...                     f" train kd: 1.0, train conf_size: {size}\\n")
    >>> schedule = ExponentialTauSchedule(1.0, 0.05, 0.001, 0, 2,
    ...                                   steps_per_epoch=10)
    >>> paths = write_training_plots(f"{out}/train_log.txt", out, schedule)
    >>> [os.path.basename(p) for p in paths] in ([],
    ...     ["losses.png", "confusion_set_size.png", "tau.png"])
    True
    """
    if figure_class() is None:
        return []
    epochs = read_train_log(train_log)
    if not epochs:
        logger.warning("%s logs no epoch: no training pictures", train_log)
        return []
    keys = loss_keys(epochs)
    positive = all(e[k] > 0 for e in epochs for k in keys if k in e)
    paths = [
        _epoch_figure(
            epochs,
            keys,
            "loss (epoch mean)",
            os.path.join(output_folder, "losses.png"),
            log_scale=positive,
        )
    ]
    if any("train conf_size" in e for e in epochs):
        paths.append(
            _epoch_figure(
                epochs,
                ["train conf_size"],
                "mean confusion-set size (classes)",
                os.path.join(output_folder, "confusion_set_size.png"),
                log_scale=True,
            )
        )
    if tau_schedule is not None and tau_schedule.steps_per_epoch:
        paths.append(
            plot_tau(
                tau_schedule,
                epochs,
                os.path.join(output_folder, "tau.png"),
            )
        )
    return paths
