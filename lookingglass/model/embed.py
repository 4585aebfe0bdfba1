"""Token embedding, learned positional embedding, and unembedding.

Built as in TransformerLens: `Embed(cfg)`, `PosEmbed(cfg)`, `Unembed(cfg)`, with `cfg` a
`ModelConfig` or a dict of its fields.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.layer_config import as_config
from lookingglass.model.norm import make_norm


class Embed(nn.Module):
    """Token ids to vectors: `W_E [d_vocab, d_model]`, row `t` is token `t`'s embedding.
    With `post_embedding_ln` (BLOOM) a LayerNorm `embed.ln` follows the lookup."""

    def __init__(self, cfg: ModelConfig | dict) -> None:
        super().__init__()
        self.cfg = cfg = as_config(cfg)
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))
        self.ln = (
            make_norm(cfg.replace(normalization_type="LN"))
            if cfg.post_embedding_ln
            else nn.Identity()
        )

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.ln(F.embedding(tokens, self.W_E))


class PosEmbed(nn.Module):
    """Learned absolute positions: `W_pos [n_ctx, d_model]`, row `p` is added at position p."""

    def __init__(self, cfg: ModelConfig | dict) -> None:
        super().__init__()
        self.cfg = cfg = as_config(cfg)
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        past_kv_pos_offset: int = 0,
        attention_mask: Int[Tensor, "batch offset_pos"] | None = None,
        positions: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """The position embeddings of `tokens` (TransformerLens's signature): positions
        `past_kv_pos_offset, ...`, or with `attention_mask` (1 real, 0 padding, over cached
        and new positions) counting real tokens only, zero at padding. `positions` given
        (as the model does) are used as they are."""
        if positions is not None:
            return F.embedding(positions, self.W_pos)
        batch, length = tokens.shape[:2]
        if attention_mask is None:
            return (
                self.W_pos[past_kv_pos_offset : past_kv_pos_offset + length]
                .expand(batch, -1, -1)
                .clone()
            )
        new = attention_mask[:, past_kv_pos_offset : past_kv_pos_offset + length].bool()
        counted = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        counted = counted[:, past_kv_pos_offset : past_kv_pos_offset + length]
        return F.embedding(counted, self.W_pos) * new[..., None].to(self.W_pos.dtype)


class Unembed(nn.Module):
    """Final residual to logits: `logits = resid @ W_U + b_U`, `W_U [d_model, d_vocab_out]`.
    With `output_logits_soft_cap = c > 0` (Gemma 2), logits become `c * tanh(logits / c)`.

    Hooks as TransformerLens 3.9: `hook_in` [batch pos d_model] (the final residual after
    `ln_final`) and `hook_out` [batch pos d_vocab_out] (before any soft-capping)."""

    def __init__(self, cfg: ModelConfig | dict) -> None:
        super().__init__()
        self.cfg = cfg = as_config(cfg)
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab_out, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))
        self.soft_cap = cfg.output_logits_soft_cap
        self.hook_in = HookPoint()  # [batch, pos, d_model]
        self.hook_out = HookPoint()  # [batch, pos, d_vocab_out]

    def forward(
        self, resid: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab_out"]:
        # F.linear on the transposed view runs one GEMM without copying W_U.
        logits = self.hook_out(F.linear(self.hook_in(resid), self.W_U.T, self.b_U))
        if self.soft_cap > 0:
            logits = self.soft_cap * torch.tanh(logits / self.soft_cap)
        return logits
