"""Turn text or tokens into fixed-length training rows.

`tokenize_and_concatenate` packs documents into rows the way TransformerLens's function
of the same name does (documents joined by EOS, chopped into rows, BOS in front of each
row), but returns one tensor and packs the whole input at once rather than per
`datasets.map` batch. `token_rows` gives the rows of any supported data: text is packed,
token sequences are taken one per row.

A Hugging Face `datasets.Dataset` or `IterableDataset` is recognized by its methods;
`datasets` is never imported here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError

_ENCODE_BATCH = 1000  # documents per tokenizer call: big enough to use all cores


def _is_hf_dataset(data: Any) -> bool:
    return hasattr(data, "column_names") and hasattr(data, "iter") and not isinstance(data, Tensor)


def _iter_documents(data: Any, column_name: str) -> Iterator[Any]:
    """Yield documents (strings or token sequences) from any supported container."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, Tensor):
        if data.ndim not in (1, 2):
            raise InputError(f"a token tensor must be 1-D or 2-D, got shape {tuple(data.shape)}")
        yield from ([data] if data.ndim == 1 else data)
    elif _is_hf_dataset(data):
        columns = data.column_names
        if columns is not None and column_name not in columns:
            raise InputError(
                f"dataset has no column {column_name!r}; its columns are {columns}; "
                "pass column_name="
            )
        for batch in data.iter(batch_size=_ENCODE_BATCH):
            yield from batch[column_name]
    elif isinstance(data, Iterable):
        yield from data
    else:
        raise InputError(
            f"cannot read documents from a {type(data).__name__}; pass a LongTensor, strings, "
            "token lists or tensors, or a Hugging Face dataset"
        )


def _as_token_array(doc: Any, index: int) -> np.ndarray:
    """One pre-tokenized document as an int64 array, or a clear error."""
    if isinstance(doc, Tensor):
        if doc.dtype.is_floating_point or doc.dtype.is_complex or doc.dtype == torch.bool:
            raise InputError(
                f"document {index}: token tensor has dtype {doc.dtype}; "
                "expected an integer dtype (long)"
            )
        array = doc.detach().cpu().numpy()
    else:
        array = np.asarray(doc)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        if array.size == 0 and array.ndim == 1:
            return array.astype(np.int64)
        raise InputError(
            f"document {index}: expected a string or a 1-D sequence of integer token ids, "
            f"got {type(doc).__name__} with dtype {array.dtype} and shape {array.shape}"
        )
    if array.size and array.min() < 0:
        raise InputError(f"document {index}: negative token id {int(array.min())}")
    return array.astype(np.int64, copy=False)


def _encode_chunks(documents: Iterator[Any], tokenizer: Any) -> Iterator[list[np.ndarray]]:
    """Tokenize documents in chunks; pre-tokenized documents pass through."""
    index = 0
    while chunk := list(itertools.islice(documents, _ENCODE_BATCH)):
        if all(isinstance(doc, str) for doc in chunk):
            # add_special_tokens=False: documents are joined with EOS below, and some
            # tokenizers would otherwise put BOS/EOS around every document.
            ids = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False)[
                "input_ids"
            ]
            yield [np.asarray(row, dtype=np.int64) for row in ids]
        else:
            yield [_as_token_array(doc, index + i) for i, doc in enumerate(chunk)]
        index += len(chunk)


def _special_id(tokenizer: Any, attribute: str, needed_for: str) -> int:
    token_id = getattr(tokenizer, attribute, None)
    if token_id is None:
        raise InputError(
            f"the tokenizer has no {attribute} ({needed_for}); "
            "set one or pass a tokenizer that has it"
        )
    return int(token_id)


def tokenize_and_concatenate(
    dataset: Any,
    tokenizer: Any,
    seq_len: int | None = None,
    column_name: str = "text",
    add_bos_token: bool = True,
    num_proc: int | None = None,
    *,
    max_length: int | None = None,
    streaming: bool = False,
) -> Int[Tensor, "n_seq seq_len"]:
    """Tokenize documents, join them with EOS, and cut the stream into rows of `seq_len`.

    Each row is `[BOS] + (seq_len - 1)` tokens of the stream when `add_bos_token`, else
    `seq_len` tokens; the ragged tail is dropped. On a `datasets.Dataset` of at most
    1,000 rows this gives the same tokens as TransformerLens's
    `utils.tokenize_and_concatenate(dataset, tokenizer, max_length=seq_len)["tokens"]`
    (TransformerLens packs each `map` batch of 1,000 rows separately, so on larger data
    it drops a tail and omits an EOS per batch; we pack the whole input).

    Args:
        dataset: a list or any iterable of strings, a single string, a Hugging Face
            `Dataset`/`IterableDataset` (its `column_name` column), already-tokenized
            documents (1-D tensors or lists of ints), or a token tensor (1-D: one
            document; 2-D: one document per row).
        tokenizer: a Hugging Face tokenizer with `eos_token_id` (and `bos_token_id` when
            `add_bos_token`). Strings are encoded in batches without special tokens.
        seq_len: length of each output row, BOS included. `max_length` is the
            TransformerLens name for the same thing; pass one of them (default 1024).
        column_name: the text column of a Hugging Face dataset.
        add_bos_token: put `bos_token_id` at the start of every row.
        num_proc, streaming: accepted for TransformerLens compatibility and ignored:
            input is always read as a stream and tokenized in batches in-process.

    Returns:
        LongTensor of shape [n_seq, seq_len].

    Raises:
        InputError: no data, too little data for one row, bad token values or dtypes,
            or a tokenizer without the EOS/BOS token it needs.
    """
    del num_proc, streaming
    if seq_len is not None and max_length is not None and seq_len != max_length:
        raise InputError(f"seq_len={seq_len} and max_length={max_length} disagree; pass only one")
    seq_len = seq_len if seq_len is not None else max_length if max_length is not None else 1024
    content_len = seq_len - 1 if add_bos_token else seq_len
    if content_len < 1:
        raise InputError(f"seq_len={seq_len} leaves no room for tokens after BOS; use seq_len >= 2")
    if tokenizer is None:
        raise InputError(
            "tokenize_and_concatenate needs a tokenizer: it encodes text, and its EOS and BOS "
            "ids join documents and start rows; pass tokenizer="
        )
    eos_id = _special_id(tokenizer, "eos_token_id", "it separates documents")
    bos_id = _special_id(tokenizer, "bos_token_id", "add_bos_token=True") if add_bos_token else None

    pieces: list[np.ndarray] = []
    n_docs = 0
    eos = np.array([eos_id], dtype=np.int64)
    for chunk in _encode_chunks(_iter_documents(dataset, column_name), tokenizer):
        for doc in chunk:
            # EOS goes between documents, not before the first or after the last.
            if n_docs:
                pieces.append(eos)
            pieces.append(doc)
            n_docs += 1
    if n_docs == 0:
        raise InputError("tokenize_and_concatenate got no documents")
    stream = np.concatenate(pieces)
    n_seq = len(stream) // content_len
    if n_seq == 0:
        raise InputError(
            f"{n_docs} documents give {len(stream)} tokens, fewer than the {content_len} "
            f"needed for one row of seq_len={seq_len}; pass more text or a smaller seq_len"
        )
    rows = torch.from_numpy(stream[: n_seq * content_len].reshape(n_seq, content_len))
    if bos_id is not None:
        rows = torch.cat([torch.full((n_seq, 1), bos_id, dtype=torch.long), rows], dim=1)
    return rows


def token_rows(
    data: Any,
    tokenizer: Any,
    seq_len: int,
    column_name: str = "text",
    add_bos_token: bool = True,
) -> Int[Tensor, "n_seq seq_len"]:
    """All training rows of `data` as one LongTensor [n_seq, seq_len].

    Text (strings, or a dataset whose column holds strings) is packed with
    `tokenize_and_concatenate`. Token data (a 2-D integer tensor, or token tensors/lists,
    or a dataset column of them) is taken one sequence per row, each cropped to its first
    `seq_len` tokens; a shorter sequence is an error, since padding would train on pads.
    """
    if isinstance(data, Tensor) and data.ndim == 2:
        if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
            raise InputError(
                f"token tensor has dtype {data.dtype}; expected an integer dtype (long)"
            )
        if data.shape[0] == 0:
            raise InputError("token tensor has no rows")
        if data.shape[1] < seq_len:
            raise InputError(
                f"token tensor rows have {data.shape[1]} tokens, fewer than seq_len={seq_len}; "
                "use a smaller seq_len or re-pack the text with tokenize_and_concatenate"
            )
        rows = data[:, :seq_len].long()
        if rows.min() < 0:
            raise InputError(f"token tensor holds a negative token id {int(rows.min())}")
    else:
        documents = _iter_documents(data, column_name)
        first = next(documents, None)
        if first is None:
            raise InputError("no data: got an empty collection of documents or sequences")
        documents = itertools.chain([first], documents)
        if isinstance(first, str):
            return tokenize_and_concatenate(
                documents, tokenizer, seq_len, add_bos_token=add_bos_token
            )
        sequences = []
        for i, doc in enumerate(documents):
            tokens = _as_token_array(doc, i)
            if len(tokens) < seq_len:
                raise InputError(
                    f"sequence {i} has {len(tokens)} tokens, fewer than seq_len={seq_len}; "
                    "drop short sequences, use a smaller seq_len, "
                    "or pack them with tokenize_and_concatenate"
                )
            sequences.append(tokens[:seq_len])
        rows = torch.from_numpy(np.stack(sequences))
    if tokenizer is not None and int(rows.max()) >= len(tokenizer):
        raise InputError(
            f"token id {int(rows.max())} is outside the tokenizer's vocabulary of {len(tokenizer)}"
        )
    return rows
