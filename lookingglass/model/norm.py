"""Normalization layers: LayerNorm, LayerNormPre (after folding), RMSNorm, RMSNormPre.

Each exposes `hook_scale` [batch pos 1] and `hook_normalized` [batch pos d_model] with
TransformerLens's meanings: `hook_normalized` is the normalized vector *before* the
norm's weight and bias (`(x - mean) / scale`), so the two are equal only for norms
without weights (LNPre/RMSPre, e.g. after `fold_ln`). The fused PyTorch kernel computes
the output; the explicit path (the definition, TransformerLens's operations) runs only to
feed hooks, and the output's numbers do not depend on whether hooks are attached (see
`exact_paths`). Constructors take TransformerLens's arguments: `LayerNorm(cfg, length)`,
`RMSNorm(cfg, length)`, `LayerNormPre(cfg)`, `RMSNormPre(cfg)`, with `cfg` a `ModelConfig`
or a dict of its fields.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.exact_paths import fast_values, through
from lookingglass.model.layer_config import as_config


class _Norm(nn.Module):
    """Shared shape of every norm: optional weight `w` and bias `b`, two hook points."""

    centered: bool = True

    def __init__(
        self,
        cfg: ModelConfig | dict,
        length: int | None = None,
        weight: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.cfg = cfg = as_config(cfg)
        self.eps = cfg.eps
        self.length = length or cfg.d_model
        if weight:
            self.w = nn.Parameter(torch.ones(self.length, dtype=cfg.dtype))
        if bias:
            self.b = nn.Parameter(torch.zeros(self.length, dtype=cfg.dtype))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, length]

    def forward(self, x: Float[Tensor, "... length"]) -> Float[Tensor, "... length"]:
        # "...": [batch pos] for the residual stream, [batch pos head_index] for per-head
        # attention inputs and q/k norms.
        if not (self.hook_scale.has_hooks() or self.hook_normalized.has_hooks()):
            return self._fused(x)
        explicit, hooks_changed_nothing = self._explicit(x)
        return fast_values(self._fused(x), explicit) if hooks_changed_nothing else explicit

    def _explicit(self, x: Tensor) -> tuple[Tensor, bool]:
        """The definition, through the hook points; also whether the hooks left the
        scale and the normalized vector as they were."""
        dtype = x.dtype
        x = x.float()  # norms are numerically sensitive: compute in fp32 as HF does
        if self.centered:
            x = x - x.mean(-1, keepdim=True)
        scale, scale_kept = through(
            self.hook_scale, (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        )
        normalized, normalized_kept = through(self.hook_normalized, (x / scale).to(dtype))
        x = normalized.float()
        if hasattr(self, "w"):
            x = x * self.w.float()
        if hasattr(self, "b"):
            x = x + self.b.float()
        return x.to(dtype), scale_kept and normalized_kept

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

    def __init__(self, cfg: ModelConfig | dict, length: int | None = None) -> None:
        super().__init__(cfg, length, weight=False, bias=False)

    def _fused(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), (self.length,), None, None, self.eps).to(x.dtype)


class RMSNorm(_Norm):
    """RMSNorm: x / sqrt(mean(x^2) + eps) * w (no centering, no bias)."""

    centered = False

    def __init__(self, cfg: ModelConfig | dict, length: int | None = None) -> None:
        super().__init__(cfg, length, weight=True, bias=False)

    def _fused(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (self.length,), self.w.float(), self.eps).to(x.dtype)


class RMSNormPre(_Norm):
    """RMSNorm whose weight was folded into the next layer's weights."""

    centered = False

    def __init__(self, cfg: ModelConfig | dict, length: int | None = None) -> None:
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
