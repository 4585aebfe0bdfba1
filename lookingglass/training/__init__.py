"""Training small transformers: corpora, tokenizers, and data pipelines.

The data layer: `load_corpus` (a pinned, hash-verified offline text corpus),
`train_tokenizer` (byte-level BPE), `tokenize_and_concatenate` and `as_token_batches`
(text or tokens to fixed-length training rows and batches), and synthetic data for
induction (`repeated_random_tokens`, `induction_training_data`).
"""

from lookingglass.training.batches import as_token_batches, token_rows
from lookingglass.training.corpus import Corpus, CorpusError, corpus_sha256, load_corpus
from lookingglass.training.data import tokenize_and_concatenate
from lookingglass.training.synthetic import induction_training_data, repeated_random_tokens
from lookingglass.training.tokenizer import ENDOFTEXT, train_tokenizer

__all__ = [
    "ENDOFTEXT",
    "Corpus",
    "CorpusError",
    "as_token_batches",
    "corpus_sha256",
    "induction_training_data",
    "load_corpus",
    "repeated_random_tokens",
    "token_rows",
    "tokenize_and_concatenate",
    "train_tokenizer",
]
