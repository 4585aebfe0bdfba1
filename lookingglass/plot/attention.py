"""Attention patterns as a grid of heatmaps: one per head, rows = destination (query)
position, columns = source (key) position, future positions masked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lookingglass.errors import InputError
from lookingglass.plot.figure import Figure, Heatmap, to_numpy, token_labels


def attention_patterns(
    pattern: Any,
    tokens: Sequence[str] | None = None,
    *,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    batch: int = 0,
    cols: int = 4,
    title: str | None = None,
) -> Figure:
    """Heatmaps of attention patterns, one panel per head.

    Args:
        pattern: `[head, dest, src]` or `[batch, head, dest, src]` (a tensor or array, e.g.
            `cache["pattern", 0]`), or an `ActivationCache` together with `layer`.
        tokens: the tokens as strings, to label the axes (`model.to_str_tokens(...)`).
        layer: the layer to take from a cache (also used in the title).
        heads: which heads to draw (default: all).
        batch: which row of a batched pattern to draw.
        cols: panels per row.
        title: the figure's title.

    Returns:
        A `Figure`; each panel's `z` is the head's pattern with the cells above the causal
        diagonal (source after destination) set to NaN, hover text naming both tokens.
    """
    if hasattr(pattern, "cache_dict"):
        if layer is None:
            raise InputError("Drawing attention from a cache needs layer=.")
        pattern = pattern["pattern", layer]
    values = to_numpy(pattern)
    if values.ndim == 4:
        values = values[batch]
    if values.ndim != 3:
        raise InputError(
            f"pattern must be [head, dest, src] or [batch, head, dest, src], got {values.shape}."
        )
    n_heads, n_dest, n_src = values.shape
    heads = list(range(n_heads)) if heads is None else list(heads)
    if tokens is not None and len(tokens) != n_src:
        raise InputError(f"{len(tokens)} tokens given for {n_src} source positions.")
    src_labels = token_labels(list(tokens) if tokens is not None else None, n_src)
    dest_labels = src_labels[n_src - n_dest :]
    # Query i sits at key position i + (n_src - n_dest) (a KV-cached prefix shifts it).
    future = np.arange(n_src)[None, :] > (np.arange(n_dest)[:, None] + n_src - n_dest)
    panels = []
    for head in heads:
        z = np.where(future, np.nan, values[head])
        hover = np.empty(z.shape, dtype=object)
        for d in range(n_dest):
            for s in range(n_src):
                hover[d, s] = (
                    f"dest {dest_labels[d]}<br>src {src_labels[s]}<br>attention {z[d, s]:.4f}"
                )
        name = f"L{layer}H{head}" if layer is not None else f"head {head}"
        panels.append(
            Heatmap(
                z,
                src_labels,
                dest_labels,
                hover=hover,
                colorscale="blues",
                zmin=0.0,
                zmax=1.0,
                title=name,
                x_title="source",
                y_title="destination",
                colorbar_title="attention",
            )
        )
    default = "Attention patterns" + (f", layer {layer}" if layer is not None else "")
    return Figure(
        panels,
        title=title or default,
        cols=min(cols, len(panels)),
        panel_size=(max(3.0, 0.25 * n_src + 1.5), max(2.6, 0.22 * n_dest + 1.2)),
    )
