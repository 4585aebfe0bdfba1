"""Loss per token as coloured text: each token on a background coloured by the loss of
predicting it (HTML without scripts, or an image)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

from lookingglass.errors import InputError
from lookingglass.plot.figure import Figure, TokenText, to_numpy


def loss_per_token(
    tokens: Sequence[str], losses: Any, *, title: str = "Loss per token", zmax: float | None = None
) -> Figure:
    """Colour each token by the loss of predicting it.

    Args:
        tokens: the tokens as strings (`model.to_str_tokens(text)`), n of them.
        losses: `[n - 1]` next-token losses (`model(tokens, return_type="loss",
            loss_per_token=True)[0]`: entry i is the loss of predicting token i + 1; the
            first token gets no colour) or `[n]` values aligned with the tokens.
        title: the figure's title.
        zmax: the loss at full colour (default: the largest loss).
    """
    values = to_numpy(losses).reshape(-1)
    if len(values) == len(tokens) - 1:
        values = np.concatenate([[np.nan], values])
    if len(values) != len(tokens):
        raise InputError(f"{len(values)} losses for {len(tokens)} tokens; give n - 1 or n values.")
    panel = TokenText(
        list(tokens), values, colorscale="reds", zmin=0.0, zmax=zmax, value_name="loss (nats)"
    )
    # About 110 monospace characters fit a 9-inch line; a line is about 0.25 inch high.
    n_lines = sum(len(t) + 1 for t in tokens) // 110 + 1 + sum(t.count("\n") for t in tokens)
    return Figure([panel], title=title, cols=1, panel_size=(9.0, 0.25 * n_lines + 0.6))


def token_text_html(fig: Figure) -> str:
    """The HTML page of a figure of `TokenText` panels: a span per token with its value
    as a tooltip, and a legend."""
    import matplotlib
    import matplotlib.colors as mcolors

    sections = []
    for panel in fig.panels:
        values = np.asarray(panel.values, dtype=float)
        finite = values[np.isfinite(values)]
        vmin = (
            panel.zmin if panel.zmin is not None else (float(finite.min()) if finite.size else 0.0)
        )
        vmax = (
            panel.zmax if panel.zmax is not None else (float(finite.max()) if finite.size else 1.0)
        )
        norm = mcolors.Normalize(vmin, vmax if vmax > vmin else vmin + 1)
        cmap = matplotlib.colormaps[
            {"reds": "Reds", "blues": "Blues"}.get(panel.colorscale, "Reds")
        ]
        spans = []
        for i, (token, value) in enumerate(zip(panel.tokens, values, strict=True)):
            color = mcolors.to_hex(cmap(norm(value))) if np.isfinite(value) else "#ffffff"
            tip = (
                f"{i}: {token!r} {panel.value_name} {value:.4g}"
                if np.isfinite(value)
                else f"{i}: {token!r}"
            )
            shown = html.escape(token).replace("\n", "&#8629;<br>")
            spans.append(
                f'<span class="tok" style="background:{color}" title="{html.escape(tip)}" '
                f'data-value="{value:.6g}">{shown}</span>'
            )
        legend = (
            f'<div class="legend">{html.escape(panel.value_name)}: white = {vmin:.3g}, '
            f"darkest = {vmax:.3g}; hover a token for its value</div>"
        )
        heading = f"<h3>{html.escape(panel.title)}</h3>" if panel.title else ""
        sections.append(f'{heading}{legend}<div class="text">{"".join(spans)}</div>')
    style = (
        "body{font-family:sans-serif;margin:2em} .text{font-family:monospace;white-space:pre-wrap;"
        "line-height:1.9} .tok{padding:1px 0;border-radius:2px} .legend{color:#555;margin:.5em 0}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(fig.title)}</title>'
        f"<style>{style}</style></head><body><h2>{html.escape(fig.title)}</h2>"
        f"{''.join(sections)}</body></html>"
    )
