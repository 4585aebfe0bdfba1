"""One transformer block: attention then MLP, each reading and writing the residual stream.

    resid_mid  = resid_pre + attn(ln1(resid_pre))
    resid_post = resid_mid + mlp(ln2(resid_mid))

Optional hook points (`hook_attn_in`, `hook_q/k/v_input`, `hook_mlp_in`) exist only when
their config flag is on; otherwise an identity stands in their place, so `forward` reads
the same either way and pays nothing for what is off.
"""

from __future__ import annotations

from jaxtyping import Bool, Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.attention import Attention
from lookingglass.model.mlp import MLP
from lookingglass.model.norm import make_norm


class _PerHead(nn.Module):
    """Copies the attention input once per head, so each head's copy can be patched."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Tensor:
        return x.unsqueeze(-2).repeat(1, 1, self.n_heads, 1)


def _optional_hook(on: bool) -> nn.Module:
    return HookPoint() if on else nn.Identity()


class TransformerBlock(nn.Module):
    """Pre-norm attention + MLP block (attention only when `cfg.attn_only`)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg, layer)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        if not cfg.attn_only:
            self.ln2 = make_norm(cfg)
            self.mlp = MLP(cfg)
            self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.set_hook_options(cfg)

    def set_hook_options(self, cfg: ModelConfig) -> None:
        """(Re)build the optional hook points for the config's `use_*` flags."""
        self.hook_attn_in = _optional_hook(cfg.use_attn_in)  # [batch, pos, d_model]
        split = cfg.use_split_qkv_input
        # The normalized attention input, per head: [batch, pos, head_index, d_model].
        self.per_head = _PerHead(cfg.n_heads) if split else nn.Identity()
        self.hook_q_input = _optional_hook(split)
        self.hook_k_input = _optional_hook(split)
        self.hook_v_input = _optional_hook(split)
        if not cfg.attn_only:
            self.hook_mlp_in = _optional_hook(cfg.use_hook_mlp_in)  # [batch, pos, d_model]
        self.attn.set_hook_options(cfg)

    def forward(
        self,
        resid_pre: Float[Tensor, "batch pos d_model"],
        mask: Bool[Tensor, "batch 1 query_pos key_pos"] | None = None,
        kv_cache_entry=None,
    ) -> Float[Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        resid_mid = resid_pre + self.hook_attn_out(self._attention(resid_pre, mask, kv_cache_entry))
        if not hasattr(self, "mlp"):
            return self.hook_resid_post(resid_mid)
        resid_mid = self.hook_resid_mid(resid_mid)
        mlp_in = self.hook_mlp_in(resid_mid)
        resid_post = resid_mid + self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
        return self.hook_resid_post(resid_post)

    def _attention(self, resid_pre: Tensor, mask: Tensor | None, kv_cache_entry) -> Tensor:
        # The norm is applied once; every head (and q, k, v) reads the same normalized input.
        normalized = self.per_head(self.ln1(self.hook_attn_in(resid_pre)))
        return self.attn(
            self.hook_q_input(normalized),
            self.hook_k_input(normalized),
            self.hook_v_input(normalized),
            mask,
            kv_cache_entry,
        )
