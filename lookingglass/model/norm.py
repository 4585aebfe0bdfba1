"""Normalization layers: LayerNorm, LayerNormPre (after folding), RMSNorm, RMSNormPre.

Each exposes `hook_scale` [batch pos 1] and `hook_normalized` [batch pos d_model] with
TransformerLens's meanings: `hook_normalized` is the normalized vector *before* the
norm's weight and bias (`(x - mean) / scale`), so the two are equal only for norms
without weights (LNPre/RMSPre, e.g. after `fold_ln`). When neither is hooked the fused
PyTorch kernel computes the same thing in one pass; the explicit path is the definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint


class _Norm(nn.Module):
    """Shared shape of every norm: optional weight `w` and bias `b`, two hook points."""

    centered: bool = True

    def __init__(
        self, cfg: ModelConfig, length: int | None = None, weight: bool = True, bias: bool = True
    ) -> None:
        super().__init__()
        self.eps = cfg.eps
        self.length = length or cfg.d_model
        if weight:
            self.w = nn.Parameter(torch.ones(self.length, dtype=cfg.dtype))
        if bias:
            self.b = nn.Parameter(torch.zeros(self.length, dtype=cfg.dtype))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, length]

    def forward(self, x: Float[Tensor, "... length"]) -> Float[Tensor, "... length"]:
        # "...": [batch pos] for the residual stream, [batch pos head_index] for q/k norms.
        if self.hook_scale.has_hooks() or self.hook_normalized.has_hooks():
            return self._explicit(x)
        return self._fused(x)

    def _explicit(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()  # norms are numerically sensitive: compute in fp32 as HF does
        if self.centered:
            x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        x = self.hook_normalized((x / scale).to(dtype)).float()
        if hasattr(self, "w"):
            x = x * self.w.float()
        if hasattr(self, "b"):
            x = x + self.b.float()
        return x.to(dtype)

    def _fused(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class LayerNorm(_Norm):
    """LayerNorm with learned weight and bias: (x - mean) / sqrt(var + eps) * w + b."""

    def _fused(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), (self.length,), self.w.float(), self.b.float(), self.eps).to(
            x.dtype
        )


class LayerNormPre(_Norm):
    """LayerNorm whose weight and bias were folded into the next layer's weights."""

    def __init__(self, cfg: ModelConfig, length: int | None = None) -> None:
        super().__init__(cfg, length, weight=False, bias=False)

    def _fused(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), (self.length,), None, None, self.eps).to(x.dtype)


class RMSNorm(_Norm):
    """RMSNorm: x / sqrt(mean(x^2) + eps) * w (no centering, no bias)."""

    centered = False

    def __init__(self, cfg: ModelConfig, length: int | None = None) -> None:
        super().__init__(cfg, length, weight=True, bias=False)

    def _fused(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (self.length,), self.w.float(), self.eps).to(x.dtype)


class RMSNormPre(_Norm):
    """RMSNorm whose weight was folded into the next layer's weights."""

    centered = False

    def __init__(self, cfg: ModelConfig, length: int | None = None) -> None:
        super().__init__(cfg, length, weight=False, bias=False)

    def _fused(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (self.length,), None, self.eps).to(x.dtype)


NORMS: dict[str | None, type[_Norm] | None] = {
    "LN": LayerNorm,
    "LNPre": LayerNormPre,
    "RMS": RMSNorm,
    "RMSPre": RMSNormPre,
    None: None,
}


def make_norm(cfg: ModelConfig, length: int | None = None) -> nn.Module:
    """The norm the config asks for, or an identity when `normalization_type` is None."""
    norm = NORMS[cfg.normalization_type]
    return nn.Identity() if norm is None else norm(cfg, length)


def make_post_norm(cfg: ModelConfig) -> nn.Module:
    """The norm after a sublayer (`norm_placement` "pre_and_post" or "post"). It keeps its
    weight (and bias) when the other norms are folded ("LNPre"/"RMSPre"): its output is
    added to the residual stream, so no later weight can absorb them."""
    unfolded = {"LNPre": "LN", "RMSPre": "RMS"}.get(cfg.normalization_type, cfg.normalization_type)
    norm = NORMS[unfolded]
    return nn.Identity() if norm is None else norm(cfg)
