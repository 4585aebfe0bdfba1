"""A feature's views as `lookingglass.plot` figures: top contexts (tokens coloured by
the feature's activation), the activation histogram, and the top/bottom logits."""

from __future__ import annotations

from typing import Any

import numpy as np

from lookingglass.plot.figure import Bars, Figure, TokenText
from lookingglass.sae.features.collect import Context, FeatureActivations, feature_logits


def _strs(model: Any, ids: list[int]) -> list[str]:
    return [model.to_single_str_token(i) for i in ids]


def context_panels(model: Any, contexts: list[Context], title: str, zmax: float) -> list[TokenText]:
    """One coloured run of tokens per context; the token that fired is marked ▸."""
    panels = []
    for c in contexts:
        tokens = _strs(model, c.token_ids)
        tokens[c.target] = "▸" + tokens[c.target]
        panels.append(
            TokenText(
                tokens,
                np.array(c.values),
                zmin=0.0,
                zmax=zmax,
                per_row=len(tokens),
                title=f"{title}row {c.row} pos {c.pos}: {c.value:.2f}",
                value_name="act",
            )
        )
    return panels


def feature_contexts(model: Any, acts: FeatureActivations, f: int, n: int = 20) -> Figure:
    """Feature `f`'s top `n` activating contexts, then its quantile (interval) groups."""
    zmax = acts.max_activation(f) or 1.0
    panels = context_panels(model, acts.top_contexts(f, n), "top: ", zmax)
    for lo, hi, frac, contexts in acts.quantile_contexts(f):
        panels += context_panels(model, contexts, f"({lo:.2f}, {hi:.2f}] {frac:.0%}: ", zmax)
    return Figure(
        panels, title=f"Feature {f}: top and interval contexts", cols=1, panel_size=(9.0, 0.6)
    )


def feature_histogram(acts: FeatureActivations, f: int, bins: int = 40) -> Figure:
    """Histogram of feature `f`'s non-zero activations, with its firing frequency."""
    centres, counts = acts.histogram(f, bins)
    density = float(acts.density()[f])
    bars = Bars(
        [f"{c:.2f}" for c in centres],
        counts.astype(float),
        title=f"Feature {f} activations (fires on {density:.3%} of tokens)",
        x_title="activation",
        y_title="tokens",
    )
    return Figure([bars], title=f"Feature {f}: activation density")


def feature_logit_bars(model: Any, sae: Any, f: int, k: int = 10) -> Figure:
    """The tokens feature `f` promotes and suppresses most (W_dec[f] @ W_U)."""
    pos, neg = feature_logits(model, sae, f, k)
    return Figure(
        [
            Bars(
                [repr(t) for t, _ in pos],
                np.array([v for _, v in pos]),
                horizontal=True,
                title="top logits",
                x_title="W_dec @ W_U",
            ),
            Bars(
                [repr(t) for t, _ in neg],
                np.array([v for _, v in neg]),
                horizontal=True,
                title="bottom logits",
                x_title="W_dec @ W_U",
            ),
        ],
        title=f"Feature {f}: direct logit effect",
        cols=2,
    )
