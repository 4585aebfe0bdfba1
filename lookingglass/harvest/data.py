"""What `lookingglass harvest` reads: token rows from a text/JSONL file or the shipped corpus.

Rows are packed exactly as training packs them (`tokenize_and_concatenate`: documents
joined with EOS, each row `[BOS] + seq_len - 1` tokens). Row `i` of the harvest is row `i`
of that packing, whatever the number of ranks, so a row index names the same tokens in
every run over the same data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.training.data import tokenize_and_concatenate

CORPUS_PREFIX = "corpus:"
# A token is never longer than this many characters on average in the text we read, so
# documents holding 8x the needed tokens in characters are enough for `max_tokens`.
_CHARS_PER_TOKEN_BOUND = 8


@dataclass(frozen=True)
class HarvestData:
    """Token rows and where they came from.

    Attributes:
        rows: [n_rows, seq_len] token ids, in data order.
        source: the `--data` argument as given.
        source_sha256: SHA-256 of the file's bytes, or the corpus's pinned text hash.
        tokens_sha256: SHA-256 of `rows` (int64, row-major): what was actually harvested.
    """

    rows: Int[Tensor, "n_rows seq_len"]
    source: str
    source_sha256: str
    tokens_sha256: str


def _read_documents(data: str) -> tuple[list[str], str]:
    """Documents and the source's SHA-256 for a `--data` argument."""
    if data in ("kjv", "default") or data.startswith(CORPUS_PREFIX):
        from lookingglass.training.corpus import load_corpus

        corpus = load_corpus(data.removeprefix(CORPUS_PREFIX) or "default")
        return list(corpus.texts), corpus.sha256
    path = Path(data).expanduser()
    if not path.is_file():
        raise InputError(
            f"--data {data!r} is not a file; pass a .txt file (one document per line), a "
            ".jsonl file (a 'text' field per line), or 'corpus:kjv' for the shipped corpus"
        )
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    if path.suffix == ".jsonl":
        docs = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                docs.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise InputError(
                    f"{path} line {i + 1} is not a JSON object with a 'text' field ({error})"
                ) from None
    else:
        docs = [line for line in text.splitlines() if line.strip()]
    if not docs:
        raise InputError(f"--data {path} holds no text (no non-empty documents)")
    return docs, hashlib.sha256(raw).hexdigest()


def _prefix(docs: list[str], n_tokens: int) -> list[str]:
    """The shortest prefix of `docs` surely holding `n_tokens` tokens (by a character bound)."""
    total = 0
    for i, doc in enumerate(docs):
        total += len(doc) + 1
        if total >= n_tokens * _CHARS_PER_TOKEN_BOUND:
            return docs[: i + 1]
    return docs


def load_rows(data: str, tokenizer: Any, seq_len: int, max_tokens: int | None) -> HarvestData:
    """Token rows `[n_rows, seq_len]` of `data`, at most `max_tokens // seq_len` of them.

    Only a prefix of the documents is tokenized when `max_tokens` is set; the rows are the
    first rows of packing all documents (packing is a prefix-preserving stream).

    Raises:
        InputError: a missing or empty file, bad JSONL, no tokenizer, or too little text
            for one row.
    """
    if tokenizer is None:
        raise InputError("the model has no tokenizer, so it cannot read text data")
    docs, source_sha256 = _read_documents(data)
    n_rows = None if max_tokens is None else max_tokens // seq_len
    if n_rows is not None and n_rows < 1:
        raise InputError(f"--max-tokens {max_tokens} is less than one row of {seq_len} tokens")
    rows = None
    if n_rows is not None:
        rows = tokenize_and_concatenate(_prefix(docs, n_rows * seq_len), tokenizer, seq_len)
        if len(rows) < n_rows:
            rows = None
    if rows is None:
        rows = tokenize_and_concatenate(docs, tokenizer, seq_len)
    rows = rows[:n_rows].contiguous()
    tokens_sha256 = hashlib.sha256(rows.to(torch.int64).numpy().tobytes()).hexdigest()
    return HarvestData(rows, data, source_sha256, tokens_sha256)
