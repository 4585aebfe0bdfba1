"""Converters between Hugging Face checkpoints and lookingglass's layout, one file per family.

A converter is a module that defines:

* `ARCHITECTURES` (Hugging Face `architectures` names) and `MODEL_TYPE` (`model_type`);
* `config_from_hf(hf_config, **overrides) -> ModelConfig`;
* `state_dict_from_hf(hf_sd, cfg, hf_config=None) -> dict` (our keys; views where possible);
* `config_to_hf(cfg, tie_word_embeddings) -> dict` and `state_dict_to_hf(sd, cfg) -> dict`
  for export.

Adding a family is one new file plus one entry in `FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from lookingglass.errors import ConfigError, UnsupportedArchitectureError
from lookingglass.loading.converters import (
    bloom,
    gemma,
    gemma2,
    gpt2,
    gpt_neo,
    gpt_neox,
    gptj,
    llama,
    mistral,
    mixtral,
    olmo2,
    opt,
    phi3,
    qwen2,
    qwen3,
    stablelm,
)

FAMILIES: tuple[ModuleType, ...] = (
    gpt2,
    *(gpt_neo, gptj, gpt_neox, opt, bloom, stablelm),  # the GPT line
    *(llama, mistral, mixtral, qwen2, qwen3, gemma, gemma2, phi3, olmo2),  # the Llama line
)

# Architecture names and model types -> converter module.
CONVERTERS: dict[str, ModuleType] = {
    name: family for family in FAMILIES for name in (*family.ARCHITECTURES, family.MODEL_TYPE)
}


def supported_architectures() -> list[str]:
    """The Hugging Face architecture names that load natively."""
    return [name for family in FAMILIES for name in family.ARCHITECTURES]


def converter_for(hf_config: Mapping[str, Any]) -> ModuleType:
    """The converter for a Hugging Face `config.json` dict, by `architectures` then `model_type`.

    Raises:
        ConfigError: `architectures` is not a list of strings (e.g. a bare string).
        UnsupportedArchitectureError: no name is known, listing the supported families.
    """
    architectures = architectures_of(hf_config, _supported())
    model_type = hf_config.get("model_type")
    names = [*architectures, model_type]
    for name in names:
        if isinstance(name, str) and name in CONVERTERS:
            return CONVERTERS[name]
    if not architectures and model_type is None:
        return _unsupported(
            "(config.json gives neither 'architectures' nor 'model_type'; add the "
            'architecture, e.g. "architectures": ["LlamaForCausalLM"])'
        )
    return _unsupported(
        f"{', '.join(repr(n) for n in names if n is not None)} (from config.json's "
        "'architectures' and 'model_type')"
    )


def architectures_of(hf_config: Mapping[str, Any], supported: str) -> list[str]:
    """The `architectures` list of a `config.json` dict ([] when absent).

    Raises:
        ConfigError: it is not a list of strings (e.g. a bare string), naming the field
            and `supported` (what the caller loads).
    """
    architectures = hf_config.get("architectures")
    if architectures is None:
        return []
    if not (isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)):
        raise ConfigError(
            f"config.json field 'architectures' must be a list of architecture names, e.g. "
            f'["GPT2LMHeadModel"]; got {architectures!r}. Supported: {supported}.'
        )
    return architectures


def converter_for_architecture(architecture: str) -> ModuleType:
    """The converter for one architecture name (e.g. `cfg.original_architecture`)."""
    if architecture in CONVERTERS:
        return CONVERTERS[architecture]
    return _unsupported(repr(architecture))


def _unsupported(what: str) -> ModuleType:
    raise UnsupportedArchitectureError(
        f"Architecture {what} is not supported natively. Supported: {_supported()}. To add "
        "hooks to any Hugging Face causal language model, use lookingglass.HookedAutoModel."
    )


def _supported() -> str:
    """The supported families with their architecture names, for messages."""
    return "; ".join(
        f"{family.MODEL_TYPE} ({', '.join(family.ARCHITECTURES)})" for family in FAMILIES
    )
