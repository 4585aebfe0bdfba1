"""TransformerLens 3.9's `utilities.attention`: the per-head linear maps attention uses
(`simple_attn_linear`, `complex_attn_linear`) and `clamp_qkv`. `lookingglass.model.
attention` computes its queries, keys and values with them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def simple_attn_linear(
    input: Float[Tensor, "batch pos d_model"],
    w: Float[Tensor, "head_index d_model d_head"],
    b: Float[Tensor, "head_index d_head"],
) -> Float[Tensor, "batch pos head_index d_head"]:
    """Every head reads the same `input`: `input @ w[h] + b[h]` for each head `h`, as one
    GEMM over the flattened head-major weight (weights follow the input's device)."""
    w, b = w.to(input.device), b.to(input.device)
    n_heads, d_model, d_head = w.shape
    flat_w = w.permute(1, 0, 2).reshape(d_model, n_heads * d_head)
    out = F.linear(input, flat_w.T, b.reshape(-1))
    return out.view(input.shape[0], input.shape[1], n_heads, d_head)


def complex_attn_linear(
    input: Float[Tensor, "batch pos head_index d_model"],
    w: Float[Tensor, "head_index d_model d_head"],
    b: Float[Tensor, "head_index d_head"],
) -> Float[Tensor, "batch pos head_index d_head"]:
    """Each head reads its own copy of the input: `input[:, :, h] @ w[h] + b[h]`."""
    return torch.einsum("bphd,hde->bphe", input, w) + b


def clamp_qkv(q: Tensor, k: Tensor, v: Tensor, clip: float) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v clamped to [-clip, clip], out of place (OLMo's `clip_qkv`)."""
    return q.clamp(min=-clip, max=clip), k.clamp(min=-clip, max=clip), v.clamp(min=-clip, max=clip)
