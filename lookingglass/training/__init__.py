"""Training small transformers and studying their training dynamics.

- Data: `load_corpus` (a pinned, hash-verified offline text corpus), `train_tokenizer`
  (byte-level BPE), `tokenize_and_concatenate` and `as_token_batches` (text or tokens to
  fixed-length training rows and batches), synthetic data for induction
  (`repeated_random_tokens`, `induction_training_data`).
- Training: `train(model, data, TrainConfig(...))`, with exact resume from
  `save_checkpoint` folders.
- Snapshots: `SnapshotSaver` (a training callback, log-spaced and linear steps) and
  `Snapshots` (iterate `(step, model)` over a folder).
- Dynamics: `analyze_snapshots` (per-token loss vectors, head scores, in-context
  learning score), `loss_pca`, `phase_change`.
"""

from lookingglass.training.batches import as_token_batches, token_rows
from lookingglass.training.corpus import Corpus, CorpusError, corpus_sha256, load_corpus
from lookingglass.training.data import tokenize_and_concatenate
from lookingglass.training.dynamics import (
    Dynamics,
    analyze_snapshots,
    loss_pca,
    phase_change,
    sample_tokens,
)
from lookingglass.training.snapshots import Snapshots, SnapshotSaver, snapshot_steps
from lookingglass.training.synthetic import induction_training_data, repeated_random_tokens
from lookingglass.training.tokenizer import ENDOFTEXT, train_tokenizer
from lookingglass.training.train import (
    TrainConfig,
    TrainResult,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train,
)

__all__ = [
    "ENDOFTEXT",
    "Corpus",
    "CorpusError",
    "Dynamics",
    "SnapshotSaver",
    "Snapshots",
    "TrainConfig",
    "TrainResult",
    "analyze_snapshots",
    "evaluate",
    "load_checkpoint",
    "loss_pca",
    "phase_change",
    "sample_tokens",
    "save_checkpoint",
    "snapshot_steps",
    "train",
    "as_token_batches",
    "corpus_sha256",
    "induction_training_data",
    "load_corpus",
    "repeated_random_tokens",
    "token_rows",
    "tokenize_and_concatenate",
    "train_tokenizer",
]
