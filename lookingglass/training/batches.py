"""The hook for user data: anything tokenizable in, a reproducible stream of batches out.

`as_token_batches` accepts a LongTensor [n, seq], strings, token tensors or lists, or a
Hugging Face dataset; it turns them into rows once, up front (`data.token_rows`), so bad
input fails at the call rather than mid-training, then yields fixed-shape batches in an order
fixed by the seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.training.data import token_rows


def as_token_batches(
    data: Any,
    tokenizer: Any,
    seq_len: int,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    n_epochs: int | None = None,
    column_name: str = "text",
    add_bos_token: bool = True,
) -> Iterator[Int[Tensor, "batch seq_len"]]:
    """Batches of [batch_size, seq_len] token ids from any supported data, reproducibly.

    The data are turned into rows once, up front (see `token_rows`), so bad input fails
    here rather than mid-training. Each epoch visits the rows in a fresh order drawn from
    a `torch.Generator` seeded with `seed` (or in order, when `shuffle=False`); the last
    incomplete batch of an epoch is dropped so every batch has the same shape.

    Args:
        data: a LongTensor [n, seq], strings, token tensors/lists, or a Hugging Face dataset.
        tokenizer: needed for text; for token data it is optional and, when given,
            token ids are checked against its vocabulary size.
        seq_len: tokens per row (BOS included for text input when `add_bos_token`).
        batch_size: rows per batch.
        seed: the same seed gives the same batches in the same order.
        shuffle: shuffle rows each epoch.
        n_epochs: stop after this many passes; None streams forever.
        column_name: the text or token column of a Hugging Face dataset.
        add_bos_token: for text input, start every row with BOS.

    Returns:
        An iterator of LongTensors of shape [batch_size, seq_len].

    Raises:
        InputError: empty data, sequences shorter than `seq_len`, non-integer tokens,
            fewer rows than `batch_size`, or a non-positive size.
    """
    for name, value in (("seq_len", seq_len), ("batch_size", batch_size)):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if n_epochs is not None and n_epochs < 1:
        raise InputError(f"n_epochs must be >= 1 or None (forever), got {n_epochs}")
    rows = token_rows(data, tokenizer, seq_len, column_name, add_bos_token)
    if len(rows) < batch_size:
        raise InputError(
            f"the data give {len(rows)} rows of {seq_len} tokens, "
            f"fewer than batch_size={batch_size}"
        )
    return _batches(rows, batch_size, seed, shuffle, n_epochs)


def _batches(
    rows: Int[Tensor, "n_seq seq_len"],
    batch_size: int,
    seed: int,
    shuffle: bool,
    n_epochs: int | None,
) -> Iterator[Int[Tensor, "batch seq_len"]]:
    generator = torch.Generator().manual_seed(seed)
    epochs = itertools.count() if n_epochs is None else range(n_epochs)
    for _ in epochs:
        order = (
            torch.randperm(len(rows), generator=generator) if shuffle else torch.arange(len(rows))
        )
        for start in range(0, len(rows) - batch_size + 1, batch_size):
            yield rows[order[start : start + batch_size]]
