"""The Schematics page's numbers: the transformer taken apart with the model's own values.

`embedding_view`: each token's embedding row and its position's embedding row, and
their sum (the residual stream entering layer 0). `head_steps`: one attention head at
one query position, step by step (normalized input x, q, k, the product of q and the
winning key, scores, pattern, v, z, the head's write to the residual stream), each step
recomputed from the previous one with the weights and checked against the cached
activation. `residual_sum`: the residual
stream at one position as the sum of what every component wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lookingglass.errors import InputError
from lookingglass.explorer.compute import check_head, prompt_tokens, token_str


def _np(tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def _check_position(n: int, position: int) -> None:
    if not 0 <= position < n:
        raise InputError(
            f"Position {position} is out of range: the prompt has {n} tokens (0 to {n - 1})."
        )


@dataclass
class EmbeddingView:
    """Token and positional embeddings of a prompt, `[pos, d_model]` each."""

    str_tokens: list[str]
    token_ids: list[int]
    token_embed: np.ndarray  # W_E[token]
    pos_embed: np.ndarray | None  # W_pos[position]; None for rotary / ALiBi models
    resid_pre0: np.ndarray  # the residual stream entering layer 0 (cached)
    max_abs_diff: float  # |token_embed + pos_embed - resid_pre0|, a check


@torch.no_grad()
def embedding_view(model, prompt: str) -> EmbeddingView:
    """The embedding rows of each token and position, and their sum (checked against
    `blocks.0.hook_resid_pre`)."""
    tokens = prompt_tokens(model, prompt)
    _, cache = model.run_with_cache(
        tokens,
        names_filter=lambda n: n in ("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"),
    )
    ids = tokens[0]
    token_embed = model.W_E[ids]
    has_pos = "hook_pos_embed" in cache
    pos_embed = model.W_pos[: len(ids)] if has_pos else None
    total = token_embed + (pos_embed if has_pos else 0)
    resid = cache["blocks.0.hook_resid_pre"][0]
    return EmbeddingView(
        str_tokens=model.to_str_tokens(ids),
        token_ids=ids.tolist(),
        token_embed=_np(token_embed),
        pos_embed=_np(pos_embed) if has_pos else None,
        resid_pre0=_np(resid),
        max_abs_diff=float((total - resid).abs().max()),
    )


@dataclass
class HeadSteps:
    """One head at one query position. Shapes: `x` `[pos, d_model]` (the normalized
    input, keys up to the query), `q` `[d_head]`, `k`/`v` `[pos, d_head]`,
    `scores`/`pattern` `[pos]`, `z` `[d_head]`, `result` `[d_model]`. `q_scored` and
    `k_scored` are the vectors whose dot product is the score (after rotary, when the
    model rotates q and k); `winner` is the key the head attends to most and `product`
    `[d_head]` is `q_scored * k_scored[winner]`, whose sum over dims divided by
    `attn_scale` is the winning score. `checks` maps each recomputed step to its largest
    difference from the cached activation; a step the weights alone cannot recompute
    (normalized q/k, ALiBi, soft-capping, ...) is skipped and `notes` says why."""

    head: str
    position: int
    str_tokens: list[str]
    attn_scale: float
    x: np.ndarray
    q: np.ndarray
    k: np.ndarray
    q_scored: np.ndarray
    k_scored: np.ndarray
    scores: np.ndarray
    pattern: np.ndarray
    winner: int
    product: np.ndarray
    v: np.ndarray
    z: np.ndarray
    result: np.ndarray
    checks: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _extra_steps(model) -> tuple[list[str], list[str]]:
    """What this model's attention does besides `softmax(q k^T / scale) v`: steps the
    schematic draws (rotary, shared keys), and steps it cannot recompute."""
    cfg = model.cfg
    drawn = {
        "rotary positions rotate q and k before the score": (
            cfg.positional_embedding_type == "rotary"
        ),
        "keys and values are shared between groups of heads (GQA)": (
            cfg.n_key_value_heads not in (None, cfg.n_heads)
        ),
    }
    skipped = {
        "ALiBi adds a bias to the scores": cfg.positional_embedding_type == "alibi",
        "q and k are normalized": cfg.use_qk_norm,
        "keys are smeared with the previous key": cfg.smear_keys,
        "scores are soft-capped": cfg.attn_scores_soft_cap > 0,
        "the attention score is not a dot product": cfg.attention_score != "dot",
        "attention is windowed": cfg.window_size is not None,
    }
    return (
        [reason for reason, applies in drawn.items() if applies],
        [reason for reason, applies in skipped.items() if applies],
    )


def _max_diff(a, b) -> float:
    return float((a - b).abs().max())


@torch.no_grad()
def head_steps(model, prompt: str, layer: int, head: int, position: int) -> HeadSteps:
    """Head `head` of layer `layer` at query `position`, step by step from the cache."""
    check_head(model, layer, head)
    tokens = prompt_tokens(model, prompt)
    _check_position(tokens.shape[1], position)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.startswith(f"blocks.{layer}."))
    key = f"blocks.{layer}.ln1.hook_normalized"
    keys = slice(0, position + 1)
    x = (cache[key] if key in cache else cache["resid_pre", layer])[0, keys]
    kv_head = head * cache["k", layer].shape[2] // model.cfg.n_heads
    q, k, v = (
        cache["q", layer][0, position, head],
        cache["k", layer][0, keys, kv_head],
        cache["v", layer][0, keys, kv_head],
    )
    rotated = f"blocks.{layer}.attn.hook_rot_q" in cache
    q_scored = cache["rot_q", layer][0, position, head] if rotated else q
    k_scored = cache["rot_k", layer][0, keys, kv_head] if rotated else k
    scores = cache["attn_scores", layer][0, head, position, keys]
    pattern = cache["pattern", layer][0, head, position, keys]
    z = cache["z", layer][0, position, head]
    result = z @ model.W_O[layer, head]
    scale = float(model.blocks[layer].attn.attn_scale)
    winner = int(pattern.argmax())
    drawn, skipped = _extra_steps(model)
    W_Q, W_K, W_V = (w[layer, head] for w in (model.W_Q, model.W_K, model.W_V))
    b_Q, b_K, b_V = (b[layer, head] for b in (model.b_Q, model.b_K, model.b_V))
    checks = {}
    if not model.cfg.use_qk_norm:
        checks["q = x W_Q + b_Q"] = _max_diff(x[-1] @ W_Q + b_Q, q)
        checks["k = x W_K + b_K"] = _max_diff(x @ W_K + b_K, k)
    checks["v = x W_V + b_V"] = _max_diff(x @ W_V + b_V, v)
    if not skipped:
        checks["scores = q k / scale"] = _max_diff(k_scored @ q_scored / scale, scores)
        checks["pattern = softmax(scores)"] = _max_diff(scores.softmax(-1), pattern)
    checks["z = pattern v"] = _max_diff(pattern @ v, z)
    return HeadSteps(
        head=f"L{layer}H{head}",
        position=position,
        str_tokens=model.to_str_tokens(tokens[0]),
        attn_scale=scale,
        x=_np(x),
        q=_np(q),
        k=_np(k),
        q_scored=_np(q_scored),
        k_scored=_np(k_scored),
        scores=_np(scores),
        pattern=_np(pattern),
        winner=winner,
        product=_np(q_scored * k_scored[winner]),
        v=_np(v),
        z=_np(z),
        result=_np(result),
        checks=checks,
        notes=drawn + [f"{reason} (that step is not recomputed here)" for reason in skipped],
    )


@dataclass
class ResidualSum:
    """The final residual stream at one position as a sum of component writes."""

    position: int
    labels: list[str]  # "embed", "pos_embed", "0_attn_out", ("0_mlp_out",) ...
    writes: np.ndarray  # [component, d_model]
    norms: np.ndarray  # [component]
    predicted: str  # the model's top next token at that position
    attributions: np.ndarray  # [component] direct logit attribution toward it
    max_abs_diff: float  # |sum of writes - final residual stream|, a check


@torch.no_grad()
def residual_sum(model, prompt: str, position: int) -> ResidualSum:
    """`decompose_resid` at the unembedding's input, checked against the cached final
    residual stream, with each component's direct logit attribution toward the top
    prediction."""
    tokens = prompt_tokens(model, prompt)
    _check_position(tokens.shape[1], position)
    logits, cache = model.run_with_cache(tokens)
    stack, labels = cache.decompose_resid(layer=-1, pos_slice=position, return_labels=True)
    final = cache["resid_post", model.cfg.n_layers - 1][0, position]
    predicted = int(logits[0, position].argmax())
    attributions = cache.logit_attrs(stack, predicted, pos_slice=position)[:, 0]
    writes = stack[:, 0]
    return ResidualSum(
        position=position,
        labels=labels,
        writes=_np(writes),
        norms=_np(writes.norm(dim=-1)),
        predicted=token_str(model, predicted),
        attributions=_np(attributions),
        max_abs_diff=float((writes.sum(0) - final).abs().max()),
    )
