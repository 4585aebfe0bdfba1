"""The phase-change detector (`lookingglass.training.jumps`) and its curve fits
(`lookingglass.training.curve_fits`), on curves whose shape is known because we made
them: smooth exponential learning curves (no phase change) and sigmoid steps (a phase
change), with noise, sampled at the replication's snapshot steps; plus edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from lookingglass.errors import InputError
from lookingglass.training.curve_fits import fit_curve, sigmoid_window
from lookingglass.training.jumps import (
    jumps_together,
    phase_change,
    steepest_window,
    windows_overlap,
)
from lookingglass.training.snapshots import snapshot_steps

RUN = 2500
STEPS = np.array(snapshot_steps(RUN, n_log=20, n_linear=40))  # the replication's
NOISE = 0.02


def exponential(tau: float, seed: int) -> np.ndarray:
    noise = NOISE * np.random.default_rng(seed).standard_normal(len(STEPS))
    return 1 - np.exp(-STEPS / tau) + noise


def sigmoid(midpoint: float, scale: float, seed: int) -> np.ndarray:
    noise = NOISE * np.random.default_rng(seed).standard_normal(len(STEPS))
    return 1 / (1 + np.exp(-(STEPS - midpoint) / scale)) + noise


@pytest.mark.parametrize("tau", [0.005 * RUN, 0.03 * RUN, 0.1 * RUN, 0.3 * RUN])
def test_a_smooth_exponential_is_no_phase_change(tau):
    found = phase_change(STEPS, exponential(tau, seed=int(tau)), min_rise=0.3)
    assert not found.detected
    # An exponential from the start of training puts at most 1/4 of its change in a
    # doubling of the step count (max of exp(-x) - exp(-2x)); noise adds a little.
    assert found.log_abruptness < 0.35


@pytest.mark.parametrize(
    ("midpoint", "scale", "resolved"), [(0.2 * RUN, 12.0, False), (0.5 * RUN, 40.0, True)]
)
def test_a_sigmoid_step_is_a_phase_change(midpoint, scale, resolved):
    found = phase_change(STEPS, sigmoid(midpoint, scale, seed=int(midpoint)), min_rise=0.3)
    assert found.detected
    assert found.abruptness > 0.8 and found.log_abruptness > 0.8
    assert found.start <= midpoint <= found.end
    # The sigmoid fit finds the step where we put it. When several snapshots fall inside
    # the step (10-90% takes 4.4 scales; snapshots here are 62 steps apart), the BIC
    # prefers it to the best smooth curve by far (a difference of 10 is "very strong");
    # a step between two snapshots has no visible shape for it to prefer.
    assert found.sigmoid_midpoint == pytest.approx(midpoint, abs=max(3 * scale, 62))
    if resolved:
        assert found.delta_bic > 10


def test_the_log_window_bound_of_an_exponential_is_one_quarter():
    steps = np.arange(0, 5001)
    curve = 1 - np.exp(-steps / 300.0)
    rise, start, end = steepest_window(steps, curve, 2.0, log=True)
    assert rise == pytest.approx(0.25, abs=1e-3)  # at t = tau ln 2, exactly 1/4
    assert start == pytest.approx(300 * np.log(2), abs=1.0) and end == pytest.approx(2 * start)


def test_a_straight_line_is_no_phase_change():
    found = phase_change(STEPS, STEPS / RUN, min_rise=0.3, smooth_width=1)
    assert not found.detected
    assert found.abruptness == pytest.approx(0.25, abs=1e-6)  # a 25% window of a line
    assert found.log_abruptness == pytest.approx(0.5, abs=1e-6)  # its last doubling


def test_a_flat_curve_is_no_phase_change():
    noisy = phase_change(STEPS, 0.05 + 0.01 * np.sin(STEPS), min_rise=0.3)
    assert not noisy.detected and noisy.rise < 0.3
    constant = phase_change(STEPS, np.full(len(STEPS), 0.7), min_rise=0.3)
    assert not constant.detected
    assert (constant.total_range, constant.abruptness, constant.delta_bic) == (0.0, 0.0, None)


def test_too_few_snapshots():
    # Two snapshots: the jump is between them, but nothing says it was abrupt (linearly
    # interpolated, a 25% window holds 25% of it), and there is too little to fit.
    two = phase_change(np.array([0, 100]), np.array([0.0, 1.0]), min_rise=0.3)
    assert (two.start, two.end, two.rise) == (0, 100, 1.0)
    assert not two.detected and two.abruptness == pytest.approx(0.25)
    assert two.delta_bic is None and two.sigmoid_midpoint is None
    with pytest.raises(InputError, match="at least 2 snapshots"):
        phase_change(np.array([0]), np.array([1.0]), min_rise=0.3)
    with pytest.raises(InputError, match="increasing"):
        phase_change(np.array([0, 10, 10]), np.array([0.0, 1.0, 1.0]), min_rise=0.3)


def test_jumps_together_needs_close_midpoints_not_just_overlapping_windows():
    a = phase_change(STEPS, sigmoid(1000, 50, seed=1), min_rise=0.3)
    same = phase_change(STEPS, 0.5 * sigmoid(1020, 50, seed=2), min_rise=0.1)
    assert jumps_together(a, same, STEPS) and jumps_together(same, a, STEPS)
    # 10% of the run later: the jump windows still overlap (the old test said "together").
    later = phase_change(STEPS, sigmoid(1250, 50, seed=3), min_rise=0.3)
    assert later.detected and windows_overlap(a, later)
    assert not jumps_together(a, later, STEPS)
    smooth = phase_change(STEPS, exponential(0.1 * RUN, seed=4), min_rise=0.3)
    assert not jumps_together(a, smooth, STEPS)


@pytest.mark.parametrize("family", ["sigmoid", "exponential", "power_law"])
def test_fits_recover_the_curve_that_made_the_data(family):
    t = STEPS.astype(float)
    truth = {
        "sigmoid": ({"m": 900.0, "w": 40.0}, 1 / (1 + np.exp(-(t - 900) / 40))),
        "exponential": ({"t0": 200.0, "tau": 150.0}, -np.expm1(-np.maximum(t - 200, 0) / 150)),
        "power_law": (
            {"t0": 100.0, "s": 50.0, "c": 0.7},
            1 - (1 + np.maximum(t - 100, 0) / 50) ** -0.7,
        ),
    }
    params, g = truth[family]
    fit = fit_curve(family, STEPS, 0.3 + 2.0 * g)
    assert (fit.a, fit.b) == (pytest.approx(0.3, abs=0.02), pytest.approx(2.0, rel=0.02))
    for name, value in params.items():
        assert fit.params[name] == pytest.approx(value, rel=0.05, abs=5.0), name
    assert fit.rss < 1e-3


def test_sigmoid_window_is_the_ten_to_ninety_percent_rise():
    fit = fit_curve("sigmoid", STEPS, 1 / (1 + np.exp(-(STEPS - 1200.0) / 30.0)))
    onset, middle, done = sigmoid_window(fit)
    assert middle == pytest.approx(1200, abs=1)
    assert (onset, done) == (
        pytest.approx(1200 - 30 * np.log(9), abs=2),
        pytest.approx(1200 + 30 * np.log(9), abs=2),
    )
