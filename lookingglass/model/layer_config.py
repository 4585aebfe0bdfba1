"""The config a component is built from: a `ModelConfig`, or a dict of its fields.

TransformerLens's components accept `HookedTransformerConfig` or a plain dict
(`Attention({"n_layers": 1, "d_model": 64, ...})`); ours accept the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError


def as_config(cfg: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    """`cfg` itself, or a `ModelConfig` built from a dict (unknown fields are an error
    naming them)."""
    if isinstance(cfg, ModelConfig):
        return cfg
    if isinstance(cfg, Mapping):
        return ModelConfig.from_dict(dict(cfg))
    raise ConfigError(
        f"A component takes a ModelConfig or a dict of its fields, got {type(cfg).__name__}."
    )
