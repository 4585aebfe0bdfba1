"""Shared fixtures: a tiny random GPT-2 checkpoint on disk, and TransformerLens built from it.

Everything is offline. The checkpoint is a real `transformers.GPT2LMHeadModel` saved with
`save_pretrained`, with a byte-level BPE tokenizer trained on fixed text, so loading code
sees exactly what a Hub download would give it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers

from tests._helpers import make_tokenizer

TINY_GPT2 = dict(n_layer=2, n_embd=64, n_head=4, n_positions=64)


def tiny_tokenizer():
    """The tests' tiny byte-level BPE tokenizer; `<|endoftext|>` (id 0) is BOS, EOS and
    padding, as in GPT-2."""
    tokenizer = make_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@torch.no_grad()
def randomize_gpt2(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter non-trivial values, seeded.

    Hugging Face initializes biases to 0 and LayerNorms to (1, 0) with small weights,
    which would make folding and bias handling untestable and logits nearly flat.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if param.ndim == 2:
            param.copy_(0.2 * noise)
        elif ".ln_" in name and name.endswith("weight"):
            param.copy_(1 + 0.2 * noise)
        else:
            param.copy_(0.1 * noise)


def save_gpt2_checkpoint(folder: Path, seed: int = 0, **config: object) -> Path:
    """Save a random `GPT2LMHeadModel` (tiny unless `config` says otherwise) and the tiny
    tokenizer to `folder`, with `n_ctx` in `config.json` as TransformerLens needs."""
    tokenizer = tiny_tokenizer()
    hf_config = transformers.GPT2Config(
        **{**TINY_GPT2, **config},
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(hf_config)
    randomize_gpt2(model, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config_path = folder / "config.json"
    saved = json.loads(config_path.read_text())
    saved["n_ctx"] = saved["n_positions"]
    config_path.write_text(json.dumps(saved, indent=2))
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny random GPT-2 (2 layers, d_model 64, 4 heads, n_ctx 64)."""
    return save_gpt2_checkpoint(tmp_path_factory.mktemp("tiny_gpt2"))


def _build_tl_model(
    folder: Path,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    refactor_factored_attn_matrices: bool = False,
):
    """TransformerLens 3.x's `HookedTransformer` for a local folder (GPT-2, Llama, ...),
    processed as asked.

    Its `from_pretrained` refuses local folders, so this runs its steps by hand. It picks
    the architecture from the words "llama" or "gemma" in the path when present, so keep
    them out of checkpoint folder names.
    """
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as lp

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    cfg = lp.get_pretrained_model_config(
        str(folder), hf_cfg=hf_model.config.to_dict(), fold_ln=fold_ln, device="cpu"
    )
    state_dict = lp.get_pretrained_state_dict(str(folder), cfg, hf_model)
    # TransformerLens needs a tokenizer that knows the folder it came from.
    model = HookedTransformer(cfg, transformers.AutoTokenizer.from_pretrained(folder))
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=refactor_factored_attn_matrices,
    )
    return model.eval()


@pytest.fixture(scope="session")
def build_tl_model() -> Callable[..., object]:
    """`build_tl_model(folder, **processing)`: TransformerLens's model for a local folder."""
    return _build_tl_model


@pytest.fixture(scope="session")
def make_gpt2_checkpoint() -> Callable[..., Path]:
    """`make_gpt2_checkpoint(folder, seed=0, **gpt2_config)`: save a random GPT-2 there."""
    return save_gpt2_checkpoint
