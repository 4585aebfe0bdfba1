"""Builders shared by the core's tests: tiny random models, a tiny byte-level BPE
tokenizer, and a comparison that reports the largest difference.

Everything is built in memory from a fixed seed, so the tests are fast and offline.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lookingglass import HookedTransformer, ModelConfig

# The small GPT-2-shaped architecture most tests use (TransformerLens's field names).
SMALL = dict(
    n_layers=2,
    d_model=64,
    n_heads=4,
    d_head=16,
    d_mlp=256,
    n_ctx=64,
    act_fn="gelu_new",
    normalization_type="LN",
)
D_VOCAB = 101

# Text to train the tiny tokenizer on: enough repeated words that BPE learns merges
# such as " John" and " Mary", so multi-character single tokens exist.
CORPUS = [
    "When Mary and John went to the store, John gave a drink to Mary.",
    "The quick brown fox jumps over the lazy dog. The dog sleeps.",
    "def main():\n    return 42\n",
    "Alice and Bob talk about the weather; the weather is fine today.",
]


def one_cpu_thread() -> Iterator[None]:
    """Run with one intra-op thread, then restore. The models here are so small that on a
    busy machine OpenMP threads waiting for each other cost 40x the arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(
    seed: int = 0, tokenizer: Any = None, randomize: bool = True, **overrides: Any
) -> HookedTransformer:
    """A small random model. With `randomize`, every parameter (biases and norm weights
    too, which the default initialization sets to 0 and 1) is drawn at random, so that
    a test comparing against an independent computation also checks the biases."""
    fields = {**SMALL, "d_vocab": D_VOCAB if tokenizer is None else len(tokenizer), "seed": seed}
    fields.update(overrides)
    model = HookedTransformer(ModelConfig(**fields), tokenizer)
    if randomize:
        randomize_parameters(model, seed)
    return model.eval()


@torch.no_grad()
def randomize_parameters(model: torch.nn.Module, seed: int) -> None:
    """Give every floating parameter random values of a sensible scale."""
    generator = torch.Generator().manual_seed(seed + 1000)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "w":  # norm gains around 1
            param.copy_(1.0 + 0.2 * noise)
        elif leaf.startswith("b"):
            param.copy_(0.1 * noise)
        elif leaf.startswith("W_") or leaf.startswith("_W_"):
            param.copy_(noise / param.shape[-2] ** 0.5 if param.dim() >= 2 else noise)
        else:  # lag weights, smear logits: leave the variant's own initialization
            continue


def random_tokens(batch: int, pos: int, d_vocab: int = D_VOCAB, seed: int = 0) -> Tensor:
    """Random token ids `[batch, pos]` from a fixed seed."""
    return torch.randint(0, d_vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference, treating equal infinities (masked scores) as equal."""
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    a, b = a.detach().double(), b.detach().double()
    same_inf = torch.isinf(a) & torch.isinf(b) & (a == b)
    diff = torch.where(same_inf, torch.zeros_like(a), (a - b).abs())
    return float(diff.max()) if diff.numel() else 0.0


def assert_close(a: Tensor, b: Tensor, atol: float, what: str = "") -> float:
    """Assert `max |a - b| <= atol` and return the difference (for reporting)."""
    diff = max_abs_diff(a, b)
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol:g}"
    return diff


@functools.lru_cache(maxsize=1)
def _trained_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS * 20, trainer)
    return bpe


def make_tokenizer():
    """A tiny GPT-2-style tokenizer: byte-level BPE with `<|endoftext|>` as BOS, EOS and
    unknown token (a fresh object on every call, so tests cannot affect each other)."""
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast(
        tokenizer_object=_trained_bpe(),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


def rejected(*errors: type[Exception]) -> tuple[type[Exception], ...]:
    """What a call with an argument outside its annotation may raise: our own error, or,
    when the tests run with `--jaxtyping-packages` (STYLE.md), the type checker's, which
    rejects the value before our check runs."""
    from jaxtyping import TypeCheckError

    return (*errors, TypeCheckError)


def save_and_reload_tokenizer(folder: Path):
    """The tiny tokenizer saved to `folder` and loaded back with `AutoTokenizer`.

    TransformerLens re-loads a tokenizer from its `name_or_path` when attaching it, so a
    tokenizer built in memory must first exist as a folder."""
    from transformers import AutoTokenizer

    make_tokenizer().save_pretrained(folder)
    return AutoTokenizer.from_pretrained(str(folder))
