"""What the explorer reads besides the model: a dataset of texts, an experiment store,
a snapshots folder. Each is given on the command line only (never typed into a page),
validated here, and read from nowhere else.

- Dataset: the shipped corpus's held-out split by default, or `--data FILE`: a `.txt`
  file (documents separated by blank lines) or a `.jsonl` file (one `{"text": ...}` per
  line), at most `MAX_DATA_BYTES` and `MAX_DOCUMENTS` documents.
- Store: `--store FILE`, an existing bench database (`lookingglass.bench`), read only.
- Snapshots: `--snapshots FOLDER`, a folder of `step_XXXXXX/` snapshots, or a run folder
  holding `snapshots/` and the `dynamics.npz` that `lookingglass replicate` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.bench import Bench
from lookingglass.bench.compare import summarize
from lookingglass.errors import CheckpointError, InputError
from lookingglass.training import induction_training_data, load_corpus, token_rows
from lookingglass.training.dynamics import (
    Dynamics,
    analyze_snapshots,
    dynamics_summary,
    loss_pca,
    sample_tokens,
)
from lookingglass.training.snapshots import Snapshots

MAX_DATA_BYTES = 50_000_000
MAX_DOCUMENTS = 10_000
MEAN_REFERENCE_ROWS = 32


class SourceError(InputError):
    """A data file, store or snapshots folder the explorer was pointed at is unusable."""


# -------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class Dataset:
    """Documents to browse, with a name for each and where they came from."""

    names: list[str]
    texts: list[str]
    source: str


def corpus_dataset() -> Dataset:
    """The shipped corpus's held-out documents (never trained on)."""
    corpus = load_corpus()
    held = [
        i for i in range(len(corpus.texts)) if i % corpus.heldout_every == corpus.heldout_every - 1
    ]
    return Dataset(
        [corpus.names[i] for i in held],
        [corpus.texts[i] for i in held],
        f"{corpus.source}, held-out split ({len(held)} chapters)",
    )


def check_data_path(path: str | Path) -> Path:
    """The resolved path of a `--data` file, or `SourceError` saying what is wrong."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"Data file {path} does not exist (or is not a file).")
    if path.suffix not in (".txt", ".jsonl"):
        raise SourceError(
            f"Data file {path} must be .txt (documents separated by blank lines) "
            'or .jsonl (one {"text": ...} per line).'
        )
    if path.stat().st_size > MAX_DATA_BYTES:
        raise SourceError(
            f"Data file {path} is over {MAX_DATA_BYTES // 1_000_000} MB; pass a smaller sample."
        )
    return path


def check_data_file(path: str | Path) -> Path:
    """`check_data_path`, then the whole file read as `file_dataset` reads it: a file
    the explorer could not browse is refused before the server starts."""
    file_dataset(path)
    return check_data_path(path)


def file_dataset(path: str | Path) -> Dataset:
    """Documents from a `.txt` or `.jsonl` file (see the module docstring)."""
    path = check_data_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(f"Data file {path} is not UTF-8 text ({error}).") from None
    if path.suffix == ".txt":
        texts = [block.strip() for block in text.split("\n\n") if block.strip()]
    else:
        texts = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{path} line {number} is not JSON ({error.msg}).") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise SourceError(f'{path} line {number} has no string field "text".')
            texts.append(record["text"])
    if not texts:
        raise SourceError(f"Data file {path} holds no documents.")
    texts = texts[:MAX_DOCUMENTS]
    names = [f"{i}: {t[:40].splitlines()[0] if t.strip() else ''}" for i, t in enumerate(texts)]
    return Dataset(names, texts, f"{path.name} ({len(texts)} documents)")


def example_length(model) -> int:
    """Tokens per browsed example (BOS included)."""
    return min(128, model.cfg.n_ctx)


def example_tokens(model, text: str, start: int = 0) -> Int[Tensor, "1 pos"]:
    """BOS (if the model prepends one) then up to `example_length - 1` of the document's
    tokens from token `start` on."""
    if getattr(model, "tokenizer", None) is None:
        raise InputError("This model has no tokenizer, so it cannot read the dataset's text.")
    ids = model.to_tokens(text, prepend_bos=False, truncate=False)[0].cpu()
    if start < 0 or (start >= len(ids) and start > 0):
        raise InputError(f"Start {start} is past the document's end ({len(ids)} tokens).")
    bos = (
        model.to_tokens("", move_to_device=False)[0].cpu()
        if model.cfg.default_prepend_bos
        else ids[:0]
    )
    body = ids[start : start + example_length(model) - len(bos)]
    return torch.cat([bos, body])[None]


def document_length(model, text: str) -> int:
    """Number of tokens in a document (no BOS)."""
    return int(model.to_tokens(text, prepend_bos=False, truncate=False).shape[1])


def reference_rows(
    model, dataset: Dataset, n_rows: int = MEAN_REFERENCE_ROWS
) -> Int[Tensor, "n pos"]:
    """The first `example_length` tokens of up to `n_rows` documents long enough to fill
    them: the data mean ablation averages over."""
    length = example_length(model)
    rows = [
        r
        for r in (example_tokens(model, t) for t in dataset.texts[: 4 * n_rows])
        if r.shape[1] == length
    ]
    if not rows:
        raise InputError(
            f"No document of the dataset has {length} tokens, which mean ablation needs."
        )
    return torch.cat(rows[:n_rows])


# ------------------------------------------------------------------------------ store
def check_store_path(path: str | Path) -> Path:
    """The resolved path of an existing `--store` database, or `SourceError`."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise SourceError(
            f"Experiment store {path} does not exist: pass the .db file a Bench wrote to."
        )
    with open(path, "rb") as file:
        if file.read(16) != b"SQLite format 3\x00":
            raise SourceError(f"{path} is not an experiment store (not an SQLite database).")
    return path


def check_store(path: str | Path) -> Path:
    """`check_store_path`, then the store opened (read-only) and closed: a database that
    is not an experiment store, or is damaged, is refused with the store's reason."""
    open_bench(path).close()
    return check_store_path(path)


def open_bench(path: str | Path):
    """The `Bench` over an existing store, opened read-only (the explorer never writes)."""
    from lookingglass.bench import SQLiteStore, StoreError

    try:
        store = SQLiteStore(check_store_path(path), read_only=True)
    except StoreError as error:
        raise SourceError(f"Experiment store {path}: {error}") from None
    return Bench(None, store, progress=False)


@dataclass
class RunRow:
    """One logged run, as listed."""

    run_id: int
    name: str
    version: str
    status: str
    started: float
    duration: float | None
    model: str
    plots: list[str]


def run_rows(bench) -> list[RunRow]:
    """Every run in the store, newest first."""
    return [
        RunRow(
            r.run_id,
            r.name,
            r.version,
            r.effective_status,
            r.started_at,
            r.duration,
            str(r.model.get("name", "-")),
            sorted(r.attachments),
        )
        for r in reversed(bench.runs())
    ]


@dataclass
class RunDetail:
    """A run's arguments, result (summarized) and attachments (name -> media type)."""

    run_id: int
    title: str
    args: dict[str, str]
    result: dict[str, str]
    error: str | None
    attachments: dict[str, str]
    source: str


def run_detail(bench, run_id: int) -> RunDetail:
    """What the Experiments page shows for one run."""
    run = bench.get_run(int(run_id))
    args = {k: summarize(v, 120) for k, v in bench.load_args(run).items()}
    result: dict[str, str] = {}
    if run.status == "ok":
        value = bench.load_result(run)
        items = _fields(value)
        result = (
            {k: summarize(v, 120) for k, v in items.items()}
            if items
            else {"result": summarize(value, 200)}
        )
    source = bench.get_version(run.name, run.version)["source"]
    return RunDetail(
        run.run_id,
        f"{run.name}@{run.version} ({run.kind}, {run.effective_status})",
        args,
        result,
        run.error,
        {k: v[0] for k, v in run.attachments.items()},
        source,
    )


def _fields(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {f: getattr(value, f) for f in value.__dataclass_fields__}
    return {}


# -------------------------------------------------------------------------- snapshots
def check_snapshots_path(path: str | Path) -> Path:
    """The resolved `--snapshots` folder, or `SourceError` if it holds neither snapshots
    nor `snapshots/` nor `dynamics.npz`."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise SourceError(f"Snapshots folder {path} does not exist.")
    folder = _snapshot_folder(path)
    if folder is None and not (path / "dynamics.npz").is_file():
        raise SourceError(
            f"{path} holds no step_XXXXXX snapshots, no snapshots/ folder and no "
            "dynamics.npz (as `lookingglass replicate` writes)."
        )
    if folder is not None and not (path / "dynamics.npz").is_file():
        try:
            Snapshots(folder)  # a corrupt index.json or a link out of the folder
        except CheckpointError as error:
            raise SourceError(str(error)) from None
    return path


def _snapshot_folder(path: Path) -> Path | None:
    for folder in (path, path / "snapshots"):
        if folder.is_dir() and any(
            p.name.startswith("step_") and (p / "config.json").is_file() for p in folder.iterdir()
        ):
            return folder
    return None


@dataclass
class DynamicsView:
    """Head scores and losses over training, and the per-token loss PCA trajectory."""

    steps: np.ndarray
    induction: np.ndarray  # [n_snapshots, n_layers, n_heads]
    previous_token: np.ndarray  # [n_snapshots, n_layers, n_heads]
    eval_loss: np.ndarray  # [n_snapshots]
    icl: np.ndarray  # [n_snapshots]
    pca_trajectory: np.ndarray  # [n_snapshots, k]
    pca_explained: np.ndarray  # [k]
    summary: dict[str, Any]
    origin: str


def dynamics_view(path: str | Path, n_tokens: int = 200) -> DynamicsView:
    """Read `dynamics.npz`, or measure the snapshots (`analyze_snapshots`) on held-out
    rows: the corpus for models with a tokenizer, synthetic induction data without."""
    path = check_snapshots_path(path)
    if (path / "dynamics.npz").is_file():
        dynamics, origin = Dynamics.load(path / "dynamics.npz"), f"{path / 'dynamics.npz'}"
    else:
        dynamics, origin = _measure(_snapshot_folder(path), n_tokens), f"measured from {path}"
    k = max(1, min(3, *dynamics.loss_vectors.shape))
    pca = loss_pca(dynamics.loss_vectors, k=k)
    return DynamicsView(
        dynamics.steps,
        dynamics.induction,
        dynamics.previous_token,
        dynamics.eval_loss,
        dynamics.icl,
        pca.trajectory,
        pca.explained_variance_ratio,
        dynamics_summary(dynamics) if len(dynamics.steps) > 1 else {},
        origin,
    )


def _measure(folder: Path, n_tokens: int):
    snapshots = Snapshots(folder)
    last = snapshots.load(snapshots.steps[-1])
    seq_len = min(128, last.cfg.n_ctx)
    if last.tokenizer is not None:
        rows = token_rows(corpus_dataset().texts, last.tokenizer, seq_len)
    else:
        rows = induction_training_data(
            max(n_tokens, 100), seq_len=seq_len, d_vocab=last.cfg.d_vocab, seed=1
        )
    n_tokens = min(n_tokens, len(rows))
    # The probe as `lookingglass replicate` measures it (20 sequences, seed 0), so head
    # scores agree with a run folder's dynamics.npz (5 sequences gave 0.87 for its 0.89).
    return analyze_snapshots(snapshots, rows[:64], sample_tokens(rows, n_tokens))
