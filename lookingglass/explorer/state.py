"""What the pages share: the model in use and its resources, the cached results, the
linked state in the URL, and error display.

The models, the dataset, the mean-ablation reference and the head scores are built
once per server process (`resources`, re-exported here for the model in use). Results
are cached per (model, input, settings) with `st.cache_data`; failures are never cached.

Linked state: the model, prompt, head, position, example and component a user has
chosen live in the URL's query string (`URL_KEYS`), so a view can be shared and
survives a reload, and every page reads the same values (`url_value`, `url_int`,
`url_head`, `set_url`, and `bind` for a widget that shows one). `sync_url` keeps them
across page switches.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from lookingglass.errors import LookingGlassError
from lookingglass.explorer import DEFAULT_MODEL, compute, resources, schematics, sources, views
from lookingglass.explorer.resources import (  # noqa: F401 (re-exported for the pages)
    LoadedModel,
    dataset,
    dynamics,
    load_model,
    model_choices,
    resource,
    setting,
    with_named_model,
)
from lookingglass.loading.registry import packaged_models

_LOG = logging.getLogger("lookingglass.explorer")


# ------------------------------------------------------------- linked state (the URL)
URL_KEYS = ("model", "prompt", "head", "pos", "example", "component")
_KEPT = "_lookingglass_url"  # session state: the URL's linked values, kept across pages


def _in_session() -> bool:
    """Whether a page script is running (the URL exists only then)."""
    return get_script_run_ctx(suppress_warning=True) is not None


def sync_url() -> None:
    """Keep the linked values in the URL across page switches (the app calls it on
    every run): a value the URL has is remembered for the session; one the URL lost
    (Streamlit empties the query string when the sidebar switches pages) is put back."""
    kept = st.session_state.setdefault(_KEPT, {})
    for key in URL_KEYS:
        if key in st.query_params:
            kept[key] = st.query_params[key]
        elif key in kept:
            st.query_params[key] = kept[key]


def remember_url() -> None:
    """Remember the URL's linked values as the page left them (the app calls it after
    every page run, so values a page wrote with `st.query_params` directly also survive
    the next page switch)."""
    kept = st.session_state.setdefault(_KEPT, {})
    for key in URL_KEYS:
        if key in st.query_params:
            kept[key] = st.query_params[key]


def url_value(key: str, default: str | None = None) -> str | None:
    """The URL's value for `key` (one of `URL_KEYS`), or `default`."""
    if key not in URL_KEYS:
        raise KeyError(f"{key!r} is not a linked URL key; they are {URL_KEYS}.")
    if not _in_session():
        return default
    value = st.query_params.get(key)
    if value is None:
        value = st.session_state.get(_KEPT, {}).get(key)
    return default if value is None else value


def url_int(key: str, default: int, low: int, high: int) -> int:
    """The URL's `key` as an integer clamped to `low..high`; `default` when absent or
    not an integer."""
    value = url_value(key)
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))


def url_head(labels: Sequence[str], default: str) -> str:
    """The URL's `head` (e.g. "L1H3") if it is one of `labels`, else `default` (with a
    warning on the page when the URL named a head this model does not have)."""
    wanted = url_value("head")
    if wanted is None:
        return default
    if wanted.upper() in labels:
        return wanted.upper()
    st.warning(
        f"The link asks for head {views.plain(wanted)}, which this model does not have "
        f"({labels[0]} to {labels[-1]}); showing {default}."
    )
    return default


def set_url(**values: Any) -> None:
    """Write linked values to the URL (and the session, for other pages); None removes
    a key. Values are stored as text."""
    kept = st.session_state.setdefault(_KEPT, {})
    for key, value in values.items():
        if key not in URL_KEYS:
            raise KeyError(f"{key!r} is not a linked URL key; they are {URL_KEYS}.")
        if value is None:
            kept.pop(key, None)
            st.query_params.pop(key, None)
        elif st.query_params.get(key) != str(value) or kept.get(key) != str(value):
            kept[key] = st.query_params[key] = str(value)


def bind(key: str, value: Any) -> dict[str, Any]:
    """Keyword arguments that tie a widget to the URL's `key`: the widget shows `value`
    (what the page read from the URL, validated) and the user's change is written to
    the URL before the page runs again. E.g. `st.text_area("Prompt", **bind("prompt",
    prompt))`. Do not pass the widget a value or index as well."""
    widget = key  # one widget per linked value on a page: it takes the value's name
    # Always set: a widget of another page (another label) may hold the same key.
    st.session_state[widget] = value
    return {"key": widget, "on_change": _widget_to_url, "args": (key, widget)}


def _widget_to_url(key: str, widget: str) -> None:
    set_url(**{key: st.session_state[widget]})


# ------------------------------------------------------------- process-wide resources
def model_key() -> str:
    """The model in use: the URL's `model` when it is one of `model_choices`, else the
    one the app was started with. It keys every cached computation."""
    wanted = url_value("model")
    if wanted is not None and wanted in model_choices():
        return wanted
    return setting("model")


def loaded_model() -> LoadedModel:
    """The model in use; if it does not load, an error on the page and the page stops."""
    name = model_key()
    try:
        if resources.is_loaded(name) is not None:
            return load_model(name)
        with st.spinner(f"Loading the model {name}..."):
            return load_model(name)
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
    """`fn(model, *args)` with the model in use, under the model's lock."""
    return with_named_model(model_key(), fn, *args)


def head_scores(name: str | None = None) -> compute.HeadScores:
    """`resources.head_scores` of model `name` (default: the model in use)."""
    return resources.head_scores(name or model_key())


def component_means(name: str | None = None) -> dict:
    """`resources.component_means` of model `name` (default: the model in use)."""
    return resources.component_means(name or model_key())


def prefetch() -> None:
    """`resources.prefetch` for the model the app was started with (once). A model
    switched to is not prefetched: its head scores (a minute on a 30-layer model) would
    hold the model's lock while the page that switched waits for its own analysis; the
    pages that need them compute them on their first visit."""
    resources.prefetch(setting("model"))


# ---------------------------------------------------------------- cached results
# Each is keyed by the model setting and its arguments; the model enters by `with_model`.
@st.cache_data(max_entries=64, show_spinner=False)
def prompt_analysis(key: str, prompt: str) -> compute.PromptAnalysis:
    """`compute.analyze_prompt`."""
    return with_named_model(key, compute.analyze_prompt, prompt)


@st.cache_data(max_entries=64, show_spinner=False)
def attribution(
    key: str, prompt: str, position: int, answer: str | int, wrong: str | None
) -> compute.Attribution:
    """`compute.direct_logit_attribution`."""
    return with_named_model(key, compute.direct_logit_attribution, prompt, position, answer, wrong)


@st.cache_data(max_entries=64, show_spinner=False)
def circuit(key: str, layer: int, head: int, query: str, source: str) -> compute.CircuitView:
    """`compute.circuit_view`."""
    return with_named_model(key, compute.circuit_view, layer, head, query, source)


@st.cache_data(max_entries=64, show_spinner=False)
def ablation(
    key: str, data: str | None, doc: int, start: int, component: str, method: str
) -> compute.AblationView:
    """`compute.ablation_view` on document `doc` of the dataset from token `start`."""
    text = dataset().texts[doc]
    tokens = with_named_model(key, sources.example_tokens, text, start)
    means = component_means(key) if method == "mean" else None
    return with_named_model(key, compute.ablation_view, tokens, component, method, means)


@st.cache_data(max_entries=64, show_spinner=False)
def embeddings(key: str, prompt: str) -> schematics.EmbeddingView:
    """`schematics.embedding_view`."""
    return with_named_model(key, schematics.embedding_view, prompt)


@st.cache_data(max_entries=64, show_spinner=False)
def head_steps(key: str, prompt: str, layer: int, head: int, position: int) -> schematics.HeadSteps:
    """`schematics.head_steps`."""
    return with_named_model(key, schematics.head_steps, prompt, layer, head, position)


@st.cache_data(max_entries=64, show_spinner=False)
def residual(key: str, prompt: str, position: int) -> schematics.ResidualSum:
    """`schematics.residual_sum`."""
    return with_named_model(key, schematics.residual_sum, prompt, position)


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


def model_picker() -> None:
    """The sidebar's model choice (`model_choices`), kept in the URL's `model`: a
    switch loads the other model (once per server) without restarting anything."""
    choices = model_choices()
    current = model_key()
    wanted = url_value("model")
    if wanted is not None and wanted != current:
        st.sidebar.warning(
            f"The link asks for the model {views.plain(wanted)}, which this explorer does not "
            f"offer; showing {views.plain(current)}."
        )
    st.sidebar.selectbox(
        "Model",
        choices,
        help="The model the explorer was started with, the models shipped with lookingglass, "
        "and the installed pretrained models. Start with --model FOLDER to add a folder.",
        **bind("model", current),
    )


def model_sidebar() -> None:
    """The sidebar's summary of the model (or that it did not load)."""
    name = model_key()
    cfg = resources.loaded_config(name)
    if cfg is None:
        failed = resources.is_loaded(name) is False
        st.sidebar.caption(f"Model: {views.plain(name)}" + (" (did not load)" if failed else ""))
        return
    kind = "attention-only" if cfg.attn_only else "attention + MLP"
    st.sidebar.caption(
        f"{cfg.n_layers} layers x {cfg.n_heads} heads, d_model "
        f"{cfg.d_model}, {kind}, n_ctx {cfg.n_ctx}, vocab {cfg.d_vocab}"
    )
