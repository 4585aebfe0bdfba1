"""`ModelConfig`: the one description of a model's architecture.

Field names are TransformerLens's `HookedTransformerConfig` names wherever the concept is
the same, so configs written for TransformerLens carry over: every TransformerLens 3.9
field is accepted with its default and meaning; the few whose non-default values our model
does not implement raise a `ConfigError` naming the field (see `config_transformerlens`).
Architecture differences are config fields read once, when the model is built; derived
fields are filled in `__post_init__`, and every bad value is reported with the field's
name. Like TransformerLens's dataclass, a config is mutable
(`model.cfg.default_prepend_bos = False`); `replace` gives a validated copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pprint
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lookingglass.config_transformerlens import resolve_transformerlens_fields
from lookingglass.errors import ConfigError

ACT_FNS = (
    "gelu_new",
    "gelu",
    "gelu_fast",
    "gelu_pytorch_tanh",
    "relu",
    "silu",
    "relu2",
    "solu",
    "solu_ln",
    "xielu",
)
NORMALIZATION_TYPES = ("LN", "LNPre", "RMS", "RMSPre", None)
POSITIONAL_EMBEDDING_TYPES = ("standard", "shortformer", "rotary", "alibi")
NORM_PLACEMENTS = ("pre", "pre_and_post", "post")
ROPE_SCALING_KEYS = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}
ATTENTION_SCORE_TYPES = ("dot", "correlation")


@dataclass
class ModelConfig:
    """Architecture and numerics of a `HookedTransformer`.

    Required: `n_layers`, `d_model`, `n_ctx`, `d_head`. Everything else has
    TransformerLens's default or is derived: `n_heads` (d_model // d_head), `d_mlp`
    (4 * d_model), `d_vocab_out` (d_vocab), `attn_scale` (sqrt(d_head)), `init_range`
    (= TransformerLens's `initializer_range`, 0.8 / sqrt(d_model) with `init_mode="gpt2"`,
    else 1.0), `n_params`.

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
    act_fn: str | None = "relu"
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
    # TransformerLens 3.9 fields not named above (config_transformerlens.py says how each
    # is honoured: as a synonym of a field above, as metadata, or refused when non-default).
    n_params: int | None = None
    initializer_range: float = -1.0
    init_mode: str = "gpt2"
    attention_dir: str = "causal"
    n_devices: int = 1
    use_local_attn: bool = False
    use_normalization_before_and_after: bool = False
    use_NTK_by_parts_rope: bool = False
    NTK_by_parts_low_freq_factor: float = 1.0
    NTK_by_parts_high_freq_factor: float = 4.0
    NTK_by_parts_factor: float = 8.0
    NTK_original_ctx_len: int = 8192
    norm_topk_prob: bool | None = None
    tokenizer_prepends_bos: bool | None = None
    from_checkpoint: bool = False
    checkpoint_index: int | None = None
    checkpoint_label_type: str | None = None
    checkpoint_value: int | None = None
    train_seq_length: int | None = None
    uses_rms_norm: bool = False
    layer_norm_folding: bool = False
    trust_remote_code: bool = False
    tie_word_embeddings: bool = False
    relative_attention_max_distance: int | None = None
    relative_attention_num_buckets: int | None = None
    decoder_start_token_id: int | None = None
    final_rms: bool = False
    clip_qkv: float | None = None
    use_logn_attn: bool = False
    use_dynamic_ntk_rope: bool = False
    scale_attn_by_inverse_layer_idx: bool = False
    rotary_base_local: float | None = None
    rotary_scaling_factor: float = 1.0
    load_in_4bit: bool = False
    quantization_method: str | None = None
    use_yarn_rope: bool = False
    yarn_factor: float = 1.0
    yarn_attention_factor: float = 1.0
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    yarn_original_max_position_embeddings: int = 4096
    yarn_truncate: bool = True
    yarn_global_attn_only: bool = False
    use_attention_sinks: bool = False

    def __post_init__(self) -> None:
        resolve_transformerlens_fields(self)
        _check_numbers(self, ("n_layers", "d_model", "n_ctx", "d_head"))  # n_heads needs them
        if self.n_heads == -1:
            if self.d_model % self.d_head:
                raise ConfigError(
                    f"n_heads was not given and d_model={self.d_model} is not a multiple "
                    f"of d_head={self.d_head}; pass n_heads explicitly."
                )
            object.__setattr__(self, "n_heads", self.d_model // self.d_head)
        if self.d_vocab_out == -1:
            object.__setattr__(self, "d_vocab_out", self.d_vocab)
        if self.attn_only:
            object.__setattr__(self, "d_mlp", None)
        else:
            if self.d_mlp is None:
                object.__setattr__(self, "d_mlp", 4 * self.d_model)
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
        if self.positional_embedding_type == "rotary" and self.rotary_dim is None:
            object.__setattr__(self, "rotary_dim", self.d_head)
        if self.attn_scale == -1.0:
            scale = math.sqrt(self.d_head) if self.use_attn_scale else 1.0
            object.__setattr__(self, "attn_scale", scale)
        if self.init_range == -1.0:  # TransformerLens: a gain of 1 for the other init modes
            default = 0.8 / math.sqrt(self.d_model) if self.init_mode == "gpt2" else 1.0
            object.__setattr__(self, "init_range", default)
        _check_numbers(self)
        self._validate_variants()
        if self.n_key_value_heads is not None:
            if self.n_heads % self.n_key_value_heads:
                raise ConfigError(
                    f"n_heads={self.n_heads} must be a multiple of "
                    f"n_key_value_heads={self.n_key_value_heads}."
                )
        if isinstance(self.dtype, str):
            object.__setattr__(self, "dtype", _dtype_from_str(self.dtype))
        if self.default_prepend_bos not in (True, False):
            raise ConfigError(
                f"default_prepend_bos must be True or False, got {self.default_prepend_bos!r}."
            )
        self.initializer_range = self.init_range
        self.n_params = self._count_params()
        if self.seed is not None:
            self.set_seed_everywhere(self.seed)

    def _validate_variants(self) -> None:
        if self.positional_embedding_type == "rotary":
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
        if (self.num_experts is None) != (self.experts_per_token is None):
            raise ConfigError("num_experts and experts_per_token must be set together.")
        if self.num_experts is not None:
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

    def _count_params(self) -> int:
        """TransformerLens's `n_params`: the attention and MLP weight matrices only (no
        embeddings, biases or norms): 4 * n_heads * d_model * d_head per layer, plus
        d_model * d_mlp * (2, or 3 when gated) per MLP, and for a mixture of experts
        (that + d_model) * num_experts (the router counted once per expert, as theirs)."""
        per_layer = 4 * self.n_heads * self.d_model * self.d_head
        if not self.attn_only:
            mlp = self.d_model * self.d_mlp * (2 + self.gated_mlp)
            if self.num_experts:
                mlp = (mlp + self.d_model) * self.num_experts
            per_layer += mlp
        return per_layer * self.n_layers

    @staticmethod
    def set_seed_everywhere(seed: int) -> None:
        """Seed torch, Python's `random` and numpy (TransformerLens calls this in
        `__post_init__` when `seed` is set; so do we)."""
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)

    def is_layer_norm_activation(self) -> bool:
        """Whether the activation has a LayerNorm after it ("solu_ln")."""
        return self.act_fn is not None and self.act_fn.endswith("_ln")

    @classmethod
    def unwrap(cls, config: dict[str, Any] | ModelConfig) -> ModelConfig:
        """A config from a config or a dict of fields (TransformerLens's `unwrap`)."""
        return cls.from_dict(config) if isinstance(config, dict) else config

    def __repr__(self) -> str:
        return "HookedTransformerConfig:\n" + pprint.pformat(self.to_dict())

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
        for name in _HASH_IGNORED:  # derived, or TransformerLens-only metadata
            data.pop(name, None)
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
    "n_params": None,
    "initializer_range": -1.0,
    "norm_topk_prob": None,
    # TransformerLens synonyms, derived from our fields (config_transformerlens.py).
    "use_local_attn": False,
    "use_normalization_before_and_after": False,
    "use_NTK_by_parts_rope": False,
    "NTK_by_parts_low_freq_factor": 1.0,
    "NTK_by_parts_high_freq_factor": 4.0,
    "NTK_by_parts_factor": 8.0,
    "NTK_original_ctx_len": 8192,
    "rotary_scaling_factor": 1.0,
}
# Fields left out of `hash()`: derived from others, or synonyms and metadata added for
# TransformerLens (so adding them did not change the hash of any existing config).
_HASH_IGNORED = (
    "n_params",
    "initializer_range",
    "init_mode",
    "attention_dir",
    "n_devices",
    "use_local_attn",
    "use_normalization_before_and_after",
    "use_NTK_by_parts_rope",
    "NTK_by_parts_low_freq_factor",
    "NTK_by_parts_high_freq_factor",
    "NTK_by_parts_factor",
    "NTK_original_ctx_len",
    "norm_topk_prob",
    "tokenizer_prepends_bos",
    "from_checkpoint",
    "checkpoint_index",
    "checkpoint_label_type",
    "checkpoint_value",
    "train_seq_length",
    "uses_rms_norm",
    "layer_norm_folding",
    "trust_remote_code",
    "tie_word_embeddings",
    "relative_attention_max_distance",
    "relative_attention_num_buckets",
    "decoder_start_token_id",
    "final_rms",
    "clip_qkv",
    "use_logn_attn",
    "use_dynamic_ntk_rope",
    "scale_attn_by_inverse_layer_idx",
    "rotary_base_local",
    "rotary_scaling_factor",
    "load_in_4bit",
    "quantization_method",
    "use_yarn_rope",
    "yarn_factor",
    "yarn_attention_factor",
    "yarn_beta_fast",
    "yarn_beta_slow",
    "yarn_original_max_position_embeddings",
    "yarn_truncate",
    "yarn_global_attn_only",
    "use_attention_sinks",
)


# What each numeric field must be, checked in one place (`_check_numbers`).
# Sizes: field -> largest accepted value. Each is a positive integer; the bound is far
# above any real model, so that a typo or a hostile config.json (ten million layers)
# fails at once instead of exhausting memory while the model is built. None (for the
# optional ones) means "not used"; d_vocab -1 means "not known yet".
_SIZES: dict[str, int] = {
    "n_layers": 10_000,
    "d_model": 2**20,
    "n_ctx": 2**26,
    "d_head": 2**16,
    "n_heads": 2**16,
    "d_mlp": 2**24,
    "d_vocab": 2**24,
    "d_vocab_out": 2**24,
    "n_key_value_heads": 2**16,
    "rotary_dim": 2**16,
    "window_size": 2**26,
    "num_experts": 2**16,
    "experts_per_token": 2**16,
    "correlation_max_lag": 2**16,
}
_OPTIONAL_SIZES = {"d_mlp", "n_key_value_heads", "rotary_dim", "window_size", "num_experts"}
_OPTIONAL_SIZES |= {"experts_per_token"}
_UNKNOWN_VOCAB = {"d_vocab": -1, "d_vocab_out": -1}
# Real numbers: field -> (rule, test); every one must also be finite.
_REALS: dict[str, tuple[str, Any]] = {
    "eps": ("positive", lambda x: x > 0),
    "attn_scale": ("positive", lambda x: x > 0),
    "init_range": ("non-negative", lambda x: x >= 0),
    "rotary_base": ("positive", lambda x: x > 0),
    "attn_scores_soft_cap": ("positive, or -1 for none", lambda x: x > 0 or x == -1),
    "output_logits_soft_cap": ("positive, or -1 for none", lambda x: x > 0 or x == -1),
}


def _check_numbers(cfg: ModelConfig, names: tuple[str, ...] | None = None) -> None:
    """Check numeric fields (`names`, default all in `_SIZES` and `_REALS`) against
    their rules, raising `ConfigError` naming the first bad field."""
    for name in names if names is not None else (*_SIZES, *_REALS):
        value = getattr(cfg, name)
        if name in _REALS:
            rule, test = _REALS[name]
            real = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (real and math.isfinite(value) and test(value)):
                raise ConfigError(f"{name} must be a finite number, {rule}; got {value!r}.")
            continue
        if (value is None and name in _OPTIONAL_SIZES) or value == _UNKNOWN_VOCAB.get(name):
            continue
        if name == "correlation_max_lag" and cfg.attention_score != "correlation":
            continue
        _check_positive_int(name, value)
        if value > _SIZES[name]:
            raise ConfigError(
                f"{name}={value} is larger than any real model's (the limit is "
                f"{_SIZES[name]}); check the config (for a checkpoint, its config.json)."
            )


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
