"""The models `run_all.py` benchmarks, and the four peers built on each one's weights.

Each model is a Hugging Face folder: random weights of GPT-2-small's shape or of a Llama
shape (made from a config and saved with `save_pretrained`), or the real SmolLM2-135M
(the float32 safetensors folder lookingglass converts its GGUF file into). Every peer
loads that same folder: Hugging Face with SDPA attention (its default) and with eager
attention, TransformerLens 3.9, and lookingglass.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

REAL = "smollm2-135m"


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: `family` is "gpt2", "llama" or "real" (SmolLM2-135M)."""

    label: str
    family: str
    shape: dict


# "quick" uses small random models so the whole run takes minutes on 2 cores; "full" uses
# GPT-2-small's shape and a ~110M-parameter Llama shape (GQA 12/4, rotary, SwiGLU).
SPECS = {
    "quick": [
        ModelSpec("gpt2 4L d256", "gpt2", dict(n_layer=4, n_embd=256, n_head=8)),
        ModelSpec(
            "llama 4L d256",
            "llama",
            dict(
                hidden_size=256,
                intermediate_size=512,
                num_hidden_layers=4,
                num_attention_heads=8,
                num_key_value_heads=2,
            ),
        ),
        ModelSpec(REAL, "real", {}),
    ],
    "full": [
        ModelSpec("gpt2-small shape", "gpt2", dict(n_layer=12, n_embd=768, n_head=12)),
        ModelSpec(
            "llama 12L d768",
            "llama",
            dict(
                hidden_size=768,
                intermediate_size=2048,
                num_hidden_layers=12,
                num_attention_heads=12,
                num_key_value_heads=4,
            ),
        ),
        ModelSpec(REAL, "real", {}),
    ],
}


def checkpoint(spec: ModelSpec, workdir: Path) -> Path:
    """The Hugging Face folder of `spec`, written into `workdir` on first use."""
    if spec.family == "real":
        from lookingglass.loading import gguf, gguf_models

        return gguf.converted_folder(gguf_models.gguf_path(gguf_models.GGUF_MODELS[REAL]))
    import transformers

    # A neutral folder name: TransformerLens takes any path holding "llama" for a Llama
    # and then never reads its config.
    folder = workdir / ("random_" + spec.label.replace("llama", "rotary").replace(" ", "_"))
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    if spec.family == "gpt2":
        config = transformers.GPT2Config(vocab_size=50257, n_positions=2048, **spec.shape)
        config.n_ctx = 2048  # TransformerLens reads it
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(
            vocab_size=32000, max_position_embeddings=2048, **spec.shape
        )
        model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return folder


def hf_model(folder: Path, attention: str):
    """Hugging Face's model from `folder`, fp32, with `attention` "sdpa" or "eager"."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        folder, attn_implementation=attention, dtype=torch.float32
    ).eval()


def our_model(spec: ModelSpec, folder: Path):
    """lookingglass's model: `from_pretrained` of the real model (as a user loads it, with
    the default weight processing), the unprocessed weights of the random ones."""
    from lookingglass import HookedTransformer

    if spec.family == "real":
        return HookedTransformer.from_pretrained(REAL, device="cpu").eval()
    return HookedTransformer.from_pretrained_no_processing(folder, device="cpu").eval()


def tl_model(folder: Path, hf):
    """TransformerLens 3.9's `HookedTransformer` on the same weights, unprocessed."""
    from common import build_tl_from_folder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tl_from_folder(folder, hf)


def peers(spec: ModelSpec, workdir: Path) -> dict:
    """{"hf_sdpa", "hf_eager", "tl", "ours"} models on the weights of `spec`."""
    folder = checkpoint(spec, workdir)
    sdpa = hf_model(folder, "sdpa")
    return dict(
        hf_sdpa=sdpa,
        hf_eager=hf_model(folder, "eager"),
        tl=tl_model(folder, sdpa),
        ours=our_model(spec, folder),
    )
