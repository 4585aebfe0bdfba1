"""A general heatmap, for any `[rows, cols]` values (head scores, neuron statistics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lookingglass.errors import InputError
from lookingglass.plot.figure import COLORSCALES, Figure, Heatmap, symmetric_range, to_numpy


def heatmap(
    values: Any,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    value_name: str = "value",
    colorscale: str = "viridis",
    diverging: bool = False,
    cell_text: bool | None = None,
) -> Figure:
    """A one-panel heatmap of 2-D values.

    Args:
        values: `[rows, cols]` (a tensor, array or nested list; NaN cells are blank).
        x_labels, y_labels: column and row labels (default: indices).
        title, x_title, y_title, value_name: figure, axis and colour-bar titles.
        colorscale: "viridis", "blues", "reds", "magma" or "rdbu".
        diverging: centre the colour scale at 0 (and use "rdbu" unless told otherwise).
        cell_text: write the values in the cells (default: when there are at most 200).
    """
    z = to_numpy(values)
    if z.ndim != 2:
        raise InputError(f"heatmap needs 2-D values, got shape {z.shape}.")
    if colorscale not in COLORSCALES:
        raise InputError(f"colorscale must be one of {sorted(COLORSCALES)}, got {colorscale!r}.")
    n_rows, n_cols = z.shape
    x = list(x_labels) if x_labels is not None else [str(i) for i in range(n_cols)]
    y = list(y_labels) if y_labels is not None else [str(i) for i in range(n_rows)]
    if len(x) != n_cols or len(y) != n_rows:
        raise InputError(f"{len(y)} x {len(x)} labels for values of shape {z.shape}.")
    show = cell_text if cell_text is not None else z.size <= 200
    text = (
        np.vectorize(lambda v: f"{v:.2f}" if np.isfinite(v) else "", otypes=[object])(z)
        if show
        else None
    )
    hover = np.empty(z.shape, dtype=object)
    for (r, c), v in np.ndenumerate(z):
        hover[r, c] = (
            f"{y_title or 'row'} {y[r]}<br>{x_title or 'column'} {x[c]}<br>{value_name} {v:.4g}"
        )
    zmin, zmax, zmid = (*symmetric_range(z), 0.0) if diverging else (None, None, None)
    scale = "rdbu" if diverging and colorscale == "viridis" else colorscale
    panel = Heatmap(
        z,
        x,
        y,
        text=text,
        hover=hover,
        colorscale=scale,
        zmin=zmin,
        zmax=zmax,
        zmid=zmid,
        title="",
        x_title=x_title,
        y_title=y_title,
        colorbar_title=value_name,
    )
    return Figure(
        [panel],
        title=title,
        cols=1,
        panel_size=(max(3.5, 0.45 * n_cols + 1.5), max(2.8, 0.35 * n_rows + 1.2)),
    )
