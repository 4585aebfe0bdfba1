"""`ModelConfig`: the one frozen description of a model's architecture.

Field names are TransformerLens's `HookedTransformerConfig` names wherever the concept is
the same, so configs written for TransformerLens carry over. Architecture differences are
config fields read once, when the model is built; derived fields are filled in
`__post_init__`, and every bad value is reported with the field's name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from lookingglass.errors import ConfigError

ACT_FNS = ("gelu_new", "gelu", "gelu_fast", "gelu_pytorch_tanh", "relu", "silu")
NORMALIZATION_TYPES = ("LN", "LNPre", "RMS", "RMSPre", None)
POSITIONAL_EMBEDDING_TYPES = ("standard", "rotary", "alibi")
NORM_PLACEMENTS = ("pre", "pre_and_post", "post")
ROPE_SCALING_KEYS = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}
ATTENTION_SCORE_TYPES = ("dot", "correlation")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and numerics of a `HookedTransformer`.

    Required: `n_layers`, `d_model`, `n_ctx`, `d_head`. Everything else has a default
    or is derived: `n_heads` (d_model // d_head), `d_mlp` (4 * d_model), `d_vocab_out`
    (d_vocab), `attn_scale` (sqrt(d_head)), `init_range` (0.8 / sqrt(d_model)).

    The `use_*` flags switch on optional hook points (as in TransformerLens); they cost
    memory and time only when switched on.
    """

    n_layers: int
    d_model: int
    n_ctx: int
    d_head: int
    n_heads: int = -1
    d_mlp: int | None = None
    d_vocab: int = -1
    d_vocab_out: int = -1
    act_fn: str | None = "gelu_new"
    eps: float = 1e-5
    normalization_type: str | None = "LN"
    attn_only: bool = False
    positional_embedding_type: str = "standard"
    n_key_value_heads: int | None = None
    ungroup_grouped_query_attention: bool = False
    use_attn_scale: bool = True
    attn_scale: float = -1.0
    # Architecture variants (each read once, when the model is built).
    rotary_dim: int | None = None
    rotary_base: float = 10000.0
    rotary_adjacent_pairs: bool = False
    rope_scaling: dict[str, Any] | None = None
    parallel_attn_mlp: bool = False
    attn_types: tuple[str, ...] | None = None
    window_size: int | None = None
    gated_mlp: bool = False
    num_experts: int | None = None
    experts_per_token: int | None = None
    use_qk_norm: bool = False
    qk_norm_scope: str = "head"
    attn_scores_soft_cap: float = -1.0
    output_logits_soft_cap: float = -1.0
    norm_placement: str = "pre"
    post_embedding_ln: bool = False
    # Optional hook points (TransformerLens's flags).
    use_attn_result: bool = False
    use_split_qkv_input: bool = False
    use_hook_mlp_in: bool = False
    use_attn_in: bool = False
    use_normalized_qkv_input: bool = False
    use_hook_tokens: bool = False
    # Research variants of attention (see model/attention.py and model/scores.py).
    smear_keys: bool = False
    attention_score: str = "dot"
    correlation_max_lag: int = 4
    # Identity and tokenization.
    model_name: str = "custom"
    original_architecture: str | None = None
    tokenizer_name: str | None = None
    default_prepend_bos: bool = True
    # Initialization and numerics.
    init_weights: bool = True
    init_range: float = -1.0
    seed: int | None = None
    dtype: torch.dtype = torch.float32
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_ctx", "d_head"):
            _check_positive_int(name, getattr(self, name))
        if self.n_heads == -1:
            if self.d_model % self.d_head:
                raise ConfigError(
                    f"n_heads was not given and d_model={self.d_model} is not a multiple "
                    f"of d_head={self.d_head}; pass n_heads explicitly."
                )
            object.__setattr__(self, "n_heads", self.d_model // self.d_head)
        _check_positive_int("n_heads", self.n_heads)
        if self.d_vocab != -1:
            _check_positive_int("d_vocab", self.d_vocab)
        if self.d_vocab_out == -1:
            object.__setattr__(self, "d_vocab_out", self.d_vocab)
        if self.attn_only:
            object.__setattr__(self, "d_mlp", None)
        else:
            if self.d_mlp is None:
                object.__setattr__(self, "d_mlp", 4 * self.d_model)
            _check_positive_int("d_mlp", self.d_mlp)
            _check_choice("act_fn", self.act_fn, ACT_FNS)
        _check_choice("normalization_type", self.normalization_type, NORMALIZATION_TYPES)
        _check_choice(
            "positional_embedding_type",
            self.positional_embedding_type,
            POSITIONAL_EMBEDDING_TYPES,
        )
        _check_choice("attention_score", self.attention_score, ATTENTION_SCORE_TYPES)
        _check_choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        _check_choice("qk_norm_scope", self.qk_norm_scope, ("head", "all_heads"))
        self._validate_variants()
        if self.attention_score == "correlation":
            _check_positive_int("correlation_max_lag", self.correlation_max_lag)
        if self.n_key_value_heads is not None:
            _check_positive_int("n_key_value_heads", self.n_key_value_heads)
            if self.n_heads % self.n_key_value_heads:
                raise ConfigError(
                    f"n_heads={self.n_heads} must be a multiple of "
                    f"n_key_value_heads={self.n_key_value_heads}."
                )
        if self.attn_scale == -1.0:
            scale = math.sqrt(self.d_head) if self.use_attn_scale else 1.0
            object.__setattr__(self, "attn_scale", scale)
        if self.init_range == -1.0:
            object.__setattr__(self, "init_range", 0.8 / math.sqrt(self.d_model))
        if isinstance(self.dtype, str):
            object.__setattr__(self, "dtype", _dtype_from_str(self.dtype))
        if self.eps <= 0:
            raise ConfigError(f"eps must be positive, got {self.eps}.")

    def _validate_variants(self) -> None:
        if self.positional_embedding_type == "rotary":
            if self.rotary_dim is None:
                object.__setattr__(self, "rotary_dim", self.d_head)
            _check_positive_int("rotary_dim", self.rotary_dim)
            if self.rotary_dim % 2 or self.rotary_dim > self.d_head:
                raise ConfigError(
                    f"rotary_dim={self.rotary_dim} must be even and <= d_head={self.d_head}."
                )
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if kind not in ROPE_SCALING_KEYS:
                raise ConfigError(
                    f"rope_scaling type {kind!r} is not supported; "
                    f"supported: {list(ROPE_SCALING_KEYS)}."
                )
            missing = [k for k in ROPE_SCALING_KEYS[kind] if k not in self.rope_scaling]
            if missing:
                raise ConfigError(f"rope_scaling of type {kind!r} lacks {missing}.")
        if self.attn_types is not None:
            object.__setattr__(self, "attn_types", tuple(self.attn_types))
            if len(self.attn_types) != self.n_layers:
                raise ConfigError(
                    f"attn_types has {len(self.attn_types)} entries for {self.n_layers} layers."
                )
            for t in self.attn_types:
                _check_choice("attn_types entry", t, ("global", "local"))
            if "local" in self.attn_types and self.window_size is None:
                raise ConfigError("attn_types has 'local' layers but window_size is not set.")
        if self.window_size is not None:
            _check_positive_int("window_size", self.window_size)
        if (self.num_experts is None) != (self.experts_per_token is None):
            raise ConfigError("num_experts and experts_per_token must be set together.")
        if self.num_experts is not None:
            _check_positive_int("num_experts", self.num_experts)
            _check_positive_int("experts_per_token", self.experts_per_token)
            if self.experts_per_token > self.num_experts:
                raise ConfigError("experts_per_token cannot exceed num_experts.")
        grouped = self.n_key_value_heads not in (None, self.n_heads)
        if grouped and (self.smear_keys or self.attention_score != "dot"):
            raise ConfigError(
                "smear_keys and correlation attention need n_key_value_heads == n_heads."
            )

    def layer_window(self, layer: int) -> int | None:
        """The attention window of a layer (None: global). Local layers come from
        `attn_types`; with `window_size` and no `attn_types`, every layer is local."""
        if self.attn_types is None:
            return self.window_size
        return self.window_size if self.attn_types[layer] == "local" else None

    @property
    def n_kv_heads(self) -> int:
        """Number of key/value heads (n_heads unless grouped-query attention)."""
        return self.n_key_value_heads or self.n_heads

    @property
    def n_params(self) -> int:
        """Number of parameters in the attention and MLP weights (as TransformerLens counts)."""
        per_layer = 4 * self.n_heads * self.d_model * self.d_head
        if not self.attn_only:
            per_layer += 2 * self.d_model * (self.d_mlp or 0)
        return per_layer * self.n_layers

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (dtype as a string) that `from_dict` reads back."""
        out = dataclasses.asdict(self)
        out["dtype"] = str(self.dtype).removeprefix("torch.")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from `to_dict` output; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"Unknown ModelConfig field(s) {unknown}. Known fields: {sorted(known)}."
            )
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed. Derived fields that still hold their derived
        value are derived again from the new fields (so `replace(d_head=32)` updates
        `attn_scale`); derived fields that were set explicitly are kept."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, unset in _DERIVED.items():
            if name in changes:
                continue
            try:
                derived = getattr(dataclasses.replace(self, **{name: unset}), name)
            except ConfigError:  # not derivable here (e.g. n_heads when d_model % d_head != 0)
                continue
            if data[name] == derived:
                data[name] = unset
        return type(self)(**{**data, **changes})

    def hash(self) -> str:
        """A stable short hash of the architecture (not of device or dtype)."""
        data = self.to_dict()
        data.pop("device", None)
        data.pop("dtype", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


HookedTransformerConfig = ModelConfig

# Fields filled in `__post_init__` when left at these values.
_DERIVED: dict[str, Any] = {
    "n_heads": -1,
    "d_mlp": None,
    "d_vocab_out": -1,
    "attn_scale": -1.0,
    "init_range": -1.0,
    "rotary_dim": None,
}


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; choose one of {list(choices)}.")


def _dtype_from_str(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"dtype={name!r} is not a torch dtype (e.g. 'float32', 'bfloat16').")
    return dtype
