"""Direct logit attribution (bars per component, a layer x head heatmap) and activation
patching results (heatmaps on a diverging scale centred at 0)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lookingglass.errors import InputError
from lookingglass.plot.figure import Bars, Figure, Heatmap, symmetric_range, to_numpy, token_labels


def logit_attribution(
    values: Any,
    labels: Sequence[str],
    *,
    title: str = "Direct logit attribution",
    horizontal: bool = True,
) -> Figure:
    """Bars of each component's direct logit attribution.

    Args:
        values: `[component]`, or `[component, ...]` (averaged over the other dims), e.g.
            the first output of the `logit_attribution` tool's `by_component`.
        labels: a name per component ("embed", "0_attn_out", ...).
        title: the figure's title.
        horizontal: horizontal bars, first component on top.
    """
    data = to_numpy(values)
    data = data.reshape(data.shape[0], -1).mean(axis=1)
    if len(labels) != len(data):
        raise InputError(f"{len(labels)} labels for {len(data)} components.")
    hover = [f"{label}: {value:.4g}" for label, value in zip(labels, data, strict=True)]
    panel = Bars(
        list(labels),
        data,
        title="",
        x_title="logit attribution" if horizontal else "",
        y_title="" if horizontal else "logit attribution",
        horizontal=horizontal,
        hover=hover,
    )
    return Figure([panel], title=title, cols=1, panel_size=(6.0, max(3.0, 0.25 * len(data) + 1)))


def head_attribution(values: Any, *, title: str = "Direct logit attribution per head") -> Figure:
    """A layer x head heatmap of per-head attribution (`[n_layers, n_heads]`, or with
    trailing dims that are averaged), diverging colours centred at 0, values in cells."""
    data = to_numpy(values)
    if data.ndim < 2:
        raise InputError(
            f"Per-head values must be [n_layers, n_heads, ...], got shape {data.shape}."
        )
    data = data.reshape(*data.shape[:2], -1).mean(axis=-1)
    return patching_heatmap(
        data,
        x_labels=[f"H{h}" for h in range(data.shape[1])],
        x_title="head",
        y_title="layer",
        title=title,
        value_name="attribution",
        cell_text=True,
    )


def patching_heatmap(
    values: Any,
    tokens: Sequence[str] | None = None,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    panel_titles: Sequence[str] | None = None,
    x_title: str = "position",
    y_title: str = "layer",
    title: str = "Activation patching",
    value_name: str = "metric",
    cell_text: bool | None = None,
) -> Figure:
    """Heatmaps of patching results on one diverging scale centred at 0.

    Args:
        values: `[rows, cols]` (e.g. `[n_layers, pos]`, `[n_layers, n_heads]`) or
            `[panels, rows, cols]` (e.g. `get_act_patch_block_every`'s `[3, n_layers, pos]`).
        tokens: strings labelling the columns as positions (else `x_labels`, else indices).
        x_labels, y_labels: column and row labels (rows default to layer numbers).
        panel_titles: a title per panel (for `[3, ...]` default resid_pre / attn_out / mlp_out).
        x_title, y_title, title, value_name: axis, figure and colour-bar titles.
        cell_text: write values in cells (default: when the grid is small).
    """
    data = to_numpy(values)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputError(f"Patching values must be 2-D or 3-D, got shape {data.shape}.")
    n_panels, n_rows, n_cols = data.shape
    if tokens is not None:
        x = token_labels(list(tokens), n_cols)
    else:
        x = list(x_labels) if x_labels is not None else [str(i) for i in range(n_cols)]
    y = list(y_labels) if y_labels is not None else [str(i) for i in range(n_rows)]
    if panel_titles is None:
        panel_titles = ["resid_pre", "attn_out", "mlp_out"] if n_panels == 3 else [""] * n_panels
    zmin, zmax = symmetric_range(data)
    show_text = cell_text if cell_text is not None else n_rows * n_cols <= 200
    panels = []
    for index in range(n_panels):
        z = data[index]
        text = (
            np.vectorize(lambda v: f"{v:.2f}" if np.isfinite(v) else "")(z).astype(object)
            if show_text
            else None
        )
        hover = np.empty(z.shape, dtype=object)
        for (r, c), v in np.ndenumerate(z):
            hover[r, c] = f"{y_title} {y[r]}<br>{x_title} {x[c]}<br>{value_name} {v:.4g}"
        panels.append(
            Heatmap(
                z,
                x,
                y,
                text=text,
                hover=hover,
                colorscale="rdbu",
                zmin=zmin,
                zmax=zmax,
                zmid=0.0,
                title=panel_titles[index],
                x_title=x_title,
                y_title=y_title,
                colorbar_title=value_name,
            )
        )
    return Figure(
        panels,
        title=title,
        cols=min(3, n_panels),
        panel_size=(max(3.5, 0.45 * n_cols + 1.5), max(2.8, 0.35 * n_rows + 1.2)),
    )
