"""Token embedding, learned positional embedding, and unembedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.model.norm import make_norm


class Embed(nn.Module):
    """Token ids to vectors: `W_E [d_vocab, d_model]`, row `t` is token `t`'s embedding.
    With `post_embedding_ln` (BLOOM) a LayerNorm `embed.ln` follows the lookup."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
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

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(self, positions: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return F.embedding(positions, self.W_pos)


class Unembed(nn.Module):
    """Final residual to logits: `logits = resid @ W_U + b_U`, `W_U [d_model, d_vocab_out]`.
    With `output_logits_soft_cap = c > 0` (Gemma 2), logits become `c * tanh(logits / c)`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab_out, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))
        self.soft_cap = cfg.output_logits_soft_cap

    def forward(
        self, resid: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab_out"]:
        # F.linear on the transposed view runs one GEMM without copying W_U.
        logits = F.linear(resid, self.W_U.T, self.b_U)
        if self.soft_cap > 0:
            logits = self.soft_cap * torch.tanh(logits / self.soft_cap)
        return logits
