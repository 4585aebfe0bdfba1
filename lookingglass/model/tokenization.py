"""Text <-> tokens for a model, with one explicit BOS policy.

BOS policy: strings get the tokenizer's BOS token prepended when `prepend_bos` is True;
when `prepend_bos` is None the model's `cfg.default_prepend_bos` decides (True for GPT-2,
as in TransformerLens). The BOS id is prepended directly rather than left to the
tokenizer, so tokenizers that add BOS on their own (Llama's) and those that do not
(GPT-2's) behave the same. Token tensors are never modified. Batches of strings are
padded with the pad token (eos when there is none) on `padding_side` ("right" unless
told otherwise), and the attention mask says which positions are real.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError

PaddingSide = Literal["left", "right"]


def require_tokenizer(tokenizer):
    """The tokenizer, or a clear error when the model has none."""
    if tokenizer is None:
        raise InputError(
            "This model has no tokenizer, so it cannot take strings. Pass token ids, or "
            "attach one with model.set_tokenizer(tokenizer)."
        )
    return tokenizer


def bos_id(tokenizer) -> int:
    """The BOS token id (eos for tokenizers that define no BOS, as GPT-2's effectively)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise InputError(
            "The tokenizer defines neither a BOS nor an EOS token; use prepend_bos=False."
        )
    return bos


def pad_id(tokenizer) -> int:
    """The id used for padding: the pad token, else eos, else BOS."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id):
        if candidate is not None:
            return candidate
    return 0


def tokenize(
    tokenizer,
    text: str | list[str],
    prepend_bos: bool,
    padding_side: PaddingSide = "right",
    max_length: int | None = None,
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Token ids and attention mask for one string or a batch (padded), BOS per the policy.

    `max_length` truncates each row (after BOS) when given."""
    tokenizer = require_tokenizer(tokenizer)
    texts = [text] if isinstance(text, str) else list(text)
    if not texts:
        raise InputError("Got an empty list of strings; pass at least one string.")
    if not all(isinstance(t, str) for t in texts):
        raise InputError("Expected a string or a list of strings.")
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if prepend_bos:
        rows = [[bos_id(tokenizer), *row] for row in rows]
    if max_length is not None:
        rows = [row[:max_length] for row in rows]
    width = max(len(row) for row in rows)
    tokens = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if padding_side == "left" else slice(0, len(row))
        tokens[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return tokens, mask


def to_string(tokenizer, tokens) -> str | list[str]:
    """Decode ids: a 1-D tensor or list gives a string, a 2-D tensor a list of strings."""
    tokenizer = require_tokenizer(tokenizer)
    if isinstance(tokens, Tensor):
        if tokens.dim() == 2:
            return [
                tokenizer.decode(row.tolist(), clean_up_tokenization_spaces=False) for row in tokens
            ]
        tokens = tokens.reshape(-1).tolist()
    return tokenizer.decode(list(tokens), clean_up_tokenization_spaces=False)


def to_str_tokens(tokenizer, tokens: Tensor) -> list[str] | list[list[str]]:
    """Each token decoded on its own: a list (1-D input) or a list of lists (2-D)."""
    tokenizer = require_tokenizer(tokenizer)
    if tokens.dim() == 2:
        return [to_str_tokens(tokenizer, row) for row in tokens]
    return [tokenizer.decode([t], clean_up_tokenization_spaces=False) for t in tokens.tolist()]


def to_single_token(tokenizer, string: str) -> int:
    """The id of a string that is exactly one token; an error naming the split otherwise."""
    tokenizer = require_tokenizer(tokenizer)
    ids = tokenizer(string, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise InputError(
            f"{string!r} is not a single token: it tokenizes to {len(ids)} tokens {pieces}."
        )
    return ids[0]
