"""One transformer block: attention and MLP, each reading and writing the residual stream.

Sequential (GPT-2, Llama, ...):       Parallel (GPT-J, GPT-NeoX/Pythia, `parallel_attn_mlp`):
    resid_mid  = resid_pre + attn_out     resid_post = resid_pre + attn_out + mlp_out
    resid_post = resid_mid + mlp_out      (no resid_mid; the MLP reads resid_pre)

Where the norms sit is `cfg.norm_placement`: "pre" (`attn_out = attn(ln1(x))`),
"pre_and_post" (Gemma 2: `attn_out = ln1_post(attn(ln1(x)))`) or "post" (OLMo 2:
`attn_out = ln1_post(attn(x))`); the MLP likewise with ln2 / ln2_post. `hook_attn_out` and
`hook_mlp_out` are always what is added to the residual stream, so
`resid_mid == resid_pre + attn_out` and `resid_post == resid_mid + mlp_out` hold for
every architecture.

Optional hook points (`hook_attn_in`, `hook_q/k/v_input`, `hook_mlp_in`) exist only when
their config flag is on; otherwise an identity stands in their place, so `forward` reads
the same either way and pays nothing for what is off.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.attention import AttentionContext, make_attention
from lookingglass.model.mlp import make_mlp
from lookingglass.model.norm import make_norm, make_post_norm


class _PerHead(nn.Module):
    """Copies the attention input once per head, so each head's copy can be patched."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Tensor:
        return x.unsqueeze(-2).repeat(1, 1, self.n_heads, 1)


class _BranchInputHookPoint(HookPoint):
    """A hook point on one branch's input (`hook_attn_in`, `hook_q/k/v_input`,
    `hook_mlp_in`). That input is the very tensor of the residual stream (or of the other
    branches' input), so hooks get a copy: an in-place edit changes this branch only."""

    def __call__(self, x: Tensor) -> Tensor:
        return super().__call__(x.clone() if self.has_hooks() else x)


def _optional_hook(on: bool) -> nn.Module:
    return _BranchInputHookPoint() if on else nn.Identity()


def _norms(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """(pre-norm, post-norm) of a sublayer for the config's norm placement."""
    pre = make_norm(cfg) if cfg.norm_placement in ("pre", "pre_and_post") else nn.Identity()
    post = make_post_norm(cfg) if cfg.norm_placement in ("pre_and_post", "post") else nn.Identity()
    return pre, post


class TransformerBlock(nn.Module):
    """Attention + MLP block (attention only when `cfg.attn_only`)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.ln1, self.ln1_post = _norms(cfg)
        self.attn = make_attention(cfg, layer)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        self.parallel = cfg.parallel_attn_mlp
        if not cfg.attn_only:
            self.ln2, self.ln2_post = _norms(cfg)
            self.mlp = make_mlp(cfg)
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
            if not self.parallel:
                self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
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
        context: AttentionContext,
        kv_cache_entry=None,
    ) -> Float[Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out = self.hook_attn_out(self._attention(resid_pre, context, kv_cache_entry))
        if not hasattr(self, "mlp"):
            return self.hook_resid_post(resid_pre + attn_out)
        if self.parallel:
            return self.hook_resid_post(resid_pre + attn_out + self._mlp(resid_pre))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        return self.hook_resid_post(resid_mid + self._mlp(resid_mid))

    def _attention(self, resid_pre: Tensor, context: AttentionContext, kv_cache_entry) -> Tensor:
        # The norm is applied once; every head (and q, k, v) reads the same normalized input.
        normalized = self.per_head(self.ln1(self.hook_attn_in(resid_pre)))
        out = self.attn(
            self.hook_q_input(normalized),
            self.hook_k_input(normalized),
            self.hook_v_input(normalized),
            context,
            kv_cache_entry,
        )
        return self.ln1_post(out)

    def _mlp(self, mlp_input: Tensor) -> Tensor:
        mlp_in = self.hook_mlp_in(mlp_input)
        return self.hook_mlp_out(self.ln2_post(self.mlp(self.ln2(mlp_in))))
