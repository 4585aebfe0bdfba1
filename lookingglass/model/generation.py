"""Autoregressive generation with a key/value cache.

Each step feeds only the new token when `use_past_kv_cache` is on, so generating n
tokens costs one prompt pass plus n single-position passes. Greedy decoding
(`do_sample=False`) gives the same tokens with and without the cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lookingglass.errors import InputError
from lookingglass.model.kv_cache import KeyValueCache

if TYPE_CHECKING:
    from lookingglass.model.transformer import HookedTransformer


@torch.no_grad()
def generate(
    model: HookedTransformer,
    input: str | list[str] | Tensor,
    max_new_tokens: int = 10,
    stop_at_eos: bool = True,
    eos_token_id: int | None = None,
    do_sample: bool = True,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
    use_past_kv_cache: bool = True,
    prepend_bos: bool | None = None,
    padding_side: Literal["left", "right"] | None = None,
    return_type: Literal["input", "str", "tokens"] = "input",
    verbose: bool = True,
) -> str | list[str] | Int[Tensor, "batch pos_plus_new"]:
    """Continue `input` by up to `max_new_tokens` tokens.

    Strings are tokenized with the BOS policy of `to_tokens`; a batch of strings is
    left-padded so every row ends at its last real token. Rows that produce EOS (when
    `stop_at_eos`) are padded with EOS afterwards; generation stops when all have.
    Returns text for text input (or `return_type="str"`), otherwise token ids.
    """
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    if padding_side == "right" and isinstance(input, list):
        # Each row continues from its last position, which for a right-padded row is padding.
        raise InputError("generate pads a batch of strings on the left; drop padding_side='right'.")
    if isinstance(input, str | list):
        tokens, attention_mask = model._tokenize(
            input, prepend_bos, padding_side or "left", truncate=False
        )
    else:
        tokens = (input if input.dim() == 2 else input[None]).to(model.W_E.device)
        attention_mask = torch.ones_like(tokens)
    if eos_token_id is None and stop_at_eos:
        if model.tokenizer is None or model.tokenizer.eos_token_id is None:
            raise InputError("stop_at_eos needs an eos_token_id (the model has no tokenizer EOS).")
        eos_token_id = model.tokenizer.eos_token_id
    if tokens.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise InputError(
            f"Prompt ({tokens.shape[1]} tokens) plus max_new_tokens={max_new_tokens} exceeds "
            f"n_ctx={model.cfg.n_ctx}."
        )
    cache = KeyValueCache.init_cache(model.cfg) if use_past_kv_cache else None
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    all_tokens, all_mask = tokens, attention_mask
    step_tokens, step_mask = tokens, attention_mask
    for _ in tqdm(range(max_new_tokens), disable=not verbose):
        if cache is None:
            logits = model(all_tokens, attention_mask=all_mask)
        else:
            logits = model(step_tokens, attention_mask=step_mask, past_kv_cache=cache)
        next_logits = logits[:, -1].float()
        next_tokens = sample_logits(
            next_logits, all_tokens, do_sample, top_k, top_p, temperature, freq_penalty
        )
        if stop_at_eos:
            next_tokens = torch.where(
                finished, torch.full_like(next_tokens, eos_token_id), next_tokens
            )
            finished |= next_tokens == eos_token_id
        step_tokens = next_tokens[:, None]
        step_mask = torch.ones_like(step_tokens)
        all_tokens = torch.cat([all_tokens, step_tokens], dim=1)
        all_mask = torch.cat([all_mask, step_mask], dim=1)
        if stop_at_eos and bool(finished.all()):
            break
    text_out = return_type == "str" or (return_type == "input" and isinstance(input, str | list))
    if not text_out:
        return all_tokens
    texts = [_decode_row(model, row, mask) for row, mask in zip(all_tokens, all_mask, strict=True)]
    return texts[0] if isinstance(input, str) else texts


def _decode_row(model: HookedTransformer, row: Tensor, mask: Tensor) -> str:
    """Decode the real (unpadded) tokens of one row."""
    return model.to_string(row[mask.bool()])


def sample_logits(
    logits: Float[Tensor, "batch d_vocab"],
    previous: Int[Tensor, "batch pos"] | None = None,
    do_sample: bool = True,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
) -> Int[Tensor, " batch"]:
    """The next token of each row: argmax, or a sample after temperature, frequency
    penalty, top-k and nucleus (top-p) filtering."""
    if not do_sample or temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if freq_penalty and previous is not None:
        counts = torch.zeros_like(logits).scatter_add_(
            1, previous, torch.ones_like(previous, dtype=logits.dtype)
        )
        logits = logits - freq_penalty * counts
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Remove tokens once the mass before them already exceeds top_p (keep >= 1).
        remove_sorted = cumulative - sorted_logits.softmax(dim=-1) > top_p
        remove = remove_sorted.scatter(1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1)[:, 0]
