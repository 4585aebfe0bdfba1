"""The logit lens as a heatmap: layer x position, the lens's top token written in each
cell, coloured by its probability, the entropy, the target's rank or the KL to the
final distribution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from lookingglass.errors import InputError
from lookingglass.plot.figure import Figure, Heatmap, to_numpy, token_labels

Color = Literal["prob", "entropy", "rank", "target_prob", "kl"]
_COLOR = {
    "prob": ("top-1 probability", "blues"),
    "entropy": ("entropy (nats)", "viridis"),
    "rank": ("target rank (log10(rank + 1))", "viridis"),
    "target_prob": ("target probability", "blues"),
    "kl": ("KL(final || layer) (nats)", "viridis"),
}


def logit_lens(
    result: Any,
    tokens: Sequence[str] | None = None,
    *,
    model: Any = None,
    color: Color = "prob",
    batch: int = 0,
    title: str | None = None,
) -> Figure:
    """A logit-lens heatmap from a `LogitLensResult` (`analysis.logit_lens`).

    Args:
        result: the lens result (`labels`, `top_tokens`, `top_probs`, `entropy`,
            `kl_to_final`, optional `target_probs` / `target_ranks`).
        tokens: the input tokens as strings (column labels).
        model: decodes the top tokens to text (with a tokenizer); ids are shown without.
        color: what the colour shows: "prob" (the top token's probability), "entropy",
            "rank" (the target's rank, log scale), "target_prob", or "kl".
        batch: which row of a batched result.
        title: the figure's title.

    Returns:
        A one-panel `Figure` whose `z` is `[layer, pos]` and whose cell text is the top
        token at that layer and position.
    """
    if color not in _COLOR:
        raise InputError(f"color must be one of {list(_COLOR)}, got {color!r}.")
    top_tokens = result.top_tokens[:, batch].cpu().numpy()
    top_probs = to_numpy(result.top_probs[:, batch])
    entropy = to_numpy(result.entropy[:, batch])
    kl = to_numpy(result.kl_to_final[:, batch])
    has_target = result.target_probs is not None
    if color in ("rank", "target_prob") and not has_target:
        raise InputError(f"color={color!r} needs a lens result computed with target_tokens.")
    target_probs = to_numpy(result.target_probs[:, batch]) if has_target else None
    target_ranks = to_numpy(result.target_ranks[:, batch]) if has_target else None
    z = {
        "prob": lambda: top_probs[..., 0],
        "entropy": lambda: entropy,
        "kl": lambda: kl,
        "rank": lambda: np.log10(target_ranks + 1),
        "target_prob": lambda: target_probs,
    }[color]()
    n_layers, n_pos = z.shape
    names = _decode(model, top_tokens)
    text = names[..., 0]
    hover = np.empty(z.shape, dtype=object)
    x_labels = token_labels(list(tokens) if tokens is not None else None, n_pos)
    for l in range(n_layers):
        for p in range(n_pos):
            tops = ", ".join(
                f"{names[l, p, k]} {top_probs[l, p, k]:.1%}" for k in range(min(3, names.shape[-1]))
            )
            lines = [
                f"{result.labels[l]} @ {x_labels[p]}",
                f"top: {tops}",
                f"entropy {entropy[l, p]:.3f}",
                f"KL to final {kl[l, p]:.3f}",
            ]
            if has_target:
                lines.append(f"target p={target_probs[l, p]:.3g} rank {int(target_ranks[l, p])}")
            hover[l, p] = "<br>".join(lines)
    label, scale = _COLOR[color]
    zmin, zmax = (0.0, 1.0) if color in ("prob", "target_prob") else (None, None)
    panel = Heatmap(
        z,
        x_labels,
        list(result.labels),
        text=text,
        hover=hover,
        colorscale=scale,
        zmin=zmin,
        zmax=zmax,
        title=f"colour: {label}",
        x_title="position",
        y_title="layer",
        colorbar_title=label,
    )
    return Figure(
        [panel],
        title=title or "Logit lens",
        cols=1,
        panel_size=(max(5.0, 0.7 * n_pos + 2), max(3.0, 0.35 * n_layers + 1.5)),
    )


def _decode(model: Any, ids: np.ndarray) -> np.ndarray:
    out = np.empty(ids.shape, dtype=object)
    has_tokenizer = getattr(model, "tokenizer", None) is not None
    for index, token in np.ndenumerate(ids):
        out[index] = (
            repr(model.to_single_str_token(int(token)))[1:-1][:10] if has_tokenizer else str(token)
        )
    return out
