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

Optional hook points on the attention input, with TransformerLens 3.9's meanings (EAP-IG
and ACDC sum upstream writes into them):

* `hook_attn_in` (`use_attn_in`): the block's residual input *before* ln1, copied per
  head `[batch, pos, head_index, d_model]`; each head's query, key and value read
  `ln1` of its copy.
* `hook_q_input`, `hook_k_input`, `hook_v_input` (`use_split_qkv_input`): the residual
  input before ln1, copied per head; ln1 is applied to each separately (so its hooks fire
  three times, the cache keeping the value input's). With grouped-query attention the
  key/value inputs have `n_key_value_heads` heads (unless
  `ungroup_grouped_query_attention`). As in TransformerLens, when both flags are on the
  q/k/v inputs are copied from the residual stream, not from `hook_attn_in`.
* `hook_q_normalized_input`, `hook_k_normalized_input`, `hook_v_normalized_input`
  (`use_normalized_qkv_input`, our addition): what each head's projection reads, after
  ln1, per head (key/value heads counted as above).

With "post" norm placement there is no norm before attention, so the inputs are
projected as they are. With every flag off, ln1 runs once and no copies are made.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.attention import AttentionContext, attention_context, make_attention
from lookingglass.model.layer_config import as_config
from lookingglass.model.mlp import make_mlp
from lookingglass.model.norm import make_norm, make_post_norm


def per_head(
    x: Float[Tensor, "batch pos d_model"], n_heads: int
) -> Float[Tensor, "batch pos head_index d_model"]:
    """A copy of `x` for each head (its own memory, so editing one head's copy in place
    leaves the others as they were)."""
    return x.unsqueeze(-2).repeat(1, 1, n_heads, 1)


class _BranchInputHookPoint(HookPoint):
    """`hook_mlp_in`: the MLP's input is the very tensor of the residual stream, so hooks
    get a copy: an in-place edit changes this branch only."""

    def __call__(self, x: Tensor) -> Tensor:
        return super().__call__(x.clone() if self.has_hooks() else x)


def _optional_hook(on: bool, hook: type[HookPoint] = HookPoint) -> nn.Module:
    return hook() if on else nn.Identity()


def _norms(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """(pre-norm, post-norm) of a sublayer for the config's norm placement."""
    pre = make_norm(cfg) if cfg.norm_placement in ("pre", "pre_and_post") else nn.Identity()
    post = make_post_norm(cfg) if cfg.norm_placement in ("pre_and_post", "post") else nn.Identity()
    return pre, post


class TransformerBlock(nn.Module):
    """Attention + MLP block (attention only when `cfg.attn_only`). Built as in
    TransformerLens: `TransformerBlock(cfg, block_index)`."""

    def __init__(self, cfg: ModelConfig | dict, block_index: int) -> None:
        super().__init__()
        cfg = as_config(cfg)
        self.layer = block_index
        self.ln1, self.ln1_post = _norms(cfg)
        self.attn = make_attention(cfg, block_index)
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
        self.cfg = cfg
        self.n_heads = cfg.n_heads
        # Key/value heads of the per-head key/value inputs (TransformerLens's count).
        self.n_kv_inputs = cfg.n_heads if cfg.ungroup_grouped_query_attention else cfg.n_kv_heads
        self.split, self.copy_attn_in = cfg.use_split_qkv_input, cfg.use_attn_in
        self.normalized_hooks = cfg.use_normalized_qkv_input
        self.hook_attn_in = _optional_hook(cfg.use_attn_in)  # [batch, pos, head_index, d_model]
        # The residual input before ln1, per head: [batch, pos, head_index, d_model].
        self.hook_q_input = _optional_hook(self.split)
        self.hook_k_input = _optional_hook(self.split)
        self.hook_v_input = _optional_hook(self.split)
        # After ln1, per head: [batch, pos, head_index, d_model].
        self.hook_q_normalized_input = _optional_hook(self.normalized_hooks)
        self.hook_k_normalized_input = _optional_hook(self.normalized_hooks)
        self.hook_v_normalized_input = _optional_hook(self.normalized_hooks)
        if not cfg.attn_only:  # [batch, pos, d_model]
            self.hook_mlp_in = _optional_hook(cfg.use_hook_mlp_in, _BranchInputHookPoint)
        self.attn.set_hook_options(cfg)

    def forward(
        self,
        resid_pre: Float[Tensor, "batch pos d_model"],
        context: AttentionContext | None = None,
        kv_cache_entry=None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """The block on `resid_pre`. Standalone (as `TransformerBlock(cfg, i)(x)`) the
        context is plain causal attention over the positions of `x`."""
        if context is None:
            context = attention_context(
                resid_pre.shape[0], resid_pre.shape[1], 0, None, resid_pre.device
            )
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out = self.hook_attn_out(self._attention(resid_pre, context, kv_cache_entry))
        if not hasattr(self, "mlp"):
            return self.hook_resid_post(resid_pre + attn_out)
        if self.parallel:
            return self.hook_resid_post(resid_pre + attn_out + self._mlp(resid_pre))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        return self.hook_resid_post(resid_mid + self._mlp(resid_mid))

    def _attention(self, resid_pre: Tensor, context: AttentionContext, kv_cache_entry) -> Tensor:
        q_in, k_in, v_in = self._attention_inputs(resid_pre)
        out = self.attn(
            self.hook_q_normalized_input(q_in),
            self.hook_k_normalized_input(k_in),
            self.hook_v_normalized_input(v_in),
            kv_cache_entry,
            context=context,
        )
        return self.ln1_post(out)

    def _attention_inputs(self, resid_pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """What the query, key and value projections read (see the module docstring)."""
        if self.copy_attn_in:
            attn_in = self.hook_attn_in(per_head(resid_pre, self.n_heads))
        if self.split:
            q_in = self.hook_q_input(per_head(resid_pre, self.n_heads))
            k_in = self.hook_k_input(per_head(resid_pre, self.n_kv_inputs))
            v_in = self.hook_v_input(per_head(resid_pre, self.n_kv_inputs))
        elif self.copy_attn_in:
            q_in = k_in = v_in = attn_in
        else:  # The fast path: ln1 once, every head reads the same tensor.
            normalized = self.ln1(resid_pre)
            if not self.normalized_hooks:
                return normalized, normalized, normalized
            return (
                per_head(normalized, self.n_heads),
                per_head(normalized, self.n_kv_inputs),
                per_head(normalized, self.n_kv_inputs),
            )
        return self.ln1(q_in), self.ln1(k_in), self.ln1(v_in)

    def _mlp(self, mlp_input: Tensor) -> Tensor:
        mlp_in = self.hook_mlp_in(mlp_input)
        return self.hook_mlp_out(self.ln2_post(self.mlp(self.ln2(mlp_in))))
