"""Plots of the bench's own results: a hypothesis test's paired values, a model profile."""

from __future__ import annotations

from typing import Any

import numpy as np

from lookingglass.plot.figure import Bars, Figure, Lines, Series, to_numpy


def hypothesis_result(result: Any, *, title: str | None = None) -> Figure:
    """A `HypothesisResult`: the metric per prompt under both conditions, and the paired
    differences sorted, with the mean difference and its confidence interval."""
    a, b = to_numpy(result.values_a), to_numpy(result.values_b)
    index = np.arange(len(a))
    name_a, name_b = result.conditions
    values = Lines(
        [Series(name_a, index, a, mode="markers"), Series(name_b, index, b, mode="markers")],
        title="metric per prompt",
        x_title="prompt",
        y_title="metric",
    )
    diffs = np.sort(b - a)
    ranks = np.arange(len(diffs))
    flat = lambda v: np.full(len(diffs), v)  # noqa: E731
    differences = Lines(
        [
            Series(f"{name_b} - {name_a}", ranks, diffs, mode="markers"),
            Series("mean", ranks, flat(result.mean_diff)),
            Series(f"{result.confidence:.0%} CI low", ranks, flat(result.ci_low)),
            Series(f"{result.confidence:.0%} CI high", ranks, flat(result.ci_high)),
        ],
        title="paired differences (sorted)",
        x_title="rank",
        y_title="difference",
    )
    default = (
        f"{name_b} vs {name_a}: diff {result.mean_diff:.3g} "
        f"[{result.ci_low:.3g}, {result.ci_high:.3g}], "
        f"permutation p={result.permutation_pvalue:.3g}, "
        f"d={result.cohens_d:.2f}"
    )
    return Figure([values, differences], title=title or default, cols=2, panel_size=(5.0, 3.5))


def model_profile(profile: Any, *, top: int = 20, title: str = "Model profile") -> Figure:
    """A `ModelProfile`: the `top` modules by self time, and by activation memory."""
    rows = [r for r in profile.rows if r["depth"] > 0] or profile.rows
    by_time = sorted(rows, key=lambda r: -r["self_ms"])[:top]
    by_memory = sorted(rows, key=lambda r: -r["output_bytes"])[:top]
    time_panel = Bars(
        [r["module"] for r in by_time],
        np.array([r["self_ms"] for r in by_time]),
        title="self time per call set (ms)",
        x_title="ms",
        horizontal=True,
    )
    memory_panel = Bars(
        [r["module"] for r in by_memory],
        np.array([r["output_bytes"] / 2**20 for r in by_memory]),
        title="activation memory (MiB)",
        x_title="MiB",
        horizontal=True,
    )
    return Figure(
        [time_panel, memory_panel],
        title=title,
        cols=2,
        panel_size=(5.5, max(3.0, 0.25 * min(top, len(rows)) + 1)),
    )
