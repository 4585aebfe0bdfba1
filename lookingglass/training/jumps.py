"""Phase changes: where a training curve jumps, and whether the jump is abrupt.

Olsson et al. (2022) call the formation of induction heads a *phase change*: the
induction score and the in-context-learning score stay flat, then change within a short
stretch of training. Every learning curve changes somewhere, so "where is the largest
jump" alone calls smooth curves phase changes too. `phase_change` therefore measures
how concentrated the change is, against what a smooth learning curve can do:

- **Abruptness in steps** (`abruptness`): the fraction of the curve's total change that
  happens inside its steepest window of `window` (default `max_width`, 25%) of the run,
  in linear steps. A straight line puts 25% there; a step puts all of it there.
- **Abruptness in log steps** (`log_abruptness`): the fraction of the total change
  inside the steepest doubling of the step count (steps t to 2t). A smooth learning
  curve that starts with training, an exponential `1 - exp(-t / tau)`, puts at most
  1/4 of its change in any doubling, whatever its time constant `tau` (the maximum of
  `exp(-x) - exp(-2x)`); a power law `1 - (1 + t / s) ** -c` less. A step puts all of it
  there. Linear steps alone would call a fast exponential abrupt (most of it happens
  early in the run); log steps alone would call a straight line abrupt (half of it
  happens in the last doubling). A phase change is abrupt in both.
- **Shape** (`delta_bic`): a sigmoid step against the best smooth curve (exponential or
  power law, each with a free onset), compared by BIC (`curve_fits`); positive favours
  the step. It is reported as evidence, not used in the verdict: when the jump falls
  between two snapshots both shapes fit equally well.

A curve has a phase change (`detected`) when its largest jump rises by at least
`min_rise`, and at least half of its total change falls inside one window of each kind
(twice what an exponential from the start of training can put in a doubling).
Both fractions are measured on the curve smoothed over `smooth_width` snapshots (not
smoothed when there are fewer than `2 * smooth_width`) and linearly interpolated
between snapshots.

Two phase changes happen *together* (`jumps_together`) when both are detected and
their midpoints are at most 5% of the run apart, or one snapshot gap where the
snapshots around a midpoint are sparser than that. A jump's `midpoint` is where the
curve is halfway through the rise of its steepest doubling (interpolated): where the
abrupt part of the change happens. (The largest-jump window
`start..end` can be much wider when a curve rises in two stages, as the ICL score does,
so its centre is not used; overlapping windows alone accepted jumps 10-20% of training
apart.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from jaxtyping import Float, Int

from lookingglass.errors import InputError
from lookingglass.training.curve_fits import fit_curves, sigmoid_window

MIN_FIT_POINTS = 6  # two more than the sigmoid's 4 parameters
ABRUPT_FRACTION = 0.5


@dataclass(frozen=True)
class PhaseChange:
    """The window of a curve's largest jump, and how abrupt the curve is (see the module
    doc and `phase_change`).

    Attributes:
        start, end: the snapshot steps that bound the jump window.
        rise: the (smoothed) curve's increase from `start` to `end`.
        total_range: max minus min of the smoothed curve over the whole run.
        detected: a phase change: `rise >= min_rise` and both abruptness fractions
            at least 0.5.
        abruptness: fraction of `total_range` inside the steepest window of `window`
            of the run (linear steps), and that window's `[abrupt_start, abrupt_end]`.
        log_abruptness: fraction of `total_range` inside the steepest doubling of the
            step count, and that window's `[log_abrupt_start, log_abrupt_end]`.
        midpoint: where the curve is halfway through the rise of its steepest doubling
            of the step count, in steps (interpolated).
        delta_bic: BIC of the best smooth fit minus the sigmoid's (> 0 favours a
            step; None with fewer than 6 snapshots).
        sigmoid_onset, sigmoid_midpoint, sigmoid_end: where the sigmoid fit has done
            10%, 50% and 90% of its rise (None when not fitted).
    """

    start: int
    end: int
    rise: float
    total_range: float
    detected: bool
    abruptness: float = 0.0
    abrupt_start: float = 0.0
    abrupt_end: float = 0.0
    log_abruptness: float = 0.0
    log_abrupt_start: float = 0.0
    log_abrupt_end: float = 0.0
    midpoint: float = 0.0
    delta_bic: float | None = None
    sigmoid_onset: float | None = None
    sigmoid_midpoint: float | None = None
    sigmoid_end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable fields."""
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in asdict(self).items()}


def smooth(values: Float[np.ndarray, " n"], width: int = 3) -> np.ndarray:
    """Centered moving average over `width` snapshots (shorter at the ends)."""
    values = np.asarray(values, dtype=np.float64)
    half = width // 2
    return np.array([values[max(0, i - half) : i + half + 1].mean() for i in range(len(values))])


def steepest_window(
    steps: Int[np.ndarray, " n"], values: Float[np.ndarray, " n"], width: float, log: bool
) -> tuple[float, float, float]:
    """The largest rise of the linearly interpolated curve over a window `[t, t + width]`
    (`log=False`) or `[t, width * t]` (`log=True`, t > 0), as (rise, start, end).
    Windows start or end at a snapshot and stay inside the run."""
    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if log:
        positive = t[t > 0]
        starts = np.concatenate([positive, positive / width])
        starts = starts[(starts > 0) & (starts >= t[0]) & (starts * width <= t[-1])]
        ends = starts * width
    else:
        starts = np.concatenate([t, t - width])
        starts = starts[(starts >= t[0]) & (starts + width <= t[-1])]
        ends = starts + width
    if len(starts) == 0:  # the run is shorter than one window: the whole run
        starts, ends = t[:1], t[-1:]
    rises = np.interp(ends, t, y) - np.interp(starts, t, y)
    best = int(np.argmax(rises))
    return float(rises[best]), float(starts[best]), float(ends[best])


def _largest_jump(
    steps: np.ndarray, y: np.ndarray, max_width: float, keep: float
) -> tuple[int, int]:
    """Indices (i, j) of the narrowest snapshot pair keeping `keep` of the largest rise
    between snapshots at most `max_width * steps[-1]` apart, or adjacent (earliest on
    ties)."""
    span = steps[None, :] - steps[:, None]
    adjacent = np.eye(len(steps), k=1, dtype=bool)  # always a candidate, however far apart
    allowed = (span > 0) & ((span <= max(max_width * steps[-1], 1)) | adjacent)
    rises = np.where(allowed, y[None, :] - y[:, None], -np.inf)
    best = rises.max()
    candidates = np.argwhere(rises >= keep * best) if best > 0 else np.argwhere(rises == best)
    i, j = min(candidates.tolist(), key=lambda ij: (steps[ij[1]] - steps[ij[0]], steps[ij[0]]))
    return i, j


def _half_rise_step(steps: np.ndarray, y: np.ndarray, start: float, end: float) -> float:
    """The first step in `[start, end]` where the interpolated curve reaches the middle
    of its rise over that window (the window's centre if it does not rise)."""
    grid = np.linspace(start, end, 401)
    curve = np.interp(grid, steps.astype(np.float64), y)
    if curve[-1] <= curve[0]:
        return (start + end) / 2
    return float(grid[int(np.argmax(curve >= (curve[0] + curve[-1]) / 2))])


def phase_change(
    steps: Int[np.ndarray, " n"],
    values: Float[np.ndarray, " n"],
    min_rise: float,
    max_width: float = 0.25,
    smooth_width: int = 3,
    keep: float = 0.8,
    window: float | None = None,
) -> PhaseChange:
    """Find where a curve jumps, and whether the jump is a phase change.

    Jump window. Smooth the curve (`smooth`, `smooth_width` snapshots). Among all pairs of
    snapshots i < j no more than `max_width * steps[-1]` steps apart, let R be the
    largest rise `y[j] - y[i]`. The window is the narrowest such pair (earliest on ties)
    whose rise is at least `keep * R`: where most of the biggest jump happens.

    Verdict. `detected` when that rise is at least `min_rise` and the curve is abrupt:
    at least half of its total change (`total_range`) inside its steepest window of
    `window` of the run and inside its steepest doubling of the step count (see the
    module doc for why both).

    Args:
        steps: snapshot steps, ascending.
        values: the curve at those steps, oriented so that progress is an increase
            (pass `-icl` for the ICL score).
        min_rise: the smallest rise that counts as a phase change, in the curve's units.
        max_width: the widest jump window, as a fraction of the last step.
        window: the width of the linear abruptness window, as a fraction of the run
            (default: `max_width`).

    Raises:
        InputError: fewer than 2 snapshots, one value per step missing, or steps not
            increasing.
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    if len(steps) < 2 or len(steps) != len(values):
        raise InputError("phase_change needs at least 2 snapshots and one value per step.")
    if np.any(np.diff(steps) <= 0):
        raise InputError("phase_change needs strictly increasing steps.")
    # Too few snapshots to smooth: a moving average over most of them would flatten it.
    y = smooth(values, smooth_width if len(values) >= 2 * smooth_width else 1)
    i, j = _largest_jump(steps, y, max_width, keep)
    rise, total = float(y[j] - y[i]), float(y.max() - y.min())
    if total <= 1e-12 * max(1.0, float(np.abs(y).max())):  # constant up to rounding
        total = 0.0
    run = float(steps[-1] - steps[0])
    window = max_width if window is None else window
    lin_rise, lin_start, lin_end = steepest_window(steps, y, window * run, log=False)
    log_rise, log_start, log_end = steepest_window(steps, y, 2.0, log=True)
    abrupt, log_abrupt = (
        (max(lin_rise, 0.0) / total, max(log_rise, 0.0) / total) if total > 0 else (0.0, 0.0)
    )
    fields: dict[str, Any] = {}
    if len(steps) >= MIN_FIT_POINTS and total > 0:
        fits = fit_curves(steps, values)
        smooth_bic = min(fits["exponential"].bic, fits["power_law"].bic)
        fields["delta_bic"] = round(smooth_bic - fits["sigmoid"].bic, 2)
        if fits["sigmoid"].b > 0:
            onset, middle, done = sigmoid_window(fits["sigmoid"])
            fields.update(
                sigmoid_onset=float(onset), sigmoid_midpoint=float(middle), sigmoid_end=float(done)
            )
    detected = rise >= min_rise and min(abrupt, log_abrupt) >= ABRUPT_FRACTION
    return PhaseChange(
        int(steps[i]),
        int(steps[j]),
        rise,
        total,
        bool(detected),
        abrupt,
        lin_start,
        lin_end,
        log_abrupt,
        log_start,
        log_end,
        _half_rise_step(steps, y, log_start, log_end),
        **fields,
    )


def windows_overlap(a: PhaseChange, b: PhaseChange) -> bool:
    """True when both are detected phase changes and their step windows intersect (a
    loose test: wide windows overlap even when the jumps are far apart; see
    `jumps_together`)."""
    return a.detected and b.detected and a.start <= b.end and b.start <= a.end


def together_tolerance(
    a: PhaseChange, b: PhaseChange, steps: Int[np.ndarray, " n"], fraction: float = 0.05
) -> float:
    """How far apart (in steps) two jump midpoints may be to count as simultaneous:
    `fraction` of the run, or the widest snapshot gap around either midpoint if that is
    larger (the snapshots cannot place a jump more finely)."""
    steps = np.asarray(steps, dtype=np.float64)
    gaps = []
    for middle in (a.midpoint, b.midpoint):
        k = int(np.clip(np.searchsorted(steps, middle), 1, len(steps) - 1))
        gaps.append(steps[k] - steps[k - 1])
    return float(max(fraction * (steps[-1] - steps[0]), max(gaps)))


def jumps_together(
    a: PhaseChange, b: PhaseChange, steps: Int[np.ndarray, " n"], fraction: float = 0.05
) -> bool:
    """True when both are detected phase changes whose midpoints are at most
    `together_tolerance` apart."""
    if not (a.detected and b.detected):
        return False
    return abs(a.midpoint - b.midpoint) <= together_tolerance(a, b, steps, fraction)
