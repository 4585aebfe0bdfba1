"""Multi-head causal self-attention, the readable way, with a fused fast path.

    q, k, v  = input @ W_Q + b_Q, ...                 [batch pos head_index d_head]
    scores   = q . k / attn_scale, causal-masked      [batch head_index query_pos key_pos]
    pattern  = softmax(scores)
    z        = pattern @ v                            [batch pos head_index d_head]
    out      = sum_h z_h @ W_O[h] + b_O               [batch pos d_model]

When nobody hooks `hook_attn_scores` or `hook_pattern`, `scaled_dot_product_attention`
computes z without materializing the pattern (same numbers within float tolerance).
`W_Q/W_K/W_V [n_heads, d_model, d_head]` are stored as head-major views of a
`[d_model, n_heads, d_head]` buffer so each projection is one GEMM with no copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.key_mixing import make_key_mixer


def head_major_parameter(d_model: int, n_heads: int, d_head: int, dtype: torch.dtype) -> nn.Parameter:
    """A `[n_heads, d_model, d_head]` parameter laid out as `[d_model, n_heads, d_head]`."""
    return nn.Parameter(torch.zeros(d_model, n_heads, d_head, dtype=dtype).permute(1, 0, 2))


def as_head_major_layout(weight: Tensor) -> Tensor:
    """The same values as `weight [n_heads, d_model, d_head]`, in the layout above."""
    if weight.permute(1, 0, 2).is_contiguous():
        return weight
    return weight.permute(1, 0, 2).contiguous().permute(1, 0, 2)


class Attention(nn.Module):
    """Causal multi-head attention with TransformerLens's hook points and weight names."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_heads, self.d_head, self.d_model = cfg.n_heads, cfg.d_head, cfg.d_model
        self.attn_scale = cfg.attn_scale
        shape = (cfg.d_model, cfg.n_heads, cfg.d_head)
        self.W_Q = head_major_parameter(*shape, cfg.dtype)
        self.W_K = head_major_parameter(*shape, cfg.dtype)
        self.W_V = head_major_parameter(*shape, cfg.dtype)
        self.W_O = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, cfg.d_model, dtype=cfg.dtype))
        self.b_Q = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, dtype=cfg.dtype))
        self.b_K = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, dtype=cfg.dtype))
        self.b_V = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.key_mixer = make_key_mixer(cfg)
        self.hook_q = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head_index, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head_index, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head_index, d_head]
        self.set_hook_options(cfg)

    def set_hook_options(self, cfg: ModelConfig) -> None:
        """Build the optional parts `use_attn_result` / `use_split_qkv_input` ask for."""
        self._project = _project_per_head if cfg.use_split_qkv_input else _project_shared
        if cfg.use_attn_result:
            self.hook_result = HookPoint()  # [batch, pos, head_index, d_model]
            self._output = self._output_per_head
        else:
            self.__dict__.pop("hook_result", None)
            self._modules.pop("hook_result", None)
            self._output = self._output_fused

    def forward(
        self,
        query_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        key_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        value_input: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head_index d_model"],
        mask: Bool[Tensor, "batch 1 query_pos key_pos"] | None = None,
        kv_cache_entry=None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """Attend. `mask` is True where a query may attend to a key; None means plain
        causal. `kv_cache_entry` (generation) supplies and stores earlier keys/values."""
        q = self.hook_q(self._project(query_input, self.W_Q, self.b_Q))
        k = self.hook_k(self._project(key_input, self.W_K, self.b_K))
        v = self.hook_v(self._project(value_input, self.W_V, self.b_V))
        if kv_cache_entry is not None:
            k, v = kv_cache_entry.append(k, v)
        k = self.key_mixer(k)
        if self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks():
            z = self._attend_explicit(q, k, v, mask)
        else:
            z = self._attend_fused(q, k, v, mask)
        return self._output(self.hook_z(z))

    def _attend_explicit(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / self.attn_scale
        if mask is None:
            mask = causal_mask(q.shape[1], k.shape[1], q.device)
        scores = self.hook_attn_scores(scores.masked_fill(~mask, float("-inf")))
        # Softmax in fp32 (as Hugging Face does for half precision).
        pattern = self.hook_pattern(scores.float().softmax(dim=-1).to(q.dtype))
        return torch.einsum("bhqk,bkhe->bqhe", pattern, v)

    def _attend_fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        is_causal = mask is None and q.shape[1] == k.shape[1] and q.shape[1] > 1
        if mask is None and not is_causal:
            mask = causal_mask(q.shape[1], k.shape[1], q.device)
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            attn_mask=mask, is_causal=is_causal, scale=1.0 / self.attn_scale,
        )
        return z.transpose(1, 2)

    def _output_fused(self, z: Float[Tensor, "batch pos head_index d_head"]) -> Tensor:
        flat_z = z.reshape(*z.shape[:2], self.n_heads * self.d_head)
        return F.linear(flat_z, self.W_O.reshape(-1, self.d_model).T, self.b_O)

    def _output_per_head(self, z: Float[Tensor, "batch pos head_index d_head"]) -> Tensor:
        result = self.hook_result(torch.einsum("bqhe,hed->bqhd", z, self.W_O))
        return result.sum(dim=-2) + self.b_O


def _project_shared(x: Float[Tensor, "batch pos d_model"], W: Tensor, b: Tensor) -> Tensor:
    """All heads read the same input: one GEMM over the flattened head-major weight."""
    d_model, n_heads, d_head = W.shape[1], W.shape[0], W.shape[2]
    flat_W = W.permute(1, 0, 2).reshape(d_model, n_heads * d_head)
    out = F.linear(x, flat_W.T, b.reshape(-1))
    return out.view(*x.shape[:2], n_heads, d_head)


def _project_per_head(x: Float[Tensor, "batch pos head_index d_model"], W: Tensor, b: Tensor) -> Tensor:
    """Each head reads its own copy of the input (`use_split_qkv_input`)."""
    return torch.einsum("bphd,hde->bphe", x, W) + b


def causal_mask(q_len: int, k_len: int, device: torch.device) -> Bool[Tensor, "1 1 q k"]:
    """True where query i (the last `q_len` of `k_len` positions) may attend to key j."""
    offset = k_len - q_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(offset)[None, None]
