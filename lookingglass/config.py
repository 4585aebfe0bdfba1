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
POSITIONAL_EMBEDDING_TYPES = ("standard",)
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
    use_attn_scale: bool = True
    attn_scale: float = -1.0
    # Optional hook points (TransformerLens's flags).
    use_attn_result: bool = False
    use_split_qkv_input: bool = False
    use_hook_mlp_in: bool = False
    use_attn_in: bool = False
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
        """A copy with some fields changed (derived fields recomputed where left default)."""
        return dataclasses.replace(self, **changes)

    def hash(self) -> str:
        """A stable short hash of the architecture (not of device or dtype)."""
        data = self.to_dict()
        data.pop("device", None)
        data.pop("dtype", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


HookedTransformerConfig = ModelConfig


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
