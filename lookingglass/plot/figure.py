"""`Figure`: one plot description, drawn interactively (plotly) or statically (matplotlib).

Every plot function in `lookingglass.plot` returns a `Figure`: a grid of panels that hold
plain data (a heatmap's values, labels and cell text; bars; lines; coloured tokens). The
same object then renders either way:

    fig = plot.attention_patterns(cache, layer=0)
    fig.to_html("attn.html")     # plotly, self-contained (plotly.js inlined: works offline)
    fig.to_image("attn.png")     # matplotlib: .png, .svg or .pdf
    fig.plotly, fig.matplotlib   # the backend figures, for further styling

Heatmap cells that are NaN are masked (drawn blank), e.g. the future positions of a
causal attention pattern. Axes are numeric with tick labels, so repeated tokens stay
separate columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lookingglass.utils import write_atomic

# Colour scales by our name: (plotly name, matplotlib name).
COLORSCALES = {
    "viridis": ("Viridis", "viridis"),
    "blues": ("Blues", "Blues"),
    "reds": ("Reds", "Reds"),
    "rdbu": ("RdBu", "RdBu"),
    "magma": ("Magma", "magma"),
}


@dataclass
class Heatmap:
    """Values `z` `[rows, cols]` (NaN = masked), row labels `y`, column labels `x`,
    optional text drawn in each cell and hover text. `zmid` centres a diverging scale."""

    z: np.ndarray
    x: list[str]
    y: list[str]
    text: np.ndarray | None = None
    hover: np.ndarray | None = None
    colorscale: str = "viridis"
    zmin: float | None = None
    zmax: float | None = None
    zmid: float | None = None
    title: str = ""
    x_title: str = ""
    y_title: str = ""
    colorbar_title: str = ""


@dataclass
class Bars:
    """One bar per label (horizontal bars list the labels top to bottom)."""

    labels: list[str]
    values: np.ndarray
    title: str = ""
    x_title: str = ""
    y_title: str = ""
    horizontal: bool = False
    hover: list[str] | None = None


@dataclass
class Series:
    """One line (or set of markers) of a `Lines` panel; `text` labels the points."""

    name: str
    x: np.ndarray
    y: np.ndarray
    text: list[str] | None = None
    mode: str = "lines"


@dataclass
class Lines:
    """Several series on shared axes."""

    series: list[Series]
    title: str = ""
    x_title: str = ""
    y_title: str = ""
    log_x: bool = False
    log_y: bool = False


@dataclass
class TokenText:
    """Text as a run of tokens, each coloured by a value (NaN: uncoloured)."""

    tokens: list[str]
    values: np.ndarray
    colorscale: str = "reds"
    zmin: float | None = None
    zmax: float | None = None
    title: str = ""
    value_name: str = "value"
    per_row: int = 16


Panel = Heatmap | Bars | Lines | TokenText


@dataclass
class Figure:
    """A grid of panels (row-major, `cols` per row) with a title; see the module docstring."""

    panels: list[Panel]
    title: str = ""
    cols: int | None = None
    panel_size: tuple[float, float] = (4.0, 3.5)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the panel grid."""
        cols = self.cols or min(len(self.panels), 4)
        return math.ceil(len(self.panels) / cols), cols

    @cached_property
    def plotly(self):
        """The figure as a `plotly.graph_objects.Figure` (built once)."""
        from lookingglass.plot._plotly import render

        return render(self)

    @cached_property
    def matplotlib(self):
        """The figure as a `matplotlib.figure.Figure` (built once, no pyplot state)."""
        from lookingglass.plot._matplotlib import render

        return render(self)

    def to_html(self, path: str | Path | None = None) -> str:
        """Self-contained HTML (plotly.js inlined, no network needed); written to `path`
        if given. A figure of coloured tokens is plain HTML without scripts."""
        if all(isinstance(p, TokenText) for p in self.panels):
            from lookingglass.plot.text import token_text_html

            html = token_text_html(self)
        else:
            html = self.plotly.to_html(include_plotlyjs=True, full_html=True)
        if path is not None:
            write_atomic(path, html)
        return html

    def to_image(
        self, path: str | Path | None = None, format: str | None = None, dpi: int = 120
    ) -> bytes:
        """A static image (matplotlib) as bytes, written to `path` if given. The format is
        `format`, else the path's suffix, else PNG ("png", "svg", "pdf")."""
        import io

        fmt = (format or (Path(path).suffix.lstrip(".") if path else "") or "png").lower()
        if fmt not in ("png", "svg", "pdf"):
            raise ValueError(f"Image format must be png, svg or pdf, got {fmt!r}.")
        buffer = io.BytesIO()
        self.matplotlib.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
        data = buffer.getvalue()
        if path is not None:
            write_atomic(path, data)
        return data

    def savefig(self, path: str | Path, **kwargs: Any) -> bytes:
        """Same as `to_image` (matplotlib's name)."""
        return self.to_image(path, **kwargs)

    def show(self) -> None:
        """Show the interactive figure (in a notebook or browser)."""
        self.plotly.show()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        # Notebooks display the interactive figure through plotly's own renderers.
        return self.plotly._repr_mimebundle_(include, exclude)


def to_numpy(values: Any) -> np.ndarray:
    """A float64 NumPy copy of a tensor, array or list."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().float().numpy()
    return np.array(values, dtype=np.float64)


def symmetric_range(z: np.ndarray) -> tuple[float, float]:
    """(-m, m) with m the largest finite |z| (1 if there is none): for diverging scales."""
    finite = np.abs(z[np.isfinite(z)])
    m = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return -m, m


def token_labels(tokens: list[str] | None, n: int) -> list[str]:
    """Tick labels `"3: ' the'"` for positions; positions alone without tokens."""
    if tokens is None:
        return [str(i) for i in range(n)]
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} token labels for {n} positions.")
    return [f"{i}: {t!r}"[:24] for i, t in enumerate(tokens)]
