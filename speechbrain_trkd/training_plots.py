"""Pictures of a training run, read from its ``train_log.txt``: the loss
terms per epoch and, for TRKD, tau and the confusion-set size.

Authors
 * speechbrain-trkd developers 2026
"""

import logging
import os

import numpy

from speechbrain_trkd.plots import figure_class, save_figure

logger = logging.getLogger(__name__)


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
