"""Circuits page: one head's QK circuit (which tokens a query token attends to, through
the embeddings) and OV circuit (which logits attending to a token raises or lowers),
its copying score, and every head's induction, previous-token and copying scores."""

from __future__ import annotations

import numpy as np
import streamlit as st

from lookingglass.explorer import compute, state, views


def render() -> None:
    """Draw the page."""
    st.title("Circuits (OV and QK)")
    model = state.loaded_model().model
    with state.guarded():
        scores = state.head_scores()
        best, best_score = scores.strongest(scores.induction)
        prev, prev_score = scores.strongest(scores.previous_token)
        weak = (
            " (no head is a clear induction head: all score under 0.3)" if best_score < 0.3 else ""
        )
        st.markdown(
            f"Strongest induction head: **{best}** (induction score {best_score:.2f}){weak}; "
            f"strongest previous-token head: **{prev}** ({prev_score:.2f})."
        )
        _score_tables(scores)
        labels = compute.head_labels(model)
        default = views.head_from_query(labels, best)
        head_label = st.selectbox("Head", labels, index=labels.index(default), key="circuit_head")
        layer, head = compute.parse_head(model, head_label)
        default_token = model.to_str_tokens(" Abraham", prepend_bos=False)[0]
        left, right = st.columns(2)
        query = left.text_input(
            "Query token (QK: what does it attend to?)", default_token, key="qk_token"
        )
        source = right.text_input(
            "Source token (OV: what does attending to it write?)", default_token, key="ov_token"
        )
        view = state.circuit(state.model_key(), layer, head, query, source)
        _circuit(view)


def _score_tables(scores: compute.HeadScores) -> None:
    st.caption(
        f"Induction score: attention from each token of a repeated random sequence to the token "
        f"after its first occurrence ({scores.probe_len} tokens repeated twice, 10 sequences). "
        "Copying score: Re(sum of eigenvalues) / sum |eigenvalues| of the full OV circuit "
        "(1: copies tokens, -1: suppresses them)."
    )
    induction, previous, copying = st.columns(3)
    with induction:
        views.head_grid(scores.induction, "Induction score", "scores_induction")
    with previous:
        views.head_grid(scores.previous_token, "Previous-token score", "scores_previous")
    with copying:
        views.head_grid(scores.copying, "Copying score (OV)", "scores_copying", zmin=-1.0, zmax=1.0)


def _circuit(view: compute.CircuitView) -> None:
    copying = (
        "n/a (d_vocab != d_vocab_out)"
        if np.isnan(view.copying_score)
        else f"{view.copying_score:.3f}"
    )
    st.subheader(f"{view.head}: copying score {copying}")
    qk, boosted, suppressed = st.columns(3)
    with qk:
        st.markdown(f"**QK**: keys that query {views.shown_token(view.query)!r} scores highest")
        st.dataframe(
            views.token_scores_table(view.top_keys, "score"), hide_index=True, key="qk_table"
        )
    with boosted:
        st.markdown(
            f"**OV**: logits raised most by attending to {views.shown_token(view.source)!r}"
        )
        st.dataframe(
            views.token_scores_table(view.boosted, "logit"), hide_index=True, key="ov_boosted"
        )
    with suppressed:
        st.markdown("**OV**: logits lowered most")
        st.dataframe(
            views.token_scores_table(view.suppressed, "logit"), hide_index=True, key="ov_suppressed"
        )
    st.caption(
        f"The source token's own logit through this head's OV circuit: {view.source_logit:.3f} "
        f"(rank {view.source_rank} of all tokens; 0 means it is the most raised: copying). "
        "Circuits read the embeddings and weights only: no positions, no layer norms."
    )


if __name__ == "__main__":
    render()
