"""What the pages share: the app's settings, the cached model, data and results, and
error display.

Settings come from environment variables that `lookingglass explore` sets, so the app
reads exactly the paths given on its command line and nothing typed into a page:

    LOOKINGGLASS_EXPLORER_MODEL      model name or folder (default: lookingglass-attn2)
    LOOKINGGLASS_EXPLORER_DATA       a .txt / .jsonl dataset (default: the corpus's held-out split)
    LOOKINGGLASS_EXPLORER_STORE      a bench store (.db) for the Experiments page
    LOOKINGGLASS_EXPLORER_SNAPSHOTS  a snapshots folder for the Training dynamics page

The model, the dataset and the mean-ablation reference are loaded once per server
process (`resource`, which a background thread can also fill: `prefetch`). The model is
used under a lock: sessions run in threads, and one session's ablation hooks must not
leak into another's forward pass. Results are cached per (model, input, settings) with
`st.cache_data`; failures are never cached.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import streamlit as st
import transformers

from lookingglass.errors import LookingGlassError
from lookingglass.explorer import DEFAULT_MODEL, ENV, compute, schematics, sources, views
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


# ------------------------------------------------------------- process-wide resources
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


def model_key() -> str:
    """The model setting, which keys every cached computation."""
    return setting("model")


def load_model() -> LoadedModel:
    """The model (loaded on first use); raises whatever loading raised. The model is
    fixed for the server's life, so a failure is kept (restart to try again)."""
    name = model_key()
    return resource(("model", name), lambda: _build_model(name), keep_failure=True)


def loaded_model() -> LoadedModel:
    """The model; if it does not load, an error on the page and the page stops."""
    name = model_key()
    try:
        if ("model", name) in _RESOURCES:
            return load_model()
        with st.spinner(f"Loading the model {name}..."):
            return load_model()
    except Exception as error:  # the user reads why; no traceback
        hint = ""
        if name == DEFAULT_MODEL and name not in packaged_models():
            hint = (
                " The default model is not installed with this copy of lookingglass; "
                "start the explorer with --model NAME_OR_FOLDER."
            )
        reason = views.plain(f"{name!r}: {describe(error)}")
        st.error(f"Could not load the model {reason}{hint}")
        st.stop()
        raise  # not reached: st.stop() raises


def with_model(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(model, *args)` under the model's lock."""
    loaded = load_model()
    with loaded.lock:
        return fn(loaded.model, *args)


def dataset() -> sources.Dataset:
    """The Browse page's dataset (raises `SourceError` if unusable)."""
    path = setting("data")
    return resource(
        ("data", path),
        lambda: sources.corpus_dataset() if path is None else sources.file_dataset(path),
    )


def component_means() -> dict:
    """Mean activation of every ablatable component over the dataset (mean ablation)."""
    key, path = model_key(), setting("data")

    def build() -> dict:
        rows = with_model(sources.reference_rows, dataset())
        return with_model(compute.component_means, rows)

    return resource(("means", key, path), build)


def head_scores() -> compute.HeadScores:
    """Every head's induction, previous-token and copying scores (once per model)."""
    return resource(("head_scores", model_key()), lambda: with_model(compute.head_scores))


def dynamics() -> sources.DynamicsView | None:
    """The Training dynamics page's numbers (once per process); None without snapshots."""
    path = setting("snapshots")
    if path is None:
        return None
    return resource(("dynamics", path), lambda: sources.dynamics_view(path))


def prefetch() -> None:
    """Load the model, score the heads, read the dataset and the mean-ablation reference
    and measure the snapshots in a background thread, so that the first visit of each
    page is fast. Starts once per process."""
    with _GUARD:
        if _RESOURCES.get(("prefetch",)):
            return
        _RESOURCES[("prefetch",)] = True

    def warm() -> None:
        for step in (load_model, head_scores, component_means, dynamics):
            try:
                step()
            except Exception:  # the page that needs it reports it
                _LOG.info("prefetching %s failed", step.__name__, exc_info=True)

    threading.Thread(target=warm, name="explorer-prefetch", daemon=True).start()


# ---------------------------------------------------------------- cached results
# Each is keyed by the model setting and its arguments; the model enters by `with_model`.
@st.cache_data(max_entries=64, show_spinner=False)
def prompt_analysis(key: str, prompt: str) -> compute.PromptAnalysis:
    """`compute.analyze_prompt`."""
    return with_model(compute.analyze_prompt, prompt)


@st.cache_data(max_entries=64, show_spinner=False)
def attribution(
    key: str, prompt: str, position: int, answer: str | int, wrong: str | None
) -> compute.Attribution:
    """`compute.direct_logit_attribution`."""
    return with_model(compute.direct_logit_attribution, prompt, position, answer, wrong)


@st.cache_data(max_entries=64, show_spinner=False)
def circuit(key: str, layer: int, head: int, query: str, source: str) -> compute.CircuitView:
    """`compute.circuit_view`."""
    return with_model(compute.circuit_view, layer, head, query, source)


@st.cache_data(max_entries=64, show_spinner=False)
def ablation(
    key: str, data: str | None, doc: int, start: int, component: str, method: str
) -> compute.AblationView:
    """`compute.ablation_view` on document `doc` of the dataset from token `start`."""
    text = dataset().texts[doc]
    tokens = with_model(sources.example_tokens, text, start)
    means = component_means() if method == "mean" else None
    return with_model(compute.ablation_view, tokens, component, method, means)


@st.cache_data(max_entries=64, show_spinner=False)
def embeddings(key: str, prompt: str) -> schematics.EmbeddingView:
    """`schematics.embedding_view`."""
    return with_model(schematics.embedding_view, prompt)


@st.cache_data(max_entries=64, show_spinner=False)
def head_steps(key: str, prompt: str, layer: int, head: int, position: int) -> schematics.HeadSteps:
    """`schematics.head_steps`."""
    return with_model(schematics.head_steps, prompt, layer, head, position)


@st.cache_data(max_entries=64, show_spinner=False)
def residual(key: str, prompt: str, position: int) -> schematics.ResidualSum:
    """`schematics.residual_sum`."""
    return with_model(schematics.residual_sum, prompt, position)


# ----------------------------------------------------------------------- errors
def describe(error: BaseException) -> str:
    """An error as one line: the library's own messages as they are, others with type."""
    text = str(error).strip() or type(error).__name__
    return text if isinstance(error, LookingGlassError) else f"{type(error).__name__}: {text}"


@contextmanager
def guarded() -> Iterator[None]:
    """Show an error of the enclosed block on the page (`st.error`), never a traceback
    (which goes to the server's log). Streamlit's own stop and rerun signals pass."""
    try:
        yield
    except LookingGlassError as error:  # messages quote stored text: shown as text
        st.error(views.plain(str(error)))
    except Exception as error:
        _LOG.error("explorer page failed:\n%s", traceback.format_exc())
        st.error(f"Something went wrong: {views.plain(describe(error))}")


def model_sidebar() -> None:
    """The sidebar's summary of the model (or that it did not load)."""
    name = model_key()
    loaded = _RESOURCES.get(("model", name))
    if not isinstance(loaded, LoadedModel):
        st.sidebar.caption(f"Model: {name}" + (" (did not load)" if loaded else ""))
        return
    cfg = loaded.model.cfg
    kind = "attention-only" if cfg.attn_only else "attention + MLP"
    st.sidebar.caption(
        f"Model: **{name}**  \n{cfg.n_layers} layers x {cfg.n_heads} heads, d_model "
        f"{cfg.d_model}, {kind}, n_ctx {cfg.n_ctx}, vocab {cfg.d_vocab}"
    )
