"""Browse examples, "Across the dataset": the predictions and documents of the whole
dataset where the chosen component matters most, by loss change and by direct logit
attribution (`ranking.dataset_ranking`). Computed in batches on request, with a progress
bar, once per (model, dataset, component, ablation, documents) for the server's life;
clicking a row opens that example at that token."""

from __future__ import annotations

import threading

import pandas as pd
import streamlit as st

from lookingglass.explorer import ranking, sources, state, views

DEFAULT_DOCUMENTS = 4
_DONE: set[tuple] = set()
_DONE_LOCK = threading.Lock()


def ranking_section(model, data: sources.Dataset, component: str, method: str) -> None:
    """Draw the section for the page's component and ablation method."""
    st.subheader("Across the dataset")
    n_docs = len(data.texts)
    left, right = st.columns([1, 3])
    documents = left.number_input(
        "Documents to read",
        1,
        n_docs,
        min(DEFAULT_DOCUMENTS, n_docs),
        key="rank_documents",
        help=f"The dataset has {n_docs}; every one of their tokens is predicted twice "
        "(clean and ablated).",
    )
    key = ("ranking", state.model_key(), state.setting("data"), component, method, int(documents))
    with _DONE_LOCK:
        done = key in _DONE
    if not done:
        right.caption(
            f"Ranks every prediction of the first {int(documents)} documents by how much "
            f"ablating {component} ({method}) changes its loss and by {component}'s direct "
            "logit attribution toward the actual next token."
        )
        if not right.button(f"Rank the dataset for {component}", key="rank_button"):
            return
    result = _ranking(key, data, component, method, int(documents))
    _show(result)


def _ranking(key: tuple, data, component: str, method: str, documents: int) -> ranking.Ranking:
    def build() -> ranking.Ranking:
        bar = st.progress(0.0, text="Ranking the dataset...")
        means = state.component_means() if method == "mean" else None

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Ranking the dataset: {done} of {total} examples")

        result = state.with_model(
            ranking.dataset_ranking,
            data.texts,
            component,
            method,
            means,
            documents,
            8,
            20,
            progress,
        )
        bar.empty()
        return result

    result = state.resource(key, build)
    with _DONE_LOCK:
        _DONE.add(key)
    return result


def _show(result: ranking.Ranking) -> None:
    st.caption(
        f"{result.n_tokens} predictions in {result.n_documents} documents; mean loss change "
        f"when {result.component} is {result.method}-ablated: {result.mean_loss_change:+.4f} "
        "nats. Click a row to open that example at that token."
    )
    tabs = st.tabs(["By loss change", "By direct logit attribution", "Documents"])
    with tabs[0]:
        left, right = st.columns(2)
        with left:
            st.markdown("**Loss rises most** (the component helps)")
            _tokens(result.by_loss_change, "rank_loss_up")
        with right:
            st.markdown("**Loss falls most** (the component hurts)")
            _tokens(result.by_loss_drop, "rank_loss_down")
    with tabs[1]:
        left, right = st.columns(2)
        with left:
            st.markdown("**Largest direct logit attribution** toward the next token")
            _tokens(result.by_dla, "rank_dla_up")
        with right:
            st.markdown("**Most negative**")
            _tokens(result.by_negative_dla, "rank_dla_down")
    with tabs[2]:
        frame = pd.DataFrame(
            {
                "example": [d.doc for d in result.documents],
                "tokens": [d.n_tokens for d in result.documents],
                "mean loss change": [round(d.mean_loss_change, 4) for d in result.documents],
                "max loss change": [round(d.max_loss_change, 4) for d in result.documents],
                "mean DLA": [round(d.mean_dla, 4) for d in result.documents],
            }
        )
        event = st.dataframe(
            frame, hide_index=True, key="rank_docs", on_select="rerun", selection_mode="single-row"
        )
        rows = event.selection.rows if event is not None else []
        if rows:
            _jump(int(frame["example"][rows[0]]), 0, None)


def _tokens(rows: list[ranking.RankedToken], key: str) -> None:
    frame = pd.DataFrame(
        {
            "example": [r.doc for r in rows],
            "from": [r.start for r in rows],
            "pos": [r.pos + 1 for r in rows],
            "context": [views.shown_token(r.context) for r in rows],
            "next token": [views.quoted_token(r.target) for r in rows],
            "loss change": [round(r.loss_change, 4) for r in rows],
            "DLA": [round(r.dla, 4) for r in rows],
        }
    )
    event = st.dataframe(
        frame, hide_index=True, key=key, on_select="rerun", selection_mode="single-row"
    )
    picked = event.selection.rows if event is not None else []
    if picked:
        row = frame.iloc[picked[0]]
        _jump(int(row["example"]), int(row["from"]), int(row["pos"]))


def _jump(doc: int, start: int, pos: int | None) -> None:
    wanted = (doc, start, pos)
    if st.session_state.get("browse_jumped") == wanted:
        return  # the selection stays set after the jump: do not jump again
    st.session_state["browse_jumped"] = wanted
    st.session_state["browse_jump"] = wanted
    st.rerun()
