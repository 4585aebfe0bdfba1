"""Draw a `Figure` with plotly (interactive, hover values)."""

from __future__ import annotations

import numpy as np

from lookingglass.plot.figure import COLORSCALES, Bars, Figure, Heatmap, Lines, TokenText


def render(fig: Figure):
    """The plotly figure for `fig`."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows, cols = fig.shape
    titles = [getattr(p, "title", "") for p in fig.panels]
    out = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.12 / max(cols - 1, 1) if cols > 1 else 0.1,
        vertical_spacing=0.25 / rows if rows > 1 else 0.1,
    )
    shown_scales: set[tuple] = set()
    for index, panel in enumerate(fig.panels):
        row, col = index // cols + 1, index % cols + 1
        if isinstance(panel, TokenText):
            panel = _token_grid(panel)
        if isinstance(panel, Heatmap):
            scale_key = (panel.colorscale, panel.zmin, panel.zmax, panel.zmid)
            out.add_trace(
                _heatmap(go, panel, show_scale=scale_key not in shown_scales), row=row, col=col
            )
            shown_scales.add(scale_key)
            n_rows, n_cols = panel.z.shape
            out.update_xaxes(
                tickvals=list(range(n_cols)),
                ticktext=panel.x,
                title_text=panel.x_title,
                row=row,
                col=col,
            )
            out.update_yaxes(
                tickvals=list(range(n_rows)),
                ticktext=panel.y,
                title_text=panel.y_title,
                autorange="reversed",
                row=row,
                col=col,
            )
        elif isinstance(panel, Bars):
            out.add_trace(_bars(go, panel), row=row, col=col)
            out.update_xaxes(title_text=panel.x_title, row=row, col=col)
            out.update_yaxes(
                title_text=panel.y_title,
                row=row,
                col=col,
                autorange="reversed" if panel.horizontal else None,
            )
        elif isinstance(panel, Lines):
            for series in panel.series:
                out.add_trace(
                    go.Scatter(
                        x=series.x,
                        y=series.y,
                        name=series.name,
                        mode=series.mode,
                        text=series.text,
                        hovertemplate=_line_hover(series),
                    ),
                    row=row,
                    col=col,
                )
            out.update_xaxes(
                title_text=panel.x_title, type="log" if panel.log_x else None, row=row, col=col
            )
            out.update_yaxes(
                title_text=panel.y_title, type="log" if panel.log_y else None, row=row, col=col
            )
    width, height = fig.panel_size
    out.update_layout(
        title_text=fig.title,
        height=int(110 * height * rows + 80),
        width=int(120 * width * cols + 120),
        template="plotly_white",
    )
    return out


def _heatmap(go, panel: Heatmap, show_scale: bool):
    z = np.where(np.isfinite(panel.z), panel.z, np.nan)
    trace = dict(
        z=z,
        colorscale=COLORSCALES[panel.colorscale][0],
        zmin=panel.zmin,
        zmax=panel.zmax,
        zmid=panel.zmid,
        showscale=show_scale,
        hoverongaps=False,
        colorbar=dict(title=dict(text=panel.colorbar_title)),
    )
    if panel.text is not None:
        trace.update(text=panel.text, texttemplate="%{text}", textfont=dict(size=9))
    if panel.hover is not None:
        trace.update(hovertext=panel.hover, hovertemplate="%{hovertext}<extra></extra>")
    return go.Heatmap(**trace)


def _bars(go, panel: Bars):
    values = np.asarray(panel.values)
    if panel.horizontal:
        return go.Bar(x=values, y=panel.labels, orientation="h", hovertext=panel.hover)
    return go.Bar(x=panel.labels, y=values, hovertext=panel.hover)


def _line_hover(series) -> str:
    label = "%{text}<br>" if series.text is not None else ""
    return f"{series.name}<br>{label}x=%{{x}}<br>y=%{{y:.4g}}<extra></extra>"


def _token_grid(panel: TokenText) -> Heatmap:
    """Coloured tokens as a heatmap of `per_row` tokens per row, for plotly."""
    n = len(panel.tokens)
    per_row = max(1, min(panel.per_row, n))
    n_rows = -(-n // per_row)
    z = np.full((n_rows, per_row), np.nan)
    text = np.full((n_rows, per_row), "", dtype=object)
    hover = np.full((n_rows, per_row), "", dtype=object)
    for i, (token, value) in enumerate(zip(panel.tokens, panel.values, strict=True)):
        r, c = divmod(i, per_row)
        z[r, c] = value
        text[r, c] = token.replace("\n", "\\n")
        hover[r, c] = f"{i}: {token!r}<br>{panel.value_name} {value:.4g}"
    return Heatmap(
        z,
        [""] * per_row,
        [str(r * per_row) for r in range(n_rows)],
        text,
        hover,
        panel.colorscale,
        panel.zmin,
        panel.zmax,
        None,
        panel.title,
        colorbar_title=panel.value_name,
    )
