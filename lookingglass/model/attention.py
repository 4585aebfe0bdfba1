"""Multi-head self-attention, the readable way, with a fused fast path.

    q, k, v  = input @ W_Q + b_Q, ...                 [batch pos head_index d_head]
    (q, k, v clamped to +-clip_qkv             when clip_qkv is set)
    (q, k    = rotary(q), rotary(k)            when positional_embedding_type="rotary")
    (q       = q * log(pos) / log(train length)    use_logn_attn, past the train length)
    scores   = q . k / attn_scale (+ ALiBi), causal (and window) masked
               (attn_scale * (layer + 1) with scale_attn_by_inverse_layer_idx; no causal
               mask with attention_dir="bidirectional", only padding keys masked)
    pattern  = softmax(scores)                        [batch head_index query_pos key_pos]
    z        = pattern @ v                            [batch pos head_index d_head]
    out      = sum_h z_h @ W_O[h] + b_O               [batch pos d_model]

When nobody hooks `hook_attn_scores` or `hook_pattern` (and scores need no soft-capping
or ALiBi), `scaled_dot_product_attention` computes z without materializing the pattern.
When they are hooked, the explicit path feeds the hooks and, unless a hook edits them,
z keeps the fused kernel's numbers, so logits do not depend on which hooks are attached
(see `exact_paths`). `W_Q/W_K/W_V [n_heads, d_model, d_head]` are
stored as head-major views of a `[d_model, n_heads, d_head]` buffer so each projection is
one GEMM with no copy. Grouped-query attention (`GroupedQueryAttention`) keeps the real
`n_key_value_heads` key/value heads (`_W_K`, `_W_V`), as TransformerLens does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError
from lookingglass.hooks import HookPoint
from lookingglass.model.exact_paths import fast_values, through
from lookingglass.model.key_mixing import make_key_mixer
from lookingglass.model.layer_config import as_config
from lookingglass.model.norm import RMSNorm
from lookingglass.model.positional import (
    Alibi,
    Rotary,
    create_alibi_bias,
    create_alibi_multipliers,
    create_alibi_slope,
)
from lookingglass.utils.attention import clamp_qkv, complex_attn_linear, simple_attn_linear


@dataclass
class AttentionContext:
    """What every layer's attention needs to know about the positions in this pass.

    `mask` is True where a query may attend to a key (None: plain causal, no padding, no
    cache); `positions` are the queries' position ids, `key_positions` the keys';
    `key_is_real` is False at padding keys (None when there is no padding).
    `shortformer_pos_embed` (`positional_embedding_type="shortformer"`) is the queries'
    position embedding, which every block adds to its query and key inputs.
    `rotary_cos_sin` computes each distinct rotation once per pass, not once per layer.
    """

    mask: Bool[Tensor, "#batch 1 query_pos key_pos"] | None
    positions: Int[Tensor, "batch query_pos"]
    key_positions: Int[Tensor, "batch key_pos"]
    key_is_real: Bool[Tensor, "batch key_pos"] | None = None
    shortformer_pos_embed: Float[Tensor, "batch query_pos d_model"] | None = None
    _rotations: dict = field(default_factory=dict, repr=False)

    def rotary_cos_sin(self, rotary: Rotary, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """`rotary.cos_sin` at the queries' positions, shared by layers whose rotations
        are the same (same frequencies and layout)."""
        key = (rotary.signature, dtype)
        if key not in self._rotations:
            self._rotations[key] = rotary.cos_sin(self.positions, dtype)
        return self._rotations[key]


def head_major_parameter(
    d_model: int, n_heads: int, d_head: int, dtype: torch.dtype
) -> nn.Parameter:
    """A `[n_heads, d_model, d_head]` parameter laid out as `[d_model, n_heads, d_head]`."""
    return nn.Parameter(torch.zeros(d_model, n_heads, d_head, dtype=dtype).permute(1, 0, 2))


def as_head_major_layout(weight: Tensor) -> Tensor:
    """The same values as `weight [n_heads, d_model, d_head]`, in a layout whose
    `[d_model, n_heads * d_head]` flattening is a view (one GEMM projects every head).
    A weight already in such a layout is returned as it is: the slices of a fused
    checkpoint matrix (GPT-2's `c_attn`) and Hugging Face's `[out, in]` projections
    (Llama's `q_proj`) are, so loading copies none of them."""
    heads, _, d_head = weight.shape
    if heads == 1 or d_head == 1 or weight.stride(0) == d_head * weight.stride(2):
        return weight
    return weight.permute(1, 0, 2).contiguous().permute(1, 0, 2)


class Attention(nn.Module):
    """Causal multi-head attention with TransformerLens's hook points and weight names.

    Built as in TransformerLens: `Attention(cfg, attn_type="global", layer_id=None)`, with
    `cfg` a `ModelConfig` or a dict of its fields. `attn_type` "local" restricts each
    query to the last `cfg.window_size` keys; left out, the layer's type comes from the
    config (`attn_types`, `window_size`).
    """

    def __init__(
        self,
        cfg: ModelConfig | dict,
        attn_type: str | None = None,
        layer_id: int | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg = as_config(cfg)
        self.layer_id = layer_id
        self.attn_type, self.window = _attention_window(cfg, attn_type, layer_id)
        self.n_heads, self.d_head, self.d_model = cfg.n_heads, cfg.d_head, cfg.d_model
        self.attn_scale = cfg.attn_scale
        if cfg.scale_attn_by_inverse_layer_idx:  # as TransformerLens (Stanford GPT-2)
            if layer_id is None:
                raise ConfigError(
                    "scale_attn_by_inverse_layer_idx needs the layer: pass layer_id=."
                )
            self.attn_scale *= layer_id + 1
        self.causal = cfg.attention_dir == "causal"
        self.clip = cfg.clip_qkv
        # Qwen-1's log-n scaling of queries past the training length (in eval mode only).
        self.logn_length = (cfg.train_seq_length or cfg.n_ctx) if cfg.use_logn_attn else None
        self.soft_cap = cfg.attn_scores_soft_cap
        self.W_Q = head_major_parameter(cfg.d_model, cfg.n_heads, cfg.d_head, cfg.dtype)
        self.b_Q = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, dtype=cfg.dtype))
        self._init_key_value(cfg)
        self.W_O = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, cfg.d_model, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        if cfg.use_qk_norm:
            self.q_norm = QKNorm(cfg, cfg.n_heads)
            self.k_norm = QKNorm(cfg, cfg.n_kv_heads)
        else:
            self.q_norm = self.k_norm = nn.Identity()
        self.key_mixer = make_key_mixer(cfg)
        # As in TransformerLens, hook_q/k/v hold the projections before any q/k norm.
        self.hook_q = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head_index, d_head]
        if cfg.positional_embedding_type == "rotary":
            self.rotary = Rotary(cfg)
            self.hook_rot_q = HookPoint()  # [batch, pos, head_index, d_head]
            self.hook_rot_k = HookPoint()  # [batch, pos, head_index, d_head]
        self.alibi = Alibi(cfg) if cfg.positional_embedding_type == "alibi" else None
        self.hook_attn_scores = HookPoint()  # [batch, head_index, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head_index, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head_index, d_head]
        # Soft-capping and ALiBi change the scores, which the fused kernel cannot do.
        self._fused_ok = self.soft_cap <= 0 and self.alibi is None
        self._add_transformerlens_buffers()
        self.set_hook_options(cfg)

    # TransformerLens's AbstractAttention static helpers (its ALiBi conventions).
    create_alibi_slope = staticmethod(create_alibi_slope)
    create_alibi_multipliers = staticmethod(create_alibi_multipliers)
    create_alibi_bias = staticmethod(create_alibi_bias)

    def _add_transformerlens_buffers(self) -> None:
        """TransformerLens's attention buffers `mask` (an empty bool placeholder) and
        `IGNORE` (-inf). They are in the state dict of an attention component used on
        its own, as in TransformerLens (its tests copy them between components); inside
        a model they stay out of the model's state dict, and loading ignores them."""
        # On the CPU even while a model is built on the meta device (see rotary_inv_freq).
        mask = torch.empty((0, 0), dtype=torch.bool, device="cpu")
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("IGNORE", torch.tensor(-torch.inf, device="cpu"), persistent=False)

        def add_when_root(module, state_dict, prefix, local_metadata) -> None:
            if prefix == "":
                state_dict["mask"], state_dict["IGNORE"] = module.mask, module.IGNORE

        def drop_on_load(module, state_dict, prefix, *args) -> None:
            for name in ("mask", "IGNORE"):
                state_dict.pop(prefix + name, None)

        self.register_state_dict_post_hook(add_when_root)
        self.register_load_state_dict_pre_hook(drop_on_load)

    @property
    def layer(self) -> int | None:
        """The layer index (`layer_id`)."""
        return self.layer_id

    def _init_key_value(self, cfg: ModelConfig) -> None:
        self.W_K = head_major_parameter(cfg.d_model, cfg.n_heads, cfg.d_head, cfg.dtype)
        self.W_V = head_major_parameter(cfg.d_model, cfg.n_heads, cfg.d_head, cfg.dtype)
        self.b_K = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, dtype=cfg.dtype))
        self.b_V = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head, dtype=cfg.dtype))

    def _key_value_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(W_K, b_K, W_V, b_V) that the key/value projections use."""
        return self.W_K, self.b_K, self.W_V, self.b_V

    def set_hook_options(self, cfg: ModelConfig) -> None:
        """Build the optional parts `use_attn_result` asks for."""
        self.cfg = cfg
        if cfg.use_attn_result:
            self.hook_result = HookPoint()  # [batch, pos, head_index, d_model]
            self._output = self._output_per_head
        else:
            self._modules.pop("hook_result", None)
            self._output = self._output_fused

    def forward(
        self,
        query_input: Float[Tensor, "batch pos d_model"]
        | Float[Tensor, "batch pos head_index d_model"],
        key_input: Float[Tensor, "batch kv_pos d_model"]
        | Float[Tensor, "batch kv_pos kv_head_index d_model"],
        value_input: Float[Tensor, "batch kv_pos d_model"]
        | Float[Tensor, "batch kv_pos kv_head_index d_model"],
        past_kv_cache_entry=None,
        additive_attention_mask: Float[Tensor, "batch 1 1 kv_pos"] | None = None,
        attention_mask: Int[Tensor, "batch offset_pos"] | None = None,
        position_bias: Float[Tensor, "1 head_index pos kv_pos"] | None = None,
        *,
        context: AttentionContext | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """Attend, as TransformerLens's `Attention.forward`: inputs `[batch, pos, d_model]`
        (every head reads the same input) or per head `[batch, pos, head_index, d_model]`.
        `past_kv_cache_entry` (generation) supplies and stores earlier keys/values;
        `attention_mask` (1 real, 0 padding) covers cached and new positions;
        `additive_attention_mask` and `position_bias` are added to the scores. Inside a
        `HookedTransformer` the block passes the pass's `context` instead."""
        if context is None:
            past = getattr(past_kv_cache_entry, "past_keys", None)
            n_past = 0 if past is None else past.shape[1]
            context = attention_context(
                query_input.shape[0],
                query_input.shape[1],
                n_past,
                attention_mask,
                query_input.device,
            )
        W_K, b_K, W_V, b_V = self._key_value_weights()
        q = self.q_norm(self.hook_q(_project(query_input, self.W_Q, self.b_Q)))
        k = self.k_norm(self.hook_k(_project(key_input, W_K, b_K)))
        v = self.hook_v(_project(value_input, W_V, b_V))
        if self.clip is not None:  # OLMo: after the projections (and q/k norms), as TL
            q, k, v = clamp_qkv(q, k, v, self.clip)
        if hasattr(self, "rotary"):
            cos, sin = context.rotary_cos_sin(self.rotary, q.dtype)
            q = self.hook_rot_q(self.rotary(q, cos, sin))
            k = self.hook_rot_k(self.rotary(k, cos, sin))
        if self.logn_length is not None and not self.training:
            q = _logn_scaled(q, context.positions, self.logn_length)
        if past_kv_cache_entry is not None:
            k, v = past_kv_cache_entry.append(k, v)
        k = self.key_mixer(k, context.key_is_real)
        mask = self._mask(context, q.shape[1], k.shape[1], q.device)
        extra = _ScoreTerms(position_bias, additive_attention_mask)
        fused_ok = self._fused_ok and extra.empty
        if fused_ok and not (self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks()):
            z = self._attend_fused(q, k, v, mask)
        else:
            pattern, hooks_changed_nothing = self._pattern(q, k, mask, context.key_positions, extra)
            if fused_ok and hooks_changed_nothing:
                # The same numbers as when nothing is hooked (see exact_paths); the
                # explicit product is needed only for its gradient.
                z = self._attend_fused(q, k, v, mask)
                if torch.is_grad_enabled() and (pattern.requires_grad or v.requires_grad):
                    z = fast_values(z, _weigh_values(pattern, v))
            else:
                z = _weigh_values(pattern, v)
        return self._output(self.hook_z(z))

    def _mask(self, context: AttentionContext, q_len: int, k_len: int, device) -> Tensor | None:
        """True where a query may attend to a key; None means plain causal."""
        if not self.causal:
            return bidirectional_mask(context.key_is_real, q_len, k_len, device)
        if self.window is None:
            return context.mask
        base = causal_mask(q_len, k_len, device) if context.mask is None else context.mask
        return base & window_mask(q_len, k_len, self.window, device)

    def _pattern(self, q, k, mask, key_positions, extra) -> tuple[Tensor, bool]:
        """The pattern, through the score and pattern hooks; also whether the hooks left
        scores and pattern as they were. (Scaling and masking write into the fresh
        scores: at 2048 positions each full-size temporary is n_heads x 16 MiB.)"""
        k = _repeat_kv(k, q.shape[2])
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k).div_(self.attn_scale)
        if self.alibi is not None:
            scores = self.alibi(scores, key_positions)
        if extra.position_bias is not None:
            scores = scores + extra.position_bias
        if self.soft_cap > 0:
            scores = self.soft_cap * torch.tanh(scores / self.soft_cap)
        if mask is None:
            mask = causal_mask(q.shape[1], k.shape[1], q.device)
        scores = scores.masked_fill_(~mask, float("-inf"))
        if extra.additive_mask is not None:
            scores = scores + extra.additive_mask
        scores, scores_kept = through(self.hook_attn_scores, scores)
        # Softmax in fp32 (as Hugging Face does for half precision).
        pattern = scores.float().softmax(dim=-1).to(q.dtype)
        pattern, pattern_kept = through(self.hook_pattern, pattern)
        return pattern, scores_kept and pattern_kept

    def _attend_fused(self, q, k, v, mask) -> Tensor:
        is_causal = mask is None and q.shape[1] == k.shape[1] and q.shape[1] > 1
        if mask is None and not is_causal:
            mask = causal_mask(q.shape[1], k.shape[1], q.device)
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            is_causal=is_causal,
            scale=1.0 / self.attn_scale,
            enable_gqa=k.shape[2] != q.shape[2],
        )
        return z.transpose(1, 2)

    def _output_fused(self, z: Float[Tensor, "batch pos head_index d_head"]) -> Tensor:
        flat_z = z.reshape(*z.shape[:2], self.n_heads * self.d_head)
        return F.linear(flat_z, self.W_O.reshape(-1, self.d_model).T, self.b_O)

    def _output_per_head(self, z: Float[Tensor, "batch pos head_index d_head"]) -> Tensor:
        result = self.hook_result(torch.einsum("bqhe,hed->bqhd", z, self.W_O))
        return result.sum(dim=-2) + self.b_O


class GroupedQueryAttention(Attention):
    """Attention whose `n_key_value_heads` key/value heads are shared by groups of query
    heads. Parameters `_W_K, _W_V [n_kv_heads, d_model, d_head]`; the properties
    `W_K`/`W_V` give them per query head. As in TransformerLens, `hook_k/hook_v` (and
    per-head key/value inputs) have `n_kv_heads` heads unless
    `ungroup_grouped_query_attention` is set; then keys and values are projected with
    `W_K`/`W_V`, one per query head."""

    def _init_key_value(self, cfg: ModelConfig) -> None:
        self.n_kv_heads = cfg.n_kv_heads
        self.repeats = cfg.n_heads // cfg.n_kv_heads
        self._W_K = head_major_parameter(cfg.d_model, cfg.n_kv_heads, cfg.d_head, cfg.dtype)
        self._W_V = head_major_parameter(cfg.d_model, cfg.n_kv_heads, cfg.d_head, cfg.dtype)
        self._b_K = nn.Parameter(torch.zeros(cfg.n_kv_heads, cfg.d_head, dtype=cfg.dtype))
        self._b_V = nn.Parameter(torch.zeros(cfg.n_kv_heads, cfg.d_head, dtype=cfg.dtype))
        self._ungroup_hooks = cfg.ungroup_grouped_query_attention
        if self._ungroup_hooks and cfg.use_qk_norm and cfg.qk_norm_scope == "all_heads":
            raise ConfigError(
                "ungroup_grouped_query_attention cannot be combined with "
                "qk_norm_scope='all_heads' (the key norm spans the grouped heads)."
            )

    def _key_value_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self._ungroup_hooks:
            return self.W_K, self.b_K, self.W_V, self.b_V
        return self._W_K, self._b_K, self._W_V, self._b_V

    @property
    def W_K(self) -> Tensor:
        return self._W_K.repeat_interleave(self.repeats, dim=0)

    @property
    def W_V(self) -> Tensor:
        return self._W_V.repeat_interleave(self.repeats, dim=0)

    @property
    def b_K(self) -> Tensor:
        return self._b_K.repeat_interleave(self.repeats, dim=0)

    @property
    def b_V(self) -> Tensor:
        return self._b_V.repeat_interleave(self.repeats, dim=0)


class QKNorm(nn.Module):
    """RMSNorm of queries or keys: per head over d_head (Qwen3), or over all heads
    together (OLMo 2, `qk_norm_scope="all_heads"`)."""

    def __init__(self, cfg: ModelConfig, n_heads: int) -> None:
        super().__init__()
        self.all_heads = cfg.qk_norm_scope == "all_heads"
        self.norm = RMSNorm(cfg, length=n_heads * cfg.d_head if self.all_heads else cfg.d_head)

    def forward(self, x: Float[Tensor, "batch pos head_index d_head"]) -> Tensor:
        if not self.all_heads:
            return self.norm(x)
        return self.norm(x.flatten(-2)).view_as(x)


def make_attention(cfg: ModelConfig, layer: int) -> Attention:
    """Plain multi-head attention, or grouped-query when n_key_value_heads < n_heads."""
    grouped = cfg.n_kv_heads != cfg.n_heads
    return (GroupedQueryAttention if grouped else Attention)(cfg, layer_id=layer)


def _attention_window(
    cfg: ModelConfig, attn_type: str | None, layer_id: int | None
) -> tuple[str, int | None]:
    """(attn_type, window) of a layer: from `attn_type` when given, else from the config."""
    if attn_type is None:
        window = cfg.layer_window(layer_id or 0)
        return ("global" if window is None else "local"), window
    if attn_type not in ("global", "local"):
        raise ConfigError(f"attn_type must be 'global' or 'local', got {attn_type!r}.")
    if attn_type == "local" and cfg.window_size is None:
        raise ConfigError("attn_type='local' needs cfg.window_size (the number of keys seen).")
    return attn_type, cfg.window_size if attn_type == "local" else None


@dataclass
class _ScoreTerms:
    """What a standalone caller adds to the scores (TransformerLens's arguments)."""

    position_bias: Tensor | None
    additive_mask: Tensor | None

    @property
    def empty(self) -> bool:
        return self.position_bias is None and self.additive_mask is None


def attention_context(
    batch: int,
    q_len: int,
    n_past: int,
    attention_mask: Int[Tensor, "batch key_pos"] | None,
    device: torch.device,
) -> AttentionContext:
    """The `AttentionContext` of `q_len` new positions after `n_past` cached ones, with an
    optional padding mask over all `n_past + q_len` positions (1 real, 0 padding).
    Positions count real tokens only, so a padded row is computed as it would be unpadded;
    a padding query sees itself, which keeps its softmax finite."""
    if attention_mask is None or bool(attention_mask.all()):
        key_positions = torch.arange(n_past + q_len, device=device).expand(batch, -1)
        mask = None if n_past == 0 else causal_mask(q_len, n_past + q_len, device)
        return AttentionContext(mask, key_positions[:, -q_len:], key_positions, None)
    attention_mask = attention_mask.to(device)
    k_len = attention_mask.shape[1]
    key_positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    allowed = causal_mask(q_len, k_len, device) & attention_mask.bool()[:, None, None, :]
    mask = allowed | _own_position(q_len, k_len, device)
    return AttentionContext(mask, key_positions[:, -q_len:], key_positions, attention_mask.bool())


def bidirectional_mask(
    key_is_real: Bool[Tensor, "batch key_pos"] | None, q_len: int, k_len: int, device
) -> Bool[Tensor, "#batch 1 query_pos key_pos"]:
    """`attention_dir="bidirectional"`: every query sees every key. Padding keys are
    masked (TransformerLens's `HookedTransformer` masks nothing, padding included; we
    keep a padded row's numbers equal to the unpadded row's, as for causal attention),
    and a padding query sees itself, which keeps its softmax finite."""
    everything = torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=device)
    if key_is_real is None:
        return everything
    return key_is_real.to(device)[:, None, None, :] | _own_position(q_len, k_len, device)


def _own_position(q_len: int, k_len: int, device) -> Bool[Tensor, "1 1 query_pos key_pos"]:
    """True where a query meets its own key (the last `q_len` keys are the queries)."""
    own = torch.zeros(q_len, k_len, dtype=torch.bool, device=device)
    own[torch.arange(q_len), torch.arange(q_len) + k_len - q_len] = True
    return own[None, None]


def _logn_scaled(
    q: Float[Tensor, "batch pos head_index d_head"],
    positions: Int[Tensor, "batch pos"],
    train_length: int,
) -> Tensor:
    """Queries at (1-based) position p > train_length scaled by log(p) / log(train_length),
    as TransformerLens 3.9 and Qwen-1 (positions count real tokens, so padding on the
    left does not shift them)."""
    p = (positions + 1).to(torch.float32)
    scale = torch.where(p > train_length, p.log() / math.log(train_length), torch.ones_like(p))
    return q * scale.to(q.dtype)[:, :, None, None]


def _repeat_kv(x: Tensor, n_heads: int) -> Tensor:
    """Repeat key/value heads so each query head has its own (no-op without grouping)."""
    return x if x.shape[2] == n_heads else x.repeat_interleave(n_heads // x.shape[2], dim=2)


def _weigh_values(pattern: Tensor, v: Tensor) -> Float[Tensor, "batch pos head_index d_head"]:
    """z: the values (repeated for grouped heads) weighted by the pattern."""
    return torch.einsum("bhqk,bkhe->bqhe", pattern, _repeat_kv(v, pattern.shape[1]))


def _project(x: Tensor, W: Tensor, b: Tensor) -> Float[Tensor, "batch pos head_index d_head"]:
    """Project a shared `[batch, pos, d_model]` or per-head `[batch, pos, head, d_model]`
    input with `W [head_index, d_model, d_head]`."""
    return _project_per_head(x, W, b) if x.dim() == 4 else _project_shared(x, W, b)


def _project_shared(x: Float[Tensor, "batch pos d_model"], W: Tensor, b: Tensor) -> Tensor:
    """All heads read the same input: one GEMM over the flattened head-major weight."""
    return simple_attn_linear(x, W, b)


def _project_per_head(
    x: Float[Tensor, "batch pos head_index d_model"], W: Tensor, b: Tensor
) -> Tensor:
    """Each head reads its own copy of the input. Given one copy per query head but fewer
    (grouped) key/value heads (`use_attn_in` without `use_split_qkv_input`, which
    TransformerLens refuses), each key/value head reads the copy of the first query head
    of its group."""
    if x.shape[2] != W.shape[0]:
        x = x[:, :, :: x.shape[2] // W.shape[0]]
    return complex_attn_linear(x, W, b)


def causal_mask(q_len: int, k_len: int, device: torch.device) -> Bool[Tensor, "1 1 q k"]:
    """True where query i (the last `q_len` of `k_len` positions) may attend to key j."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)[None, None]


def window_mask(
    q_len: int, k_len: int, window: int, device: torch.device
) -> Bool[Tensor, "1 1 q k"]:
    """True where key j is within the last `window` positions of query i (i - j < window)."""
    offset = k_len - q_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(offset - window + 1)[
        None, None
    ]
