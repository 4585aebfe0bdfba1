"""Draw a `Figure` with matplotlib (static PNG / SVG / PDF), without touching pyplot."""

from __future__ import annotations

import numpy as np

from lookingglass.plot.figure import COLORSCALES, Bars, Figure, Heatmap, Lines, TokenText

MAX_CELL_TEXT = 600  # cells; above this, cell text would be unreadable


def render(fig: Figure):
    """The matplotlib figure for `fig`."""
    from matplotlib.figure import Figure as MplFigure

    rows, cols = fig.shape
    width, height = fig.panel_size
    out = MplFigure(figsize=(width * cols + 1, height * rows + 0.6), layout="constrained")
    axes = out.subplots(rows, cols, squeeze=False)
    heatmaps = [p for p in fig.panels if isinstance(p, Heatmap)]
    # A grid of like heatmaps (attention heads) gets one colour bar and outer tick labels
    # only: tick labels are most of the drawing time.
    uniform = (
        len(heatmaps) > 1
        and len(heatmaps) == len(fig.panels)
        and all(
            (p.x, p.y, p.colorscale, p.zmin, p.zmax)
            == (
                heatmaps[0].x,
                heatmaps[0].y,
                heatmaps[0].colorscale,
                heatmaps[0].zmin,
                heatmaps[0].zmax,
            )
            for p in heatmaps
        )
    )
    n = len(fig.panels)
    for index, panel in enumerate(fig.panels):
        ax = axes[index // cols][index % cols]
        if isinstance(panel, Heatmap):
            outer = (index % cols == 0, index + cols >= n)  # first column, bottom of its column
            _heatmap(
                out,
                ax,
                panel,
                colorbar=not uniform or index == n - 1,
                labels=(True, True) if not uniform else (outer[1], outer[0]),
            )
        elif isinstance(panel, Bars):
            _bars(ax, panel)
        elif isinstance(panel, Lines):
            _lines(ax, panel)
        elif isinstance(panel, TokenText):
            _token_text(out, ax, panel)
    for index in range(len(fig.panels), rows * cols):
        axes[index // cols][index % cols].set_visible(False)
    if fig.title:
        out.suptitle(fig.title)
    return out


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[COLORSCALES[name][1]].with_extremes(bad="#eeeeee")


def _heatmap(
    out, ax, panel: Heatmap, colorbar: bool = True, labels: tuple[bool, bool] = (True, True)
) -> None:
    z = np.ma.masked_invalid(panel.z)
    vmin, vmax = panel.zmin, panel.zmax
    if panel.zmid is not None and (vmin is None or vmax is None):
        m = float(np.abs(z).max()) if z.count() else 1.0
        vmin, vmax = panel.zmid - m, panel.zmid + m
    image = ax.imshow(
        z,
        cmap=_cmap(panel.colorscale),
        vmin=vmin,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    n_rows, n_cols = panel.z.shape
    show_x, show_y = labels
    ax.set_xticks(range(n_cols), panel.x if show_x else [], rotation=90, fontsize=7)
    ax.set_yticks(range(n_rows), panel.y if show_y else [], fontsize=7)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.x_title if show_x else "")
    ax.set_ylabel(panel.y_title if show_y else "")
    if panel.text is not None and n_rows * n_cols <= MAX_CELL_TEXT:
        for (r, c), text in np.ndenumerate(panel.text):
            if text:
                ax.text(c, r, str(text), ha="center", va="center", fontsize=6)
    if colorbar:
        out.colorbar(image, ax=ax, shrink=0.8).set_label(panel.colorbar_title)


def _bars(ax, panel: Bars) -> None:
    positions = np.arange(len(panel.labels))
    values = np.asarray(panel.values, dtype=float)
    colors = np.where(values >= 0, "#3b75af", "#c0504d")
    if panel.horizontal:
        ax.barh(positions, values, color=colors)
        ax.set_yticks(positions, panel.labels, fontsize=7)
        ax.invert_yaxis()
    else:
        ax.bar(positions, values, color=colors)
        ax.set_xticks(positions, panel.labels, rotation=90, fontsize=7)
    if panel.horizontal:
        ax.axvline(0, color="black", linewidth=0.5)
    else:
        ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.x_title)
    ax.set_ylabel(panel.y_title)


def _lines(ax, panel: Lines) -> None:
    for series in panel.series:
        style = {"lines": "-", "markers": "o", "lines+markers": "-o"}.get(series.mode, "-")
        ax.plot(series.x, series.y, style, label=series.name, markersize=3)
        if series.text is not None and len(series.text) <= 40:
            for x, y, text in zip(series.x, series.y, series.text, strict=True):
                ax.annotate(
                    str(text), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points"
                )
    if panel.log_x:
        ax.set_xscale("log")
    if panel.log_y:
        ax.set_yscale("log")
    if len(panel.series) > 1:
        ax.legend(fontsize=7)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.x_title)
    ax.set_ylabel(panel.y_title)


def _token_text(out, ax, panel: TokenText) -> None:
    """Tokens laid out left to right in lines, each on a box coloured by its value."""
    import matplotlib.colors as mcolors
    from matplotlib.cm import ScalarMappable

    values = np.asarray(panel.values, dtype=float)
    finite = values[np.isfinite(values)]
    vmin = panel.zmin if panel.zmin is not None else (float(finite.min()) if finite.size else 0.0)
    vmax = panel.zmax if panel.zmax is not None else (float(finite.max()) if finite.size else 1.0)
    norm = mcolors.Normalize(vmin, vmax if vmax > vmin else vmin + 1)
    cmap = _cmap(panel.colorscale)
    ax.set_axis_off()
    ax.set_title(panel.title, fontsize=10)
    # Monospace at 8 pt: a character is ~0.6 em wide; convert to fractions of the axes.
    box = ax.get_position()
    width_in, height_in = out.get_figwidth() * box.width, out.get_figheight() * box.height
    char, line = 8 * 0.6 / 72 / width_in, 8 * 2.0 / 72 / height_in
    x, y = 0.0, 1.0
    for token, value in zip(panel.tokens, values, strict=True):
        for i, piece in enumerate(token.split("\n")):
            if i > 0:  # a newline in the token ends the line
                x, y = 0.0, y - line
            advance = char * (len(piece) + 1)
            if x + advance > 1.0 and x > 0:
                x, y = 0.0, y - line
            color = cmap(norm(value)) if np.isfinite(value) else (1, 1, 1, 1)
            ax.text(
                x,
                y,
                piece or " ",
                fontsize=8,
                family="monospace",
                va="top",
                transform=ax.transAxes,
                bbox=dict(facecolor=color, edgecolor="none", pad=0.5),
            )
            x += advance
    out.colorbar(ScalarMappable(norm, cmap), ax=ax, shrink=0.8, label=panel.value_name)
