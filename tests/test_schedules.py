"""Tests of the tau curricula in speechbrain_trkd.schedules."""

import pytest
import torch

from speechbrain_trkd.schedules import (
    ExponentialTauSchedule,
    TauSchedule,
)

SPE = 7  # steps per epoch: odd, so that fractional epochs hit real steps


def exponential_reference(step, tau_init, tau_final, gamma, start, stop):
    """The TRKD curve written directly from its definition, in epochs."""
    epoch = step / SPE
    if epoch < start:
        return tau_init
    if epoch >= stop:
        return tau_final
    r = (epoch - start) / (stop - start)
    return tau_init + (tau_final - tau_init) * (1 - gamma**r)


def test_exponential_key_points_defaults():
    schedule = ExponentialTauSchedule()
    schedule.set_steps_per_epoch(SPE)
    start, stop = 10 * SPE, 60 * SPE
    mid = (start + stop) // 2
    assert schedule(0) == 1.0
    assert schedule(start - 1) == 1.0
    # At the start r = 0: gamma**0 = 1, the curve equals tau_init.
    assert schedule(start) == pytest.approx(1.0, abs=1e-12)
    expected_mid = 1.0 + (0.05 - 1.0) * (1 - 1e-3 ** ((mid - start) / 350))
    assert schedule(mid) == pytest.approx(expected_mid, rel=1e-12)
    last = stop - 1
    expected_last = 1.0 + (0.05 - 1.0) * (1 - 1e-3 ** ((last - start) / 350))
    assert schedule(last) == pytest.approx(expected_last, rel=1e-12)
    assert schedule(stop) == 0.05
    assert schedule(10 * stop) == 0.05


@pytest.mark.parametrize(
    "tau_init, tau_final, gamma, start, stop",
    [
        (1.0, 0.05, 1e-3, 10, 60),
        (0.9, 0.2, 0.1, 0.5, 3.25),
        (0.5, 0.5, 0.5, 0, 1),  # a fixed tau
    ],
)
def test_exponential_matches_formula_everywhere(
    tau_init, tau_final, gamma, start, stop
):
    schedule = ExponentialTauSchedule(
        tau_init, tau_final, gamma, start, stop, steps_per_epoch=SPE
    )
    for step in range(0, int(stop * SPE) + 3 * SPE):
        expected = exponential_reference(
            step, tau_init, tau_final, gamma, start, stop
        )
        assert schedule(step) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_exponential_schedule_is_monotone():
    schedule = ExponentialTauSchedule(start_epoch=1, stop_epoch=5)
    schedule.set_steps_per_epoch(SPE)
    values = [schedule(step) for step in range(8 * SPE)]
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))
    assert values[0] == 1.0 and values[-1] == 0.05
    assert len(set(values)) > 3  # it really moves


def test_exponential_front_loads_the_decay():
    """A small gamma covers most of the way in the first part of the window."""
    exp = ExponentialTauSchedule(1.0, 0.1, 1e-3, 0, 1, steps_per_epoch=100)
    assert exp(20) < 1.0 - 0.9 * 0.2  # below the straight line
    # gamma**0.2 = 10**-0.6: 75% of the way done at 20% of the window.
    assert exp(20) == pytest.approx(0.1 + 0.9 * 10**-0.6, rel=1e-12)


def test_equal_ends_give_a_fixed_tau():
    schedule = ExponentialTauSchedule(0.25, 0.25, steps_per_epoch=3)
    assert {schedule(s) for s in (0, 1, 17, 100, 10**9)} == {0.25}


def test_schedule_is_a_pure_function_of_the_step():
    """Same step, same value, whatever was asked before (resume safety)."""
    first = ExponentialTauSchedule(start_epoch=0, stop_epoch=3)
    first.set_steps_per_epoch(SPE)
    forward = [first(s) for s in range(4 * SPE)]
    second = ExponentialTauSchedule(start_epoch=0, stop_epoch=3)
    second.set_steps_per_epoch(SPE)
    backward = [second(s) for s in reversed(range(4 * SPE))][::-1]
    assert forward == backward


def test_accepts_integer_like_steps():
    schedule = ExponentialTauSchedule(1.0, 0.5, 0.25, 0, 1, steps_per_epoch=4)
    assert schedule(torch.tensor(2)) == 0.75
    assert isinstance(schedule(torch.tensor(2)), float)


def test_unset_steps_per_epoch_is_a_clear_error():
    schedule = ExponentialTauSchedule()
    with pytest.raises(RuntimeError, match="set_steps_per_epoch"):
        schedule(0)
    with pytest.raises(RuntimeError, match="steps_per_epoch is not set"):
        schedule(3)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ExponentialTauSchedule(gamma=1.0), "gamma"),
        (lambda: ExponentialTauSchedule(gamma=0.0), "gamma"),
        (lambda: ExponentialTauSchedule(start_epoch=5, stop_epoch=5), "stop"),
        (lambda: ExponentialTauSchedule(start_epoch=-1), "start"),
        (lambda: ExponentialTauSchedule(tau_init=float("nan")), "tau_init"),
        (lambda: ExponentialTauSchedule(tau_final="low"), "tau_final"),
        (lambda: ExponentialTauSchedule(float("inf")), "tau"),
    ],
)
def test_bad_configuration_is_rejected(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_bad_steps_per_epoch_is_rejected(bad):
    schedule = ExponentialTauSchedule()
    with pytest.raises((ValueError, TypeError), match="steps_per_epoch"):
        schedule.set_steps_per_epoch(bad)


@pytest.mark.parametrize("bad", [-1, 1.5, None, False])
def test_bad_step_is_rejected(bad):
    schedule = ExponentialTauSchedule(steps_per_epoch=4)
    with pytest.raises((ValueError, TypeError), match="step"):
        schedule(bad)


def test_base_class_is_abstract():
    with pytest.raises(TypeError):
        TauSchedule()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ExponentialTauSchedule(1.0, 0.0), "tau_final must lie in"),
        (lambda: ExponentialTauSchedule(1.0, -0.1), "tau_final must lie in"),
        (lambda: ExponentialTauSchedule(1.5, 0.05), "tau_init must lie in"),
        (lambda: ExponentialTauSchedule(0.3, 0.6), "larger than tau_init"),
    ],
)
def test_impossible_taus_fail_when_the_schedule_is_built(make, message):
    """A tau outside (0, 1], or a curriculum that widens, is refused at
    hparams load time, not epochs into training."""
    with pytest.raises(ValueError, match=message):
        make()
