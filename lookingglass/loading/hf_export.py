"""Export a `HookedTransformer` as a Hugging Face `transformers` model with the same logits.

Processed models export too: a folded norm (`LNPre`) becomes a LayerNorm with weight 1
and bias 0, and the unembedding is untied when it no longer equals `W_E^T`. The
family's converter (`converters/<family>.py`) says how the weights map back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import transformers

from lookingglass.errors import ConfigError
from lookingglass.loading.converters import converter_for_architecture
from lookingglass.loading.pretrained import atomic_folder

if TYPE_CHECKING:
    from lookingglass.model.transformer import HookedTransformer

# A model trained natively has no original architecture; GPT-2 is the family that
# expresses a learned-position, LayerNorm transformer.
DEFAULT_ARCHITECTURE = "GPT2LMHeadModel"


def to_hf(
    model: HookedTransformer, architecture: str | None = None
) -> transformers.PreTrainedModel:
    """A Hugging Face model (e.g. `GPT2LMHeadModel`) computing the same logits as `model`.

    Its weights are copies, on `model`'s device and in its dtype; editing one model
    leaves the other alone.

    Args:
        model: the model to export.
        architecture: Hugging Face architecture name; defaults to the model's
            `cfg.original_architecture`, else GPT-2.

    Raises:
        UnsupportedArchitectureError: no converter for the architecture.
        ConfigError: the model uses something the architecture cannot express, or the
            family's converter does not export.
    """
    cfg = model.cfg
    architecture = architecture or cfg.original_architecture or DEFAULT_ARCHITECTURE
    converter = converter_for_architecture(architecture)
    if not hasattr(converter, "state_dict_to_hf"):
        raise ConfigError(
            f"Export to {architecture} is not implemented. Pass another architecture "
            "(e.g. 'LlamaForCausalLM') if the model fits it."
        )
    with torch.no_grad():
        hf_sd = {
            k: v.detach().clone()
            for k, v in converter.state_dict_to_hf(model.state_dict(), cfg).items()
        }
    tied = not any(key.startswith("lm_head.") for key in hf_sd)
    hf_config = converter.config_to_hf(cfg, tie_word_embeddings=tied)
    tokenizer = model.tokenizer
    if tokenizer is not None:
        hf_config.update(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    config = transformers.AutoConfig.for_model(**hf_config)
    model_class = getattr(transformers, hf_config["architectures"][0])
    # Hugging Face builds the model on "meta" and takes our tensors as its weights; its
    # own loading also computes the buffers derived from the config (rotary frequencies).
    hf_model, info = model_class.from_pretrained(
        None, config=config, state_dict=hf_sd, dtype=cfg.dtype, output_loading_info=True
    )
    missing = set(info["missing_keys"]) - ({"lm_head.weight"} if tied else set())
    if missing or info["unexpected_keys"] or info["mismatched_keys"]:
        raise RuntimeError(f"Export bug: {info}.")
    return hf_model.to(model.W_E.device).eval()


def save_hf(model: HookedTransformer, folder: str | Path) -> Path:
    """Save `model` as a Hugging Face checkpoint folder (config, safetensors, tokenizer).

    Written under a temporary name and renamed into place, so it is never half-written;
    `transformers.AutoModelForCausalLM.from_pretrained(folder)` loads it.
    """
    hf_model = to_hf(model)
    with atomic_folder(folder) as tmp:
        hf_model.save_pretrained(tmp)
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(tmp)
    return Path(folder)
