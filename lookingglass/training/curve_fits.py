"""Least-squares fits of step-like and smooth curves to a training curve, and their BIC.

A phase change is a curve that rises in an S (slowly, then fast, then slowly again); a
smooth learning curve rises fastest where it starts rising and then ever more slowly.
`fit_curves` fits both kinds to one curve, each of the form `y = a + b * g(t)`:

- `sigmoid`:      `g = 1 / (1 + exp(-(t - m) / w))`: an S-shaped step at `m` of scale `w`
  (10% to 90% of the rise takes `2 ln 9 w ~ 4.39 w`).
- `exponential`:  `g = 1 - exp(-max(t - t0, 0) / tau)`: starts at `t0` at its steepest,
  then saturates exponentially (`t0` may be the first step: no delay).
- `power_law`:    `g = 1 - (1 + max(t - t0, 0) / s) ** -c`: the same with a power-law
  tail, the usual shape of loss curves.

Each fit solves `a, b` in closed form for every point of a grid over the shape
parameters (variable projection), keeps the best, and refines the grid around it twice.
A grid search needs no starting guess and cannot diverge. Time is normalised to the
run's span before fitting, so the grids are the same for every run.

Model comparison is by the Bayesian information criterion with Gaussian residuals,
`BIC = n ln(RSS / n) + k ln n`, `k` = the number of fitted parameters (the `a, b` and
the shape's). Lower is better; a difference of 10 is "very strong" evidence (Kass and
Raftery 1995).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

# Shape parameters of each family, in normalised time u = (t - t_first) / span, as
# (name, coarse grid) pairs; `_refine` narrows each grid around the best point.
_GRIDS: dict[str, list[tuple[str, np.ndarray]]] = {
    "sigmoid": [("m", np.linspace(-0.5, 1.2, 120)), ("w", np.geomspace(1e-4, 1.0, 60))],
    "exponential": [("t0", np.linspace(0.0, 1.0, 120)), ("tau", np.geomspace(1e-4, 100.0, 70))],
    "power_law": [
        ("t0", np.linspace(0.0, 1.0, 50)),
        ("s", np.geomspace(1e-4, 100.0, 34)),
        ("c", np.geomspace(0.05, 8.0, 16)),
    ],
}
_TIME_PARAMS = {"m", "w", "t0", "tau", "s"}  # rescaled back to steps
_LOG_PARAMS = {"w", "tau", "s", "c"}  # refined multiplicatively


@dataclass(frozen=True)
class CurveFit:
    """One least-squares fit `y = a + b * g(t; params)` (see the module doc).

    Attributes:
        family: "sigmoid", "exponential" or "power_law".
        a, b: the offset and amplitude (b > 0: the curve rises).
        params: the shape parameters, times in steps (`m`, `w`, `t0`, `tau`, `s`).
        rss: residual sum of squares.
        bic: `n ln(rss / n) + k ln n` (rss floored at 1e-12 of the curve's variance).
        n_params: k.
    """

    family: str
    a: float
    b: float
    params: dict[str, float]
    rss: float
    bic: float
    n_params: int


def _shape(family: str, u: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """g(u) for every grid point: p's arrays broadcast to [..., 1] against u [n]."""
    if family == "sigmoid":
        return 0.5 * (1 + np.tanh((u - p["m"]) / (2 * p["w"])))
    lag = np.maximum(u - p["t0"], 0.0)
    if family == "exponential":
        return -np.expm1(-lag / p["tau"])
    return 1 - (1 + lag / p["s"]) ** -p["c"]


def _fit_grid(
    family: str, u: np.ndarray, y: np.ndarray, axes: list[tuple[str, np.ndarray]]
) -> tuple[dict[str, float], float, float, float]:
    """Best (params, a, b, rss) over the grid spanned by `axes`."""
    mesh = np.meshgrid(*(values for _, values in axes), indexing="ij")
    p = {name: grid.reshape(-1, 1) for (name, _), grid in zip(axes, mesh, strict=True)}
    g = _shape(family, u, p)  # [n_grid, n]
    g_mean = g.mean(axis=1)
    gc = g - g_mean[:, None]
    yc = y - y.mean()
    sgg = (gc**2).sum(axis=1)
    sgy = gc @ yc
    usable = sgg > 1e-12
    b = np.where(usable, sgy / np.where(usable, sgg, 1.0), 0.0)
    rss = np.maximum(yc @ yc - b * sgy, 0.0)
    best = int(np.argmin(rss))
    params = {name: float(grid[best, 0]) for name, grid in p.items()}
    return params, float(y.mean() - b[best] * g_mean[best]), float(b[best]), float(rss[best])


def _refine(
    axes: list[tuple[str, np.ndarray]], best: dict[str, float]
) -> list[tuple[str, np.ndarray]]:
    """A finer grid around `best`: two coarse steps either side on each axis."""
    out = []
    for name, values in axes:
        n = len(values)
        if name in _LOG_PARAMS:
            ratio = (values[-1] / values[0]) ** (2 / max(n - 1, 1))
            out.append((name, np.geomspace(best[name] / ratio, best[name] * ratio, n)))
        else:
            step = 2 * (values[-1] - values[0]) / max(n - 1, 1)
            out.append((name, np.linspace(best[name] - step, best[name] + step, n)))
    return out


def fit_curve(
    family: str, steps: Float[np.ndarray, " n"], values: Float[np.ndarray, " n"]
) -> CurveFit:
    """Least-squares fit of one family (see the module doc) to `values` at `steps`."""
    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    span = max(float(t[-1] - t[0]), 1e-12)
    u = (t - t[0]) / span
    axes = _GRIDS[family]
    params, a, b, rss = _fit_grid(family, u, y, axes)
    for _ in range(2):
        axes = _refine(axes, params)
        params, a, b, rss = _fit_grid(family, u, y, axes)
    n, k = len(y), 2 + len(axes)
    floor = 1e-12 * max(float(((y - y.mean()) ** 2).sum()), 1e-300)
    bic = n * np.log(max(rss, floor) / n) + k * np.log(n)
    in_steps = {
        name: (float(t[0]) + value * span if name in ("m", "t0") else value * span)
        if name in _TIME_PARAMS
        else value
        for name, value in params.items()
    }
    return CurveFit(family, a, b, in_steps, rss, float(bic), k)


def fit_curves(
    steps: Float[np.ndarray, " n"], values: Float[np.ndarray, " n"]
) -> dict[str, CurveFit]:
    """`fit_curve` of every family, keyed by family name."""
    return {family: fit_curve(family, steps, values) for family in _GRIDS}


def sigmoid_window(fit: CurveFit, low: float = 0.1) -> tuple[float, float, float]:
    """(onset, midpoint, completion) of a sigmoid fit, in steps: where it has done
    `low`, 1/2 and `1 - low` of its rise."""
    m, w = fit.params["m"], fit.params["w"]
    half = w * np.log((1 - low) / low)
    return m - half, m, m + half
