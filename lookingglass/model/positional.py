"""Position information inside attention: rotary embeddings and ALiBi biases.

Learned absolute positions live in `embed.py`; these two act on queries/keys or scores.

Rotary (Su et al. 2021): dimension pairs of q and k are rotated by angle
`position * inv_freq[i]`, `inv_freq[i] = base^(-2i / rotary_dim)`, on the first
`rotary_dim` dimensions of each head (the rest pass unchanged). Pairs are the two halves
of the rotary dimensions (GPT-NeoX, Llama: `rotate_half`) or adjacent dimensions (GPT-J:
`rotary_adjacent_pairs=True`). Frequencies may be rescaled for long contexts ("linear",
or Llama 3's "llama3" NTK-by-parts rule).

ALiBi (Press et al. 2022, BLOOM): no position embedding; each head adds
`slope_h * key_position` to its scores (adding a per-query constant would not change the
softmax, so this equals the paper's `-slope_h * (i - j)`).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from lookingglass.config import ModelConfig


def rotary_inv_freq(cfg: ModelConfig) -> Float[Tensor, " rotary_dim_half"]:
    """Inverse frequencies of the rotary pairs, after any rope scaling the config asks for."""
    dim = cfg.rotary_dim
    # Computed on the CPU even while a model is built on the meta device (loading): the
    # buffer is derived from the config, not loaded, so it must hold real numbers.
    steps = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float()
    inv_freq = 1.0 / (cfg.rotary_base ** (steps / dim))
    scaling = cfg.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return inv_freq
    if kind == "linear":
        return inv_freq / scaling["factor"]
    if kind == "llama3":
        return _llama3_inv_freq(inv_freq, scaling)
    raise AssertionError(f"unvalidated rope scaling {kind}")  # config validation prevents this


def _llama3_inv_freq(inv_freq: Tensor, scaling: dict) -> Tensor:
    # Llama 3.1's rule: keep high frequencies, divide low ones by `factor`, and blend
    # smoothly in between (wavelengths measured against the original context length).
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
    return torch.where(is_medium, blended, scaled)


class Rotary(nn.Module):
    """Rotates the first `rotary_dim` dimensions of q or k by their positions."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.rotary_dim = cfg.rotary_dim
        self.adjacent_pairs = cfg.rotary_adjacent_pairs
        self.register_buffer("inv_freq", rotary_inv_freq(cfg), persistent=False)
        # Layers with equal signatures rotate alike: a pass computes cos/sin once for them.
        self.signature = (self.rotary_dim, self.adjacent_pairs, *self.inv_freq.tolist())

    def cos_sin(
        self, positions: Int[Tensor, "batch pos"], dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        """`cos, sin [batch, pos, 1, rotary_dim]` (computed in fp32, cast to `dtype`)."""
        angles = positions[..., None].float() * self.inv_freq.float()
        if self.adjacent_pairs:
            angles = angles.repeat_interleave(2, dim=-1)
        else:
            angles = torch.cat([angles, angles], dim=-1)
        return angles.cos()[:, :, None].to(dtype), angles.sin()[:, :, None].to(dtype)

    def forward(
        self, x: Float[Tensor, "batch pos head_index d_head"], cos: Tensor, sin: Tensor
    ) -> Float[Tensor, "batch pos head_index d_head"]:
        x_rot, x_pass = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        rotated = x_rot * cos + self._rotate(x_rot) * sin
        return torch.cat([rotated, x_pass], dim=-1) if x_pass.shape[-1] else rotated

    def _rotate(self, x: Tensor) -> Tensor:
        if self.adjacent_pairs:  # (x0, x1) -> (-x1, x0) for each adjacent pair
            return torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)
        half = x.shape[-1] // 2  # (a, b) -> (-b, a) for the two halves
        return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def alibi_slopes(n_heads: int) -> Float[Tensor, " n_heads"]:
    """ALiBi's per-head slopes: a geometric sequence, interleaved for non-powers of two."""
    closest = 2 ** math.floor(math.log2(n_heads))
    base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
    # On the CPU even while a model is built on the meta device (see rotary_inv_freq).
    powers = torch.arange(1, closest + 1, dtype=torch.float32, device="cpu")
    slopes = base**powers
    if closest != n_heads:
        extra_base = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
        n_extra = min(closest, n_heads - closest)
        extra_powers = torch.arange(1, 1 + 2 * n_extra, 2, dtype=torch.float32, device="cpu")
        slopes = torch.cat([slopes, extra_base**extra_powers])
    return slopes


class Alibi(nn.Module):
    """Adds `slope_h * key_position` to each head's attention scores."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(cfg.n_heads), persistent=False)

    def forward(
        self,
        scores: Float[Tensor, "batch head_index query_pos key_pos"],
        key_positions: Int[Tensor, "batch key_pos"],
    ) -> Tensor:
        bias = self.slopes[None, :, None, None] * key_positions[:, None, None, :].float()
        return scores + bias.to(scores.dtype)


def create_alibi_slope(n_ctx: int, device: torch.device | str | None = None) -> Tensor:
    """TransformerLens's `AbstractAttention.create_alibi_slope`: `[query, key]` float32
    matrix `min(key - query, 0)` (0 on and above the diagonal, -1, -2, ... below)."""
    rows = torch.arange(n_ctx, device=device).unsqueeze(0)
    cols = torch.arange(n_ctx, device=device).unsqueeze(1)
    return (rows - cols).clamp(max=0).to(torch.float32)


def create_alibi_multipliers(n_heads: int, device: torch.device | str | None = None) -> Tensor:
    """TransformerLens's `AbstractAttention.create_alibi_multipliers`: `[n_heads]`, the
    geometric sequence `start**(h+1)` with `start = 2**(-8/n_heads)` (for a power-of-two
    head count the same as `alibi_slopes`)."""
    start = 2 ** (-8 / n_heads)
    return start * (start ** torch.arange(n_heads, device=device))


def create_alibi_bias(
    n_heads: int, n_ctx: int, device: torch.device | str | None = None
) -> Float[Tensor, "head_index query key"]:
    """TransformerLens's `AbstractAttention.create_alibi_bias`: each head's multiplier
    times `create_alibi_slope(n_ctx)`, `[n_heads, n_ctx, n_ctx]`."""
    slope = create_alibi_slope(n_ctx, device)[None]
    return create_alibi_multipliers(n_heads, device)[:, None, None] * slope
