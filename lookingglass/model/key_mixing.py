"""Key mixing along the sequence: smeared keys and correlation attention.

Both variants replace each head's key at position j by a learned causal mix of the keys
at j, j-1, ..., before scores are computed; plain attention uses the keys as they are.

* **Smeared keys** (Olsson et al. 2022, "In-Context Learning and Induction Heads"):
  `k'_j = sigmoid(alpha_h) * k_j + (1 - sigmoid(alpha_h)) * k_{j-1}` with one learned
  `alpha_h` per head and `k_{-1} = 0`. It lets a one-layer model form induction heads.
* **Correlation attention** (after the idea of Arrakis's "Leviathan", not its code): the
  score of query i and key j is the cross-correlation of the query with the key
  *signal* over lags 0..L-1, `score_ij = sum_tau w_{h,tau} <q_i, k_{j-tau}> /
  attn_scale` (keys before position 0 are zero). Lag 0 alone (`w = [1, 0, ...]`, the
  initialization) is the dot product. By linearity this is dot-product attention with
  keys `k'_j = sum_tau w_{h,tau} k_{j-tau}`, which is how it is computed.
  `L = cfg.correlation_max_lag`. It is causal, per head and per sequence, and
  differentiable; Leviathan's correlation is none of these (docs/correlation_attention.md).

The mixed keys pass `attn.hook_mixed_k` [batch pos head_index d_head].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError
from lookingglass.hooks import HookPoint


def make_key_mixer(cfg: ModelConfig) -> nn.Module:
    """The key mixer the config asks for (identity for plain attention)."""
    if cfg.smear_keys and cfg.attention_score == "correlation":
        raise ConfigError("smear_keys=True and attention_score='correlation' cannot be combined.")
    if cfg.smear_keys:
        return SmearKeys(cfg)
    if cfg.attention_score == "correlation":
        return CorrelationKeys(cfg)
    return NoMixing()


class NoMixing(nn.Module):
    """Plain attention: keys are used as they are."""

    def forward(self, k: Tensor, key_is_real: Tensor | None = None) -> Tensor:
        return k


def _real_keys(k: Tensor, key_is_real: Tensor | None) -> Tensor:
    # Padding keys count as zero, so no pad key leaks into a real position's mix.
    return k if key_is_real is None else k * key_is_real[:, :, None, None].to(k.dtype)


def _shifted(k: Tensor, lag: int) -> Tensor:
    """`k` delayed by `lag` positions along dim 1, zero-filled at the start."""
    if lag == 0:
        return k
    return F.pad(k, (0, 0, 0, 0, lag, 0))[:, : k.shape[1]]


class SmearKeys(nn.Module):
    """Olsson et al.'s smeared keys: a learned per-head mix of the keys at j and j-1."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        # sigmoid(3) ~ 0.95: start close to plain attention.
        self.smear_logit = nn.Parameter(torch.full((cfg.n_heads,), 3.0, dtype=cfg.dtype))
        self.hook_mixed_k = HookPoint()

    def forward(
        self, k: Float[Tensor, "batch pos head_index d_head"], key_is_real: Tensor | None = None
    ) -> Tensor:
        alpha = torch.sigmoid(self.smear_logit)[:, None]
        k = _real_keys(k, key_is_real)
        return self.hook_mixed_k(alpha * k + (1 - alpha) * _shifted(k, 1))


class CorrelationKeys(nn.Module):
    """Correlation attention's keys: `k'_j = sum_tau w[h, tau] k_{j-tau}` (see module doc)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        weights = torch.zeros(cfg.n_heads, cfg.correlation_max_lag, dtype=cfg.dtype)
        weights[:, 0] = 1.0
        self.lag_weights = nn.Parameter(weights)
        self.hook_mixed_k = HookPoint()

    def forward(
        self, k: Float[Tensor, "batch pos head_index d_head"], key_is_real: Tensor | None = None
    ) -> Tensor:
        k = _real_keys(k, key_is_real)
        mixed = sum(
            self.lag_weights[:, lag, None] * _shifted(k, lag)
            for lag in range(self.lag_weights.shape[1])
        )
        return self.hook_mixed_k(mixed)
