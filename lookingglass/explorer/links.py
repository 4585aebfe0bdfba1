"""The selection the pages share through the URL's query parameters (`st.query_params`):
`model`, `prompt`, `head` ("L1H3"), `pos` (int), `example` (int) and `component`
("L10H7", "ATTN3", "MLP3"). A page reads them when it first draws (a shared link opens
the same view) and writes what the reader selects."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st


def set_query(**values: object) -> None:
    """Write these query parameters (only those that changed, so the URL does not churn)."""
    for name, value in values.items():
        text = str(value)
        if st.query_params.get(name) != text:
            st.query_params[name] = text


def int_from_query(name: str, default: int | None, low: int, high: int) -> int | None:
    """The query parameter `name` as an int in [low, high], else `default` (a value out
    of range or not a number is reported on the page)."""
    text = st.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        st.warning(f"The link's {name}={text!r} is not a number from {low} to {high}; ignored.")
        return default
    return value


def component_to_query(label: str) -> str:
    """A label of `compute.component_labels` as the URL writes it: "L1H3", "ATTN0", "MLP2"."""
    kind, _, layer = label.partition(" ")
    return f"{kind.upper()}{layer}" if kind in ("attn", "mlp") else label


def component_from_query(labels: Sequence[str], default: str) -> str:
    """The component the URL's `component` names, if it is one of `labels`; a head
    (`head`) serves when no component is named; otherwise `default`."""
    wanted = st.query_params.get("component") or st.query_params.get("head")
    if wanted is None:
        return default
    text = wanted.strip().upper()
    for kind in ("ATTN", "MLP"):
        if text.startswith(kind) and text[len(kind) :].isdigit():
            text = f"{kind.lower()} {int(text[len(kind) :])}"
    if text in labels:
        return text
    st.warning(f"The link asks for component {wanted!r}, which this model does not have.")
    return default


def follow_query(key: str, name: str, value_from_query, options: Sequence) -> None:
    """Before the widget `key` is drawn: take the value the URL's `name` gives
    (`value_from_query()`, which reports a bad one) when the widget has none yet, or when
    the URL changed since this page last wrote it (a link, another page, the back
    button). Call `wrote_query` after the widget."""
    text = st.query_params.get(name)
    if key in st.session_state and st.session_state[key] in options:
        if text is None or text == st.session_state.get(f"_query_{key}"):
            return
    value = value_from_query()
    if value in options:
        st.session_state[key] = value


def wrote_query(key: str, name: str, text: str) -> None:
    """Write the widget's value to the URL as `name` and remember it (`follow_query`)."""
    set_query(**{name: text})
    st.session_state[f"_query_{key}"] = text
