"""Browse examples page: texts from a dataset (the corpus's held-out chapters by
default); ablate a head or a layer (zero or mean) and see, token by token, the loss
before and after, where the component helps most, the logits before and after, its
direct logit attribution, its attention, and the logit lens just before it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from lookingglass import plot
from lookingglass.explorer import compute, sources, state, views


def render() -> None:
    """Draw the page."""
    st.title("Browse examples")
    model = state.loaded_model().model
    with state.guarded():
        with st.spinner("Reading the dataset..."):
            data = state.dataset()
        st.caption(f"Dataset: {data.source}")
        labels = compute.component_labels(model)
        scores = state.head_scores()
        default = views.head_from_query(
            compute.head_labels(model), scores.strongest(scores.induction)[0]
        )
        top = st.columns([3, 2, 1, 1])
        doc = top[0].selectbox(
            "Example", range(len(data.names)), format_func=lambda i: data.names[i], key="doc"
        )
        component = top[1].selectbox("Ablate", labels, index=labels.index(default), key="component")
        method = top[2].radio("Ablation", compute.ABLATION_METHODS, key="method", horizontal=True)
        n_doc = state.with_model(sources.document_length, data.texts[doc])
        step = max(1, sources.example_length(model) - 1)
        start = top[3].number_input(
            "From token", 0, max(0, n_doc - 1), 0, step=step, key=f"start_{doc}"
        )
        view = state.ablation(
            state.model_key(), state.setting("data"), int(doc), int(start), component, method
        )
        _losses(view)
        _helps(view)
        _logits(view)
        _component(view)


def _losses(view: compute.AblationView) -> None:
    clean, ablated = float(view.clean_loss.mean()), float(view.ablated_loss.mean())
    a, b, c = st.columns(3)
    a.metric("Mean loss, clean", f"{clean:.4f}")
    b.metric(
        f"Mean loss, {view.component} {view.method}-ablated",
        f"{ablated:.4f}",
        f"{ablated - clean:+.4f}",
        delta_color="inverse",
    )
    c.metric("Tokens", len(view.str_tokens))
    change = view.ablated_loss - view.clean_loss
    vmax = float(np.abs(change).max()) or 1.0
    views.token_strip(
        view.str_tokens,
        np.concatenate([[np.nan], np.clip(change, 0, None)]),
        vmax=vmax,
        title="Each token shaded by how much ablating raises the loss of predicting it",
    )
    positions = np.arange(1, len(view.str_tokens))
    figure = plot.Figure(
        [
            plot.Lines(
                [
                    plot.Series("clean", positions, view.clean_loss),
                    plot.Series("ablated", positions, view.ablated_loss),
                ],
                title="",
                x_title="token predicted (position)",
                y_title="loss (nats)",
            )
        ],
        title="Per-token loss before and after",
        cols=1,
        panel_size=(8.0, 2.5),
    )
    views.show(figure, key="loss_lines")


def _helps(view: compute.AblationView) -> None:
    def table(rows: list[compute.LossChangeRow]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "pos": [r.position for r in rows],
                "context": [views.shown_token(r.context) for r in rows],
                "next token": [repr(views.shown_token(r.target)) for r in rows],
                "loss change": [round(r.change, 4) for r in rows],
            }
        )

    left, right = st.columns(2)
    left.markdown("**Where it helps most** (ablating raises the loss)")
    left.dataframe(table(view.helps_most), hide_index=True, key="helps")
    right.markdown("**Where it hurts most** (ablating lowers the loss)")
    right.dataframe(table(view.hurts_most), hide_index=True, key="hurts")


def _logits(view: compute.AblationView) -> None:
    st.subheader("Logits before and after")
    n = len(view.str_tokens)
    targets = [views.shown_token(t) for t in view.str_tokens[1:]]
    frame = pd.DataFrame(
        {
            "pos": range(n - 1),
            "next token": targets,
            "logit clean": view.clean_target_logit.round(3),
            "logit ablated": view.ablated_target_logit.round(3),
            "loss clean": view.clean_loss.round(3),
            "loss ablated": view.ablated_loss.round(3),
        }
    )
    st.dataframe(frame, hide_index=True, key="logit_table", height=250)
    position = st.slider(
        "Position",
        0,
        n - 2,
        int(np.argmax(view.ablated_loss - view.clean_loss)),
        key=f"logit_position_{n}",
    )
    st.caption(
        f"Context ends with {views.shown_token(view.str_tokens[position])!r}; "
        f"the next token is {targets[position]!r}."
    )
    st.dataframe(
        views.predictions_table(
            ["clean", "ablated"], [view.clean_top[position], view.ablated_top[position]]
        ).drop(columns="pos"),
        hide_index=True,
        key="top_before_after",
    )


def _component(view: compute.AblationView) -> None:
    st.subheader(f"{view.component} on this example")
    n = len(view.str_tokens)
    frame = pd.DataFrame(
        {
            "pos": range(n - 1),
            "token": [views.shown_token(t) for t in view.str_tokens[:-1]],
            "direct logit attribution to next": view.direct_attribution.round(3),
            f"lens at {view.lens_label}: top": [repr(views.shown_token(t)) for t in view.lens_top],
            f"lens at {view.lens_label}: p(next)": view.lens_target_prob.round(4),
        }
    )
    st.caption(
        "Direct logit attribution: what the component writes toward the actual next token. "
        f"Logit lens at {view.lens_label}: what the residual stream predicts just before it."
    )
    st.dataframe(frame, hide_index=True, key="component_table", height=250)
    if view.pattern is not None:
        views.attention_heatmap(
            view.pattern, view.str_tokens, f"Attention of {view.component}", "browse_attention"
        )


if __name__ == "__main__":
    render()
