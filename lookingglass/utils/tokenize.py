"""Tokenization helpers with TransformerLens's names and meanings
(`transformer_lens.utilities.tokenize_utils`): BOS handling, attention masks, and
`tokenize_and_concatenate` returning a Hugging Face dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.utils.hf import keep_single_column
from lookingglass.utils.tensors import get_cumsum_along_dim


def tokenize_and_concatenate(
    dataset: Any,
    tokenizer: Any,
    streaming: bool = False,
    max_length: int = 1024,
    column_name: str = "text",
    add_bos_token: bool = True,
    num_proc: int | None = 10,
    set_format: bool = True,
) -> Any:
    """Tokenize a Hugging Face `Dataset`/`IterableDataset`, join documents with EOS, and
    cut the stream into rows of `max_length` (BOS first when `add_bos_token`), as
    TransformerLens's `utils.tokenize_and_concatenate`: the result is a dataset of the
    same kind with one column "tokens" (torch format when `set_format`).

    As in TransformerLens, each `map` batch (1,000 documents) is packed on its own: its
    ragged tail is dropped, and a batch shorter than one row is padded (with the pad
    token, or EOS when the tokenizer had none; a "<PAD>" pad token is added to the
    tokenizer then). `num_proc` is passed to `map` unless `streaming`.

    For a plain list of strings or a token tensor, and a result as one tensor packed
    across the whole input, use `lookingglass.training.tokenize_and_concatenate`.
    """
    if not hasattr(dataset, "map") or not hasattr(dataset, "features"):
        raise InputError(
            "utils.tokenize_and_concatenate takes a Hugging Face datasets.Dataset or "
            f"IterableDataset (got {type(dataset).__name__}); wrap texts with "
            "datasets.Dataset.from_dict({'text': texts}), or use "
            "lookingglass.training.tokenize_and_concatenate for lists and tensors."
        )
    dataset = keep_single_column(dataset, column_name)
    has_pad_token = tokenizer.pad_token is not None
    if not has_pad_token:
        tokenizer.add_special_tokens({"pad_token": "<PAD>"})
    seq_len = max_length - 1 if add_bos_token else max_length
    if tokenizer.eos_token is None:
        raise InputError("tokenize_and_concatenate needs a tokenizer with an EOS token.")

    def tokenize_function(examples: dict[str, list]) -> dict[str, np.ndarray]:
        text = examples[column_name]
        if not text:
            return {"tokens": np.array([], dtype=np.int64)}
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces: list[np.ndarray] = []
        for i, row in enumerate(encoded):
            if i:
                pieces.append(np.array([tokenizer.eos_token_id], dtype=np.int64))
            pieces.append(np.asarray(row, dtype=np.int64))
        tokens = np.concatenate(pieces)
        if len(tokens) < seq_len:
            n_rows = 1
            pad_id = tokenizer.pad_token_id if has_pad_token else tokenizer.eos_token_id
            tokens = np.concatenate([tokens, np.full(seq_len - len(tokens), pad_id)])
        else:
            n_rows = len(tokens) // seq_len
            tokens = tokens[: seq_len * n_rows]
        tokens = tokens.reshape(n_rows, seq_len)
        if add_bos_token:
            tokens = np.concatenate([np.full((n_rows, 1), tokenizer.bos_token_id), tokens], 1)
        return {"tokens": tokens}

    tokenized = dataset.map(
        tokenize_function,
        batched=True,
        remove_columns=[column_name],
        **({} if streaming else {"num_proc": num_proc}),
    )
    if set_format:
        tokenized.set_format(type="torch", columns=["tokens"])
    return tokenized


def get_tokenizer_with_bos(tokenizer: Any) -> Any:
    """The tokenizer, loaded again with `add_bos_token=True` when it does not add BOS
    itself (tokenizers without a BOS token, or that cannot be reloaded, are returned
    unchanged), as TransformerLens's."""
    if tokenizer.bos_token is None:
        return tokenizer
    init_kwargs = dict(tokenizer.init_kwargs)
    name_or_path = init_kwargs.pop("name_or_path")
    add_bos_token = init_kwargs.pop("add_bos_token", None)
    if add_bos_token is None:
        add_bos_token = getattr(tokenizer, "add_bos_token", False)
    if add_bos_token:
        return tokenizer
    from transformers import AutoTokenizer

    try:
        with_bos = AutoTokenizer.from_pretrained(name_or_path, add_bos_token=True, **init_kwargs)
    except (ValueError, OSError):
        return tokenizer
    with_bos.padding_side = tokenizer.padding_side
    return with_bos


def get_input_with_manually_prepended_bos(
    bos_token: str | None, input: str | list[str]
) -> str | list[str]:
    """`bos_token + input` (for each string of a list); unchanged when there is no BOS."""
    if bos_token is None:
        return input
    if isinstance(input, str):
        return bos_token + input
    return [bos_token + string for string in input]


def get_tokens_with_bos_removed(
    tokenizer: Any, tokens: Int[Tensor, "batch pos"], padding_side: str | None = None
) -> Int[Tensor, "batch pos_minus_1"]:
    """`tokens` without each row's BOS: the first column when padding is on the right;
    with left padding, the BOS after the leading pads (the last leading pad when BOS and
    pad are the same token). Unchanged when the tokenizer has no BOS."""
    if tokenizer.bos_token_id is None:
        return tokens
    padding_side = padding_side or tokenizer.padding_side
    if padding_side == "right":
        return tokens[..., 1:]
    shape = list(tokens.shape)
    shape[-1] -= 1
    if tokenizer.bos_token_id == tokenizer.pad_token_id:
        is_leading_pad = get_cumsum_along_dim(tokens.ne(tokenizer.pad_token_id), -1) == 0
        bos_positions = is_leading_pad.sum(-1) - 1
    else:
        bos_positions = (tokens == tokenizer.bos_token_id).int().argmax(-1)
    keep = torch.ones_like(tokens, dtype=torch.bool)
    keep[torch.arange(tokens.shape[0]), bos_positions] = False
    return tokens[keep].view(*shape)


def get_attention_mask(
    tokenizer: Any,
    tokens: Int[Tensor, "batch pos"],
    prepend_bos: bool,
    padding_side: str | None = None,
) -> Int[Tensor, "batch pos"]:
    """1 for real tokens, 0 for padding: only the leading pads (left padding) or trailing
    pads (right padding) count as padding. With left padding and a BOS that is also the
    pad token, the last leading pad is that BOS and is attended."""
    attention_mask = torch.ones_like(tokens)
    if tokenizer is None:
        return attention_mask
    padding_side = padding_side or tokenizer.padding_side
    is_not_pad = tokens.ne(tokenizer.pad_token_id)
    if padding_side == "right":
        attention_mask[get_cumsum_along_dim(is_not_pad, -1, reverse=True) == 0] = 0
        return attention_mask
    is_leading_pad = get_cumsum_along_dim(is_not_pad, -1) == 0
    attention_mask[is_leading_pad] = 0
    if prepend_bos and tokenizer.bos_token_id == tokenizer.pad_token_id:
        bos_positions = is_leading_pad.sum(-1) - 1
        attention_mask[torch.arange(attention_mask.shape[0]), bos_positions] = 1
    return attention_mask
