"""Circuits page: every head's induction, previous-token and copying scores; for a chosen
head, its Q-, K- and V-composition scores with earlier and later heads beside a random
baseline, and its QK circuit (which tokens a query token attends to) and OV circuit
(which logits attending to a token raises or lowers), directly or through an earlier
head (K- and V-composition), with the token embedding or the effective embedding.

The head lives in the URL (`head`), which the other pages read too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lookingglass.analysis.composition import MODES
from lookingglass.explorer import circuit_paths, compute, state, views
from lookingglass.explorer.links import follow_query, wrote_query

DIRECT = "direct (no other head)"


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
        follow_query("circuit_head", "head", lambda: views.head_from_query(labels, best), labels)
        head_label = st.selectbox("Head", labels, key="circuit_head")
        wrote_query("circuit_head", "head", head_label)
        layer, head = compute.parse_head(model, head_label)
        _composition(model, layer, head)
        _paths(model, layer, head, prev, float(scores.copying[layer, head]))


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


def _composition(model, layer: int, head: int) -> None:
    view = state.resource(
        ("composition", state.model_key(), layer, head),
        lambda: state.with_model(circuit_paths.composition_view, layer, head),
    )
    st.subheader(f"Composition of {view.head} with other heads")
    base = ", ".join(f"{m} {view.baseline_mean[m]:.3f} ± {view.baseline_std[m]:.3f}" for m in MODES)
    st.caption(
        "Composition score ||W_OV(writer) · R(reader)||_F / (||W_OV|| ||R||), R = W_QK (Q), "
        "W_QK^T (K) or W_OV (V) of the reading head, as TransformerLens's "
        "`all_composition_scores` (Elhage et al. 2021). Random weights of these shapes score "
        f"{base} (mean ± std): cells are coloured by score / random mean, so 1 is what "
        "unrelated heads get."
    )
    if view.layer > 0:
        st.markdown(f"**Earlier heads writing into {view.head}** (rows: writer layer)")
        columns = st.columns(3)
        for column, mode in zip(columns, MODES, strict=True):
            with column:
                _grid(
                    view.earlier[mode],
                    view.baseline_mean[mode],
                    0,
                    f"{mode}-composition",
                    f"comp_in_{mode}",
                )
    if view.later[MODES[0]].shape[0] > 0:
        st.markdown(f"**{view.head} writing into later heads** (rows: reader layer)")
        columns = st.columns(3)
        for column, mode in zip(columns, MODES, strict=True):
            with column:
                _grid(
                    view.later[mode],
                    view.baseline_mean[mode],
                    view.layer + 1,
                    f"{mode}-composition",
                    f"comp_out_{mode}",
                )
    st.dataframe(_strongest(view), hide_index=True, key="composition_top")


def _grid(scores: np.ndarray, baseline: float, first_layer: int, title: str, key: str) -> None:
    ratio = scores / baseline
    n_layers, n_heads = scores.shape
    figure = go.Figure(
        go.Heatmap(
            z=ratio,
            x=[f"H{h}" for h in range(n_heads)],
            y=[f"L{first_layer + l}" for l in range(n_layers)],
            customdata=scores,
            zmin=0,
            zmax=max(2.0, float(ratio.max())),
            colorscale="Blues",
            colorbar=dict(title=dict(text="x random"), thickness=10),
            hovertemplate="%{y}%{x}: score %{customdata:.4f} (%{z:.2f} x random)<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(
        title_text=title,
        height=min(700, 140 + 22 * n_layers),
        template="plotly_white",
        margin=dict(l=40, r=10, t=40, b=30),
    )
    views.show(figure, key=key)


def _strongest(view: circuit_paths.CompositionView, k: int = 8) -> pd.DataFrame:
    """The pairs that compose most, relative to the random baseline."""
    rows = []
    for mode in MODES:
        for side, scores, first in (
            ("earlier", view.earlier[mode], 0),
            ("later", view.later[mode], view.layer + 1),
        ):
            for (l, h), score in np.ndenumerate(scores):
                other = f"L{first + l}H{h}"
                writer, reader = (other, view.head) if side == "earlier" else (view.head, other)
                rows.append((mode, writer, reader, float(score), view.baseline_mean[mode]))
    frame = pd.DataFrame(rows, columns=["mode", "writer", "reader", "score", "random mean"])
    frame["x random"] = (frame["score"] / frame["random mean"]).round(2)
    frame["score"] = frame["score"].round(4)
    frame["random mean"] = frame["random mean"].round(4)
    return frame.sort_values("x random", ascending=False).head(k)


@st.cache_data(max_entries=64, show_spinner=False)
def _path(
    key: str, layer: int, head: int, query: str, source: str, through: str | None, embed: str
) -> circuit_paths.PathView:
    embedding = (
        None
        if embed == "W_E"
        else state.resource(
            ("effective_embedding", key, embed),
            lambda: state.with_model(circuit_paths.embedding, embed),
        )
    )
    return state.with_model(
        circuit_paths.path_view, layer, head, query, source, through, embedding, embed
    )


def _paths(model, layer: int, head: int, previous_head: str, copying: float) -> None:
    copying_text = "n/a (d_vocab != d_vocab_out)" if np.isnan(copying) else f"{copying:.3f}"
    st.subheader(f"L{layer}H{head}: QK and OV circuits (copying score {copying_text})")
    earlier = [l for l in compute.head_labels(model) if compute.parse_head(model, l)[0] < layer]
    options = [DIRECT, *earlier]
    top = st.columns([2, 3])
    through = top[0].selectbox(
        "Through earlier head",
        options,
        index=options.index(previous_head) if previous_head in options else 0,
        key=f"through_{layer}",
        help="K-composition: the keys are what that head moved to the key position (for a "
        "previous-token head, the token before it). V-composition: this head passes on "
        "what that head wrote.",
    )
    embeddings = ["W_E"] if model.cfg.attn_only else list(circuit_paths.EMBEDDINGS)
    embed = top[1].radio(
        "Embedding",
        embeddings,
        format_func=lambda name: circuit_paths.EMBEDDINGS[name],
        key="circuit_embedding",
        horizontal=True,
    )
    default_token = model.to_str_tokens(" Abraham", prepend_bos=False)[0]
    left, right = st.columns(2)
    query = left.text_input(
        "Query token (QK: what does it attend to?)", default_token, key="qk_token"
    )
    source = right.text_input(
        "Source token (OV: what does attending to it write?)", default_token, key="ov_token"
    )
    with st.spinner("Computing the circuits (the effective embedding once per model)..."):
        view = _path(
            state.model_key(),
            layer,
            head,
            query,
            source,
            None if through == DIRECT else through,
            embed,
        )
    _path_tables(view)


def _path_tables(view: circuit_paths.PathView) -> None:
    via = f" through {view.through}" if view.through else ""
    qk, boosted, suppressed = st.columns(3)
    with qk:
        st.markdown(
            f"**QK**: keys that query {views.quoted_token(view.query)} scores highest"
            if not view.through
            else f"**QK{via}** (K-composition): key tokens, as {view.through} moved them, "
            f"that query {views.quoted_token(view.query)} scores highest"
        )
        st.dataframe(
            views.token_scores_table(view.top_keys, "score"), hide_index=True, key="qk_table"
        )
        st.caption(f"The query token itself ranks {view.query_rank} among all keys{via}.")
    with boosted:
        st.markdown(
            f"**OV{via}**: logits raised most by attending to {views.quoted_token(view.source)}"
        )
        st.dataframe(
            views.token_scores_table(view.boosted, "logit"), hide_index=True, key="ov_boosted"
        )
    with suppressed:
        st.markdown(f"**OV{via}**: logits lowered most")
        st.dataframe(
            views.token_scores_table(view.suppressed, "logit"), hide_index=True, key="ov_suppressed"
        )
    st.caption(
        f"The source token's own logit through this path: {view.source_logit:.3f} (rank "
        f"{view.source_rank} of all tokens; 0 means it is the most raised: copying). Circuits "
        f"read {circuit_paths.EMBEDDINGS[view.embedding]} and the weights only: no positions, "
        "no layer norms (folded)."
    )


if __name__ == "__main__":
    render()
