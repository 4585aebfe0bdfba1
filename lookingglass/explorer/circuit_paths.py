"""The Circuits page's numbers beyond the direct path: composition scores of the chosen
head with every earlier and later head beside their random baseline, and its QK and OV
circuits read through an earlier head (K-composition: keys that head moved; V-composition:
the chosen head passing on what that head wrote), with the plain or the effective
embedding. No Streamlit here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from lookingglass.analysis.composition import (
    MODES,
    effective_embedding,
    head_composition,
    random_composition_baseline,
)
from lookingglass.errors import InputError
from lookingglass.explorer import compute

EMBEDDINGS = {
    "W_E": "the token embedding W_E",
    "mlp0": "the effective embedding W_E + MLP0(W_E)",
    "block0": "the effective embedding: block 0 on each token alone (attending to itself)",
}


@dataclass
class CompositionView:
    """One head's Q/K/V composition scores with earlier heads (`earlier[mode]`,
    `[layer, n_heads]`) and later heads (`later[mode]`, `[n_layers - layer - 1, n_heads]`),
    and the random-weights baseline (mean, std) per mode."""

    head: str
    layer: int
    earlier: dict[str, np.ndarray]
    later: dict[str, np.ndarray]
    baseline_mean: dict[str, float]
    baseline_std: dict[str, float]


@torch.no_grad()
def composition_view(model, layer: int, head: int) -> CompositionView:
    """`analysis.composition.head_composition` and its baseline, as arrays."""
    compute.check_head(model, layer, head)
    scores = head_composition(model, layer, head)
    baseline = random_composition_baseline(model)
    return CompositionView(
        f"L{layer}H{head}",
        layer,
        {m: scores.from_earlier[m].float().cpu().numpy() for m in MODES},
        {m: scores.into_later[m].float().cpu().numpy() for m in MODES},
        baseline.mean,
        baseline.std,
    )


def embedding(model, name: str, cache: dict | None = None) -> Float[Tensor, "d_vocab d_model"]:
    """The embedding the circuits read: "W_E", or an effective embedding ("mlp0",
    "block0"; computed once into `cache` when given)."""
    if name not in EMBEDDINGS:
        raise InputError(f"Embedding must be one of {list(EMBEDDINGS)}, got {name!r}.")
    if name == "W_E":
        return model.W_E
    if cache is not None and name in cache:
        return cache[name]
    value = effective_embedding(model, name)
    if cache is not None:
        cache[name] = value
    return value


@dataclass
class PathView:
    """A head's QK row for one query token and OV row for one source token, read
    directly or through an earlier head."""

    head: str
    through: str | None  # the earlier head, or None: the direct path
    embedding: str
    query: str
    top_keys: list[compute.TokenScore]
    query_rank: int  # rank of the query token among the keys (0 = scored highest)
    source: str
    boosted: list[compute.TokenScore]
    suppressed: list[compute.TokenScore]
    source_logit: float
    source_rank: int  # rank of the source token among the outputs (0 = raised most)


@torch.no_grad()
def path_view(
    model,
    layer: int,
    head: int,
    query: str | int,
    source: str | int,
    through: str | None = None,
    embed: Float[Tensor, "d_vocab d_model"] | None = None,
    embedding_name: str = "W_E",
    k: int = 10,
) -> PathView:
    """QK: `e_q W_Q W_K^T E^T` (direct) or `e_q W_Q W_K^T (E W_OV^A)^T` through earlier
    head A (K-composition: the key position holds what A moved there, e.g. the previous
    token for a previous-token head). OV: `e_s W_OV W_U` (direct) or `e_s W_OV^A W_OV W_U`
    (V-composition: this head reads what A wrote). `embed` is E (default W_E); the
    query side and the source side read it too. No positions, no norms (folded)."""
    compute.check_head(model, layer, head)
    E = model.W_E if embed is None else embed
    query_id, source_id = compute.single_token(model, query), compute.single_token(model, source)
    keys, sources_ov = E, E[source_id : source_id + 1]
    W_V, W_O = model.W_V, model.W_O  # each a stacked copy: read once
    if through is not None:
        a_layer, a_head = compute.parse_head(model, through)
        if a_layer >= layer:
            raise InputError(
                f"{through} is not in an earlier layer than L{layer}H{head}: composition "
                "runs from earlier heads to later ones."
            )
        keys = E @ W_V[a_layer, a_head] @ W_O[a_layer, a_head]
        sources_ov = sources_ov @ W_V[a_layer, a_head] @ W_O[a_layer, a_head]
    qk_row = ((E[query_id] @ model.W_Q[layer, head]) @ (keys @ model.W_K[layer, head]).T).float()
    ov_row = (sources_ov @ W_V[layer, head] @ W_O[layer, head] @ model.W_U)[0].float()
    k = min(k, ov_row.numel())
    return PathView(
        head=f"L{layer}H{head}",
        through=through,
        embedding=embedding_name,
        query=compute.token_str(model, query_id),
        top_keys=compute._token_scores(model, qk_row, qk_row.topk(k).indices),
        query_rank=int((qk_row > qk_row[query_id]).sum()),
        source=compute.token_str(model, source_id),
        boosted=compute._token_scores(model, ov_row, ov_row.topk(k).indices),
        suppressed=compute._token_scores(model, ov_row, ov_row.topk(k, largest=False).indices),
        source_logit=float(ov_row[source_id]),
        source_rank=int((ov_row > ov_row[source_id]).sum()),
    )
