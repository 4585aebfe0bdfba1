"""The Schematics page's pictures: stacks of vectors drawn as heatmaps (a row per vector,
a column per dimension, every dimension drawn) on one colour scale per figure, with its
colour bar, so that rows of the same kind of vector can be compared by eye. A row can
be outlined (the key the head attends to most, in k and in v).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lookingglass.explorer import views

MAX_DIMS = 1024  # wider vectors are cut (none of the shipped or registered models has one)


@dataclass
class Panel:
    """One stack of vectors: its title, values `[rows, dims]`, a label per row and the
    rows to outline."""

    title: str
    values: np.ndarray
    rows: Sequence[str]
    outlined: list[int] = field(default_factory=list)


def vector_figure(panels: Sequence[Panel], scale_title: str, key: str) -> None:
    """Draw `panels` one under another on one diverging colour scale centred at 0
    (bounded by the largest |value| of all of them), with one colour bar; hover a cell
    for its row, dimension and value."""
    panels = [p for p in panels if p.values.size]
    bound = max(float(np.abs(p.values[:, :MAX_DIMS]).max()) for p in panels) or 1.0
    heights = [len(p.rows) + 2.0 for p in panels]
    fig = make_subplots(
        rows=len(panels),
        cols=1,
        row_heights=heights,
        subplot_titles=[_title(p) for p in panels],
        vertical_spacing=min(0.12, 0.3 / len(panels)),
    )
    for index, panel in enumerate(panels):
        values = panel.values[:, :MAX_DIMS]
        fig.add_heatmap(
            z=values,
            y=list(panel.rows),
            coloraxis="coloraxis",
            hovertemplate="%{y}, dim %{x}: %{z:.4f}<extra></extra>",
            row=index + 1,
            col=1,
        )
        fig.update_yaxes(autorange="reversed", row=index + 1, col=1)
        for row in panel.outlined:
            fig.add_shape(
                type="rect",
                x0=-0.5,
                x1=values.shape[1] - 0.5,
                y0=row - 0.5,
                y1=row + 0.5,
                line=dict(color="#e4572e", width=2),
                row=index + 1,
                col=1,
            )
    fig.update_layout(
        coloraxis=dict(
            colorscale="RdBu",
            cmin=-bound,
            cmax=bound,
            colorbar=dict(title=dict(text=scale_title), thickness=12),
        ),
        height=int(50 * len(panels) + 18 * sum(heights)),
        template="plotly_white",
        margin=dict(l=10, r=10, t=40, b=20),
    )
    views.show(go.Figure(fig), key=key)


def _title(panel: Panel) -> str:
    dims = panel.values.shape[1]
    return panel.title + (f" (first {MAX_DIMS} of {dims} dims)" if dims > MAX_DIMS else "")
