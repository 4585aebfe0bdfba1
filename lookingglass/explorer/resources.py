"""The explorer's process-wide resources: the models, the dataset, the mean-ablation
reference, the head scores and the training-dynamics numbers, each built once per server
process (`resource`; concurrent callers wait for the first) and shared by every session.

Settings come from environment variables that `lookingglass explore` sets, so the app
reads exactly the paths given on its command line and nothing typed into a page:

    LOOKINGGLASS_EXPLORER_MODEL      model name or folder (default: lookingglass-attn2)
    LOOKINGGLASS_EXPLORER_DATA       a .txt / .jsonl dataset (default: the corpus's held-out split)
    LOOKINGGLASS_EXPLORER_STORE      a bench store (.db) for the Experiments page
    LOOKINGGLASS_EXPLORER_SNAPSHOTS  a snapshots folder for the Training dynamics page

A model is used under its lock: sessions run in threads, and one session's ablation
hooks must not leak into another's forward pass. This module uses no Streamlit API, so
`serve` imports it (and starts `prefetch`) before the server exists.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import transformers

from lookingglass.errors import LookingGlassError
from lookingglass.explorer import DEFAULT_MODEL, ENV, compute, sources
from lookingglass.loading.gguf_models import GGUF_MODELS, gguf_path
from lookingglass.loading.registry import packaged_models
from lookingglass.model.transformer import HookedTransformer

_LOG = logging.getLogger("lookingglass.explorer")
# transformers resolves its attributes lazily, and not thread-safely: resolve those the
# loaders use now, before `prefetch` starts a thread that loads while a page does.
_ = transformers.AutoTokenizer, transformers.PreTrainedTokenizerFast


def setting(name: str) -> str | None:
    """A setting from the environment (see the module docstring); None when unset."""
    value = os.environ.get(ENV[name], "").strip()
    return value or (DEFAULT_MODEL if name == "model" else None)


_RESOURCES: dict[tuple, Any] = {}
_RESOURCE_LOCKS: dict[tuple, threading.Lock] = {}
_GUARD = threading.Lock()


def resource(key: tuple, build: Callable[[], Any], keep_failure: bool = False) -> Any:
    """`build()` once per process for `key` (concurrent callers wait for the first).
    With `keep_failure`, a `LookingGlassError` (a bad path or checkpoint: it would fail
    again) is raised again on later calls; other failures are retried."""
    with _GUARD:
        lock = _RESOURCE_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _RESOURCES:
            try:
                _RESOURCES[key] = build()
            except LookingGlassError as error:
                if not keep_failure:
                    raise
                _RESOURCES[key] = _Failure(error)
        value = _RESOURCES[key]
    if isinstance(value, _Failure):
        raise value.error
    return value


@dataclass
class _Failure:
    error: Exception


@dataclass
class LoadedModel:
    """The model and the lock every computation holds while using it."""

    model: Any
    lock: threading.Lock


def _build_model(name: str) -> LoadedModel:
    model = HookedTransformer.from_pretrained(name, device="cpu")
    model.eval().requires_grad_(False)
    return LoadedModel(model, threading.Lock())


def model_choices() -> list[str]:
    """The models the app offers: the one it was started with (`--model`, a name or a
    folder), the models shipped in the package, and the registered GGUF models whose
    package is installed (`smollm2-135m`). Nothing else can be chosen: a page never
    takes a path."""
    names = [setting("model"), *packaged_models()]
    for name, gguf in GGUF_MODELS.items():
        try:
            gguf_path(gguf)
        except LookingGlassError:  # not installed: not offered
            continue
        names.append(name)
    return list(dict.fromkeys(names))


def is_loaded(name: str) -> bool | None:
    """True if model `name` is loaded, False if it failed to load, None if not tried."""
    value = _RESOURCES.get(("model", name))
    return None if value is None else isinstance(value, LoadedModel)


def loaded_config(name: str):
    """The config of model `name` if it is loaded, else None."""
    value = _RESOURCES.get(("model", name))
    return value.model.cfg if isinstance(value, LoadedModel) else None


def load_model(name: str) -> LoadedModel:
    """Model `name`, loaded on first use and kept for the server's life; raises
    whatever loading raised. A failure is kept (a bad folder or name would fail again)."""
    return resource(("model", name), lambda: _build_model(name), keep_failure=True)


def with_named_model(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(model, *args)` with model `name`, under its lock."""
    loaded = load_model(name)
    with loaded.lock:
        return fn(loaded.model, *args)


def dataset() -> sources.Dataset:
    """The Browse page's dataset (raises `SourceError` if unusable)."""
    path = setting("data")
    return resource(
        ("data", path),
        lambda: sources.corpus_dataset() if path is None else sources.file_dataset(path),
    )


def component_means(name: str) -> dict:
    """Mean activation of every ablatable component of model `name` over the dataset
    (the reference of mean ablation)."""
    key, path = name, setting("data")

    def build() -> dict:
        rows = with_named_model(key, sources.reference_rows, dataset())
        return with_named_model(key, compute.component_means, rows)

    return resource(("means", key, path), build)


def head_scores(name: str) -> compute.HeadScores:
    """Every head's induction, previous-token and copying scores of model `name`."""
    return resource(("head_scores", name), lambda: with_named_model(name, compute.head_scores))


def dynamics() -> sources.DynamicsView | None:
    """The Training dynamics page's numbers (once per process); None without snapshots."""
    path = setting("snapshots")
    if path is None:
        return None
    return resource(("dynamics", path), lambda: sources.dynamics_view(path))


def prefetch(name: str | None = None) -> None:
    """Load model `name` (default: the one the app was started with), score its heads,
    read the dataset and the mean-ablation reference and measure the snapshots in a
    background thread, so that the first visit of each page is fast. Starts once per
    model and process."""
    name = name or setting("model")
    with _GUARD:
        if _RESOURCES.get(("prefetch", name)):
            return
        _RESOURCES[("prefetch", name)] = True

    def warm() -> None:
        for step in (load_model, head_scores, component_means, lambda _: dynamics()):
            try:
                step(name)
            except Exception:  # the page that needs it reports it
                _LOG.info("prefetching %s failed", step.__name__, exc_info=True)

    threading.Thread(target=warm, name="explorer-prefetch", daemon=True).start()
