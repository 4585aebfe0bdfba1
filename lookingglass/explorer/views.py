"""Small display pieces the pages share: coloured token strips, token tables, figures.

Figures are `lookingglass.plot` figures drawn with plotly, which Streamlit serves from
its own bundle (no CDN).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from lookingglass.explorer.compute import TokenScore

PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["sendDataToCloud"]}

# Characters that start Markdown (and Streamlit's own) syntax able to draw an image, a
# link, HTML, a colour or icon directive (":red[...]", ":material/x:") or LaTeX.
_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#!|:$~&")
_REMOTE = re.compile(r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//")


def plain(text: object) -> str:
    """`text` escaped for a Streamlit Markdown body or label (`st.error`, `st.caption`,
    button labels): it reads as the same characters and renders as nothing else, so a
    stored string such as `![x](http://host/t.png)` cannot make the browser fetch a URL."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in str(text))


def without_remote_urls(value):
    """A figure's JSON (dicts and lists) with every string that is a remote URL
    ("http://...", "//host/...") emptied: a stored figure may name an image or map tiles
    to load, which the browser would fetch when the figure is drawn."""
    if isinstance(value, dict):
        return {k: without_remote_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_remote_urls(v) for v in value]
    if isinstance(value, str) and _REMOTE.match(value):
        return ""
    return value


def show(figure, key: str | None = None, height: int | None = None) -> None:
    """Draw a `lookingglass.plot.Figure` (or a plotly figure) across the page width."""
    fig = getattr(figure, "plotly", figure)
    fig.update_layout(width=None, autosize=True, **({"height": height} if height else {}))
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, theme=None)


def attention_heatmap(pattern: np.ndarray, str_tokens: Sequence[str], title: str, key: str) -> None:
    """One head's attention `[query, key]` as a heatmap of fixed size, future keys blank.
    Hover shows positions and the weight; the tick labels name the tokens."""
    n = len(pattern)
    labels = [f"{i}: {quoted_token(t)}"[:18] for i, t in enumerate(str_tokens)]
    ticks = list(range(0, n, max(1, n // 40)))
    fig = go.Figure(
        go.Heatmap(
            z=np.where(np.tri(n) > 0, pattern, np.nan),
            zmin=0,
            zmax=1,
            colorscale="Blues",
            hovertemplate="query %{y}<br>key %{x}<br>attention %{z:.4f}<extra></extra>",
            colorbar=dict(title=dict(text="attention")),
        )
    )
    fig.update_xaxes(tickvals=ticks, ticktext=[labels[i] for i in ticks], title_text="key (source)")
    fig.update_yaxes(
        tickvals=ticks,
        ticktext=[labels[i] for i in ticks],
        title_text="query (destination)",
        autorange="reversed",
    )
    fig.update_layout(
        title_text=title, height=min(750, 250 + 12 * n), template="plotly_white", margin=dict(t=40)
    )
    show(fig, key=key)


def head_grid(
    values: np.ndarray, title: str, key: str, zmin: float = 0.0, zmax: float = 1.0
) -> None:
    """A layer x head heatmap of per-head values, each written in its cell (a diverging
    scale when `zmin` is negative)."""
    n_layers, n_heads = values.shape
    text = [["" if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in values]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=[f"H{h}" for h in range(n_heads)],
            y=[f"L{l}" for l in range(n_layers)],
            text=text,
            texttemplate="%{text}",
            zmin=zmin,
            zmax=zmax,
            colorscale="RdBu" if zmin < 0 else "Blues",
            zmid=0.0 if zmin < 0 else None,
            colorbar=dict(thickness=10),
            hovertemplate="%{y}%{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title_text=title,
        height=120 + 40 * n_layers,
        template="plotly_white",
        margin=dict(l=40, r=10, t=40, b=30),
    )
    show(fig, key=key)


def vector_panels(
    panels: Sequence[tuple[str, np.ndarray, Sequence[str]]], key: str, max_dims: int = 48
) -> None:
    """Stacked heatmaps of vectors in one figure: each panel is (title, values
    `[rows, dims]`, a label per row), on its own diverging scale centred at 0 (hover for
    the values). Only the first `max_dims` dimensions are drawn."""
    heights = [len(rows) + 2.5 for _, _, rows in panels]
    titles = [
        title
        + (f" (first {max_dims} of {values.shape[1]} dims)" if values.shape[1] > max_dims else "")
        for title, values, _ in panels
    ]
    fig = make_subplots(
        rows=len(panels),
        cols=1,
        row_heights=heights,
        subplot_titles=titles,
        vertical_spacing=0.25 / len(panels),
    )
    for index, (_, values, rows) in enumerate(panels):
        shown = values[:, :max_dims]
        bound = float(np.abs(shown).max()) or 1.0
        fig.add_heatmap(
            z=shown,
            y=list(rows),
            colorscale="RdBu",
            zmin=-bound,
            zmax=bound,
            showscale=False,
            hovertemplate="%{y}, dim %{x}: %{z:.4f}<extra></extra>",
            row=index + 1,
            col=1,
        )
        fig.update_yaxes(autorange="reversed", row=index + 1, col=1)
    fig.update_layout(
        height=int(60 * len(panels) + 16 * sum(heights)),
        template="plotly_white",
        margin=dict(l=10, r=10, t=40, b=20),
    )
    show(fig, key=key)


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def shown_token(token: str) -> str:
    """A token as printable text, escaped once: a newline is the two characters `\\n`
    (tab `\\t`, carriage return `\\r`, other control characters `\\xNN`); spaces
    are kept. Byte pieces already read `<0xNN>` (`tokens.token_text`)."""
    return "".join(
        _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c)
        for c in token
    )


def quoted_token(token: str) -> str:
    """`shown_token` between single quotes, so leading and trailing spaces are visible:
    `' the'`, `'\\n'` (never the double-escaped `'\\\\n'` of `repr(shown_token(t))`)."""
    return f"'{shown_token(token)}'"


def token_strip(
    tokens: Sequence[str],
    values: Sequence[float] | None = None,
    vmax: float | None = None,
    title: str = "",
) -> None:
    """The tokens as boxes, each shaded by its value (e.g. a loss) with the value in its
    tooltip. Text is escaped: tokens never become markup."""
    values = None if values is None else np.asarray(values, dtype=float)
    top = (
        vmax
        if vmax is not None
        else (float(np.nanmax(values)) if values is not None and len(values) else 1.0)
    )
    spans = []
    for i, token in enumerate(tokens):
        value = None if values is None else values[i]
        shade = (
            0.0
            if value is None or not np.isfinite(value)
            else max(0.0, min(1.0, value / (top or 1.0)))
        )
        tip = f"{i}: {quoted_token(token)}" + (
            "" if value is None or not np.isfinite(value) else f" = {value:.3f}"
        )
        spans.append(
            f'<span title="{html.escape(tip)}" style="display:inline-block;margin:1px;'
            "padding:1px 3px;border:1px solid #ccc;border-radius:3px;font-family:monospace;"
            "white-space:pre;"
            f'background:rgba(220,60,40,{shade:.2f})">{html.escape(shown_token(token))}</span>'
        )
    if title:
        st.caption(title)
    st.markdown(f'<div style="line-height:1.9">{"".join(spans)}</div>', unsafe_allow_html=True)


def predictions_table(
    str_tokens: Sequence[str], top: Sequence[Sequence[TokenScore]]
) -> pd.DataFrame:
    """Position, token, and its top next-token predictions as "'tok' 12.3%"."""
    rows = []
    for pos, (token, scores) in enumerate(zip(str_tokens, top, strict=True)):
        row = {"pos": pos, "token": shown_token(token)}
        row.update(
            {f"#{i + 1}": f"{quoted_token(s.token)} {s.value:.1%}" for i, s in enumerate(scores)}
        )
        rows.append(row)
    return pd.DataFrame(rows)


def token_scores_table(scores: Sequence[TokenScore], value_name: str) -> pd.DataFrame:
    """A table of tokens and their values."""
    return pd.DataFrame(
        {
            "token": [quoted_token(s.token) for s in scores],
            "id": [s.token_id for s in scores],
            value_name: [round(s.value, 4) for s in scores],
        }
    )


def head_from_query(labels: Sequence[str], default: str) -> str:
    """The head named by the URL's `?head=` (e.g. `?head=L1H3`), if it is one of
    `labels`; otherwise an error on the page and `default`."""
    wanted = st.query_params.get("head")
    if wanted is None:
        return default
    if wanted.upper() in labels:
        return wanted.upper()
    st.error(
        f"The link asks for head {wanted!r}, which this model does not have "
        f"({labels[0]} to {labels[-1]}); showing {default}."
    )
    return default
