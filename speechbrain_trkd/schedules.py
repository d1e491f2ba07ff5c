"""Curricula for the TRKD cutoff tau, evaluated once per optimizer step.

Every schedule is a pure function of the optimizer step count: the only state
a schedule holds is its configuration and the number of optimizer steps in one
epoch. Resuming a run from a checkpoint, even in the middle of an epoch, thus
continues the curve exactly, provided the step count is restored (SpeechBrain's
``Brain`` checkpoints ``optimizer_step``).

Boundaries (start, stop) are given in epochs, possibly fractional.
They are converted to optimizer steps with ``set_steps_per_epoch``, which
``DistillationBrain.fit`` calls with the length of the training loader. A step
``s`` lies ``s / steps_per_epoch`` epochs into training, so ``start_epoch=10``
means that tau starts moving once ten full epochs are done.

Authors
 * speechbrain-trkd developers 2026
"""

import abc
import math
import operator


def _check_finite(name, value):
    """Returns ``value`` as a float, raising if it is not a finite number.

    Arguments
    ---------
    name : str
        Name of the argument, used in the error message.
    value : float
        The value to check.

    Returns
    -------
    float
        The value converted to float.

    Example
    -------
    >>> _check_finite("tau_init", 1)
    1.0
    """
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number, got {value!r}") from err
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_tau(name, value):
    """Returns ``value`` as a float after checking it is a tau in (0, 1].

    Example
    -------
    >>> _check_tau("tau_final", 0.05)
    0.05
    >>> _check_tau("tau_final", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: tau_final must lie in (0, 1], got 0.0: ...
    """
    value = _check_finite(name, value)
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"{name} must lie in (0, 1], got {value}: tau is the share of "
            "the non-target mass kept in the confusion set"
        )
    return value


def _check_epoch_window(start_epoch, stop_epoch):
    """Validates a ``[start_epoch, stop_epoch]`` window.

    Arguments
    ---------
    start_epoch : float
        Epoch at which the schedule starts moving (>= 0).
    stop_epoch : float
        Epoch at which the schedule reaches its final value (> start_epoch).

    Returns
    -------
    tuple of float
        The validated ``(start_epoch, stop_epoch)``.

    Example
    -------
    >>> _check_epoch_window(10, 60)
    (10.0, 60.0)
    """
    start_epoch = _check_finite("start_epoch", start_epoch)
    stop_epoch = _check_finite("stop_epoch", stop_epoch)
    if start_epoch < 0:
        raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
    if stop_epoch <= start_epoch:
        raise ValueError(
            f"stop_epoch ({stop_epoch}) must be larger than start_epoch "
            f"({start_epoch})"
        )
    return start_epoch, stop_epoch


class TauSchedule(abc.ABC):
    """Base class of the tau curricula: maps an optimizer step to tau.

    Subclasses implement ``value(step)``; calling the schedule validates the
    step and returns ``value(step)`` as a Python float.

    Arguments
    ---------
    steps_per_epoch : int, optional
        Number of optimizer steps in one epoch. Usually left out and set later
        by ``DistillationBrain.fit`` through ``set_steps_per_epoch``.

    Example
    -------
    >>> class HalfEveryEpoch(TauSchedule):
    ...     def value(self, step):
    ...         return 0.5 ** (step / self.steps_per_epoch)
    >>> schedule = HalfEveryEpoch(steps_per_epoch=4)
    >>> schedule(8)
    0.25
    """

    def __init__(self, steps_per_epoch=None):
        self._steps_per_epoch = None
        if steps_per_epoch is not None:
            self.set_steps_per_epoch(steps_per_epoch)

    @property
    def steps_per_epoch(self):
        """Number of optimizer steps per epoch, ``None`` until it is set.

        Example
        -------
        >>> ExponentialTauSchedule().steps_per_epoch is None
        True
        """
        return self._steps_per_epoch

    def set_steps_per_epoch(self, steps_per_epoch):
        """Sets the number of optimizer steps in one epoch.

        Arguments
        ---------
        steps_per_epoch : int
            A positive integer, e.g. the number of batches of the training
            loader divided by the gradient accumulation factor.

        Example
        -------
        >>> schedule = ExponentialTauSchedule(1.0, 0.5, gamma=0.25,
        ...     start_epoch=0, stop_epoch=2)
        >>> schedule.set_steps_per_epoch(10)
        >>> schedule(10)
        0.75
        """
        if isinstance(steps_per_epoch, bool):
            raise TypeError("steps_per_epoch must be an integer, got a bool")
        try:
            count = operator.index(steps_per_epoch)
        except TypeError as err:
            raise TypeError(
                f"steps_per_epoch must be an integer, got {steps_per_epoch!r}"
            ) from err
        if count < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {count}")
        self._steps_per_epoch = count

    def epoch_to_step(self, epoch):
        """Converts a (fractional) epoch count into optimizer steps.

        Arguments
        ---------
        epoch : float
            Number of epochs.

        Returns
        -------
        float
            ``epoch * steps_per_epoch`` (not rounded).

        Example
        -------
        >>> ExponentialTauSchedule(steps_per_epoch=100).epoch_to_step(2.5)
        250.0
        """
        if self._steps_per_epoch is None:
            raise RuntimeError(
                f"{type(self).__name__}: steps_per_epoch is not set; call "
                "set_steps_per_epoch(n) first (DistillationBrain.fit does it "
                "from the length of the training loader)"
            )
        return float(epoch) * self._steps_per_epoch

    @abc.abstractmethod
    def value(self, step):
        """Returns tau after ``step`` optimizer steps (no validation).

        Arguments
        ---------
        step : int
            Number of optimizer steps done so far (>= 0).

        Returns
        -------
        float
            The value of tau.

        Example
        -------
        >>> ExponentialTauSchedule(0.5, 0.5, steps_per_epoch=1).value(3)
        0.5
        """

    def __call__(self, step):
        """Returns tau after ``step`` optimizer steps.

        Arguments
        ---------
        step : int
            Number of optimizer steps done so far (a non-negative integer).

        Returns
        -------
        float
            The value of tau.

        Example
        -------
        >>> schedule = ExponentialTauSchedule(1.0, 0.5, gamma=0.25,
        ...     start_epoch=0, stop_epoch=1, steps_per_epoch=2)
        >>> round(schedule(1), 6)
        0.75
        """
        if isinstance(step, bool):
            raise TypeError("step must be an integer, got a bool")
        try:
            step = operator.index(step)
        except TypeError as err:
            raise TypeError(f"step must be an integer, got {step!r}") from err
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return float(self.value(step))


class ExponentialTauSchedule(TauSchedule):
    """The TRKD curriculum: an exponential approach from tau_init to tau_final.

    With ``r`` the fraction of the ``[start_epoch, stop_epoch)`` window that
    has elapsed, tau is ``tau_init + (tau_final - tau_init) * (1 - gamma**r)``.
    Before the window tau is ``tau_init``; from ``stop_epoch`` on it is
    ``tau_final``. Just before the stop the curve is ``gamma * (tau_init -
    tau_final)`` away from ``tau_final`` (about 1e-3 with the defaults), so
    the final switch is a small step. A small ``gamma`` front-loads the decay.
    ``tau_init == tau_final`` gives a fixed tau.

    Arguments
    ---------
    tau_init : float
        Value of tau before ``start_epoch``.
    tau_final : float
        Value of tau from ``stop_epoch`` on (at most ``tau_init``).
    gamma : float
        Shape of the curve, in ``(0, 1)``; smaller is faster early on.
    start_epoch : float
        Epoch at which tau starts moving.
    stop_epoch : float
        Epoch from which tau equals ``tau_final``.
    steps_per_epoch : int, optional
        Optimizer steps per epoch (see ``TauSchedule``).

    Example
    -------
    >>> schedule = ExponentialTauSchedule(steps_per_epoch=100)
    >>> schedule(0), schedule(1000), schedule(6000)
    (1.0, 1.0, 0.05)
    >>> round(schedule(3500), 4)  # halfway: 1 - 0.95 * (1 - 1e-3 ** 0.5)
    0.08
    """

    def __init__(
        self,
        tau_init=1.0,
        tau_final=0.05,
        gamma=1e-3,
        start_epoch=10,
        stop_epoch=60,
        steps_per_epoch=None,
    ):
        super().__init__(steps_per_epoch)
        self.tau_init = _check_tau("tau_init", tau_init)
        self.tau_final = _check_tau("tau_final", tau_final)
        if self.tau_final > self.tau_init:
            raise ValueError(
                f"tau_final={self.tau_final} is larger than tau_init="
                f"{self.tau_init}: the curriculum narrows the confusion set"
            )
        self.gamma = _check_finite("gamma", gamma)
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma must lie in (0, 1), got {self.gamma}")
        self.start_epoch, self.stop_epoch = _check_epoch_window(
            start_epoch, stop_epoch
        )

    def progress(self, step):
        """Fraction of the window elapsed after ``step`` optimizer steps.

        Arguments
        ---------
        step : int
            Number of optimizer steps done so far.

        Returns
        -------
        float
            0 before the window, 1 after it, linear in between.

        Example
        -------
        >>> schedule = ExponentialTauSchedule(start_epoch=2, stop_epoch=4)
        >>> schedule.set_steps_per_epoch(10)
        >>> schedule.progress(30)
        0.5
        """
        start = self.epoch_to_step(self.start_epoch)
        stop = self.epoch_to_step(self.stop_epoch)
        if step < start:
            return 0.0
        if step >= stop:
            return 1.0
        return (step - start) / (stop - start)

    def value(self, step):
        """Returns tau after ``step`` optimizer steps.

        Arguments
        ---------
        step : int
            Number of optimizer steps done so far.

        Returns
        -------
        float
            ``tau_init`` before the window, ``tau_final`` from its end on,
            the exponential approach inside it.

        Example
        -------
        >>> schedule = ExponentialTauSchedule(1.0, 0.5, gamma=0.25,
        ...     start_epoch=0, stop_epoch=2, steps_per_epoch=1)
        >>> [schedule.value(step) for step in range(3)]
        [1.0, 0.75, 0.5]
        """
        fraction = self.progress(step)
        if fraction >= 1.0:
            return self.tau_final
        decay = 1.0 - self.gamma**fraction
        return self.tau_init + (self.tau_final - self.tau_init) * decay

    def __repr__(self):
        return (
            f"ExponentialTauSchedule(tau_init={self.tau_init}, "
            f"tau_final={self.tau_final}, gamma={self.gamma}, "
            f"start_epoch={self.start_epoch}, stop_epoch={self.stop_epoch}, "
            f"steps_per_epoch={self.steps_per_epoch})"
        )
