"""Schematics page: the transformer explained with the model's own numbers: token and
positional embeddings, one attention head step by step, and the residual stream as the
sum of what every component wrote."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from lookingglass import plot
from lookingglass.explorer import compute, state, views

DEFAULT_PROMPT = "And God said, Let there be light: and there was light."


def render() -> None:
    """Draw the page."""
    st.title("Schematics")
    model = state.loaded_model().model
    prompt = st.text_input(
        "Prompt", DEFAULT_PROMPT, max_chars=compute.MAX_PROMPT_CHARS, key="schematic_prompt"
    )
    with state.guarded():
        n = len(compute.prompt_tokens(model, prompt)[0])
        _embeddings(state.embeddings(state.model_key(), prompt))
        st.header("2. One attention head, step by step")
        labels = compute.head_labels(model)
        left, right = st.columns(2)
        head_label = left.selectbox("Head", labels, index=len(labels) - 1, key="schematic_head")
        position = right.number_input("Query position", 0, n - 1, n - 1, key=f"schematic_pos_{n}")
        layer, head = compute.parse_head(model, head_label)
        _head(state.head_steps(state.model_key(), prompt, layer, head, int(position)))
        _residual(state.residual(state.model_key(), prompt, int(position)))


def _embeddings(view) -> None:
    st.header("1. Embeddings")
    rows = [f"{i}: {views.shown_token(t)!r}" for i, t in enumerate(view.str_tokens)]
    st.markdown(
        "Each token id picks a row of the embedding matrix **W_E**; each position picks a row "
        "of **W_pos**. Their sum is the residual stream entering layer 0."
    )
    st.dataframe(
        pd.DataFrame(
            {
                "token": [views.shown_token(t) for t in view.str_tokens],
                "id": view.token_ids,
                "|W_E[id]|": np.linalg.norm(view.token_embed, axis=1).round(3),
            }
        ),
        hide_index=True,
        key="embed_ids",
        height=200,
    )
    panels = [("Token embeddings W_E[token]", view.token_embed, rows)]
    if view.pos_embed is not None:
        panels.append(("Positional embeddings W_pos[position]", view.pos_embed, rows))
    views.vector_panels(panels, key="embeddings")
    st.caption(f"Check: |W_E[token] + W_pos[position] - resid_pre[0]| <= {view.max_abs_diff:.2e}")


def _head(steps) -> None:
    keys = [
        f"{i}: {views.shown_token(t)!r}"
        for i, t in enumerate(steps.str_tokens[: steps.position + 1])
    ]
    query = keys[steps.position]
    st.markdown(
        f"Head **{steps.head}**, query position **{query}**. The head reads the normalized "
        "residual stream x, makes a query q for this position and a key k and a value v for "
        f"every position up to it, scores each key by q·k / {steps.attn_scale:.3g}, turns the "
        "scores into a pattern by softmax, and writes the pattern-weighted sum of values (z) "
        "through W_O into the residual stream."
    )
    for note in steps.notes:
        st.info(
            f"This model's attention has an extra step: {note}. The numbers below are the cached "
            "activations; the step-by-step recomputation checks are skipped."
        )
    frame = pd.DataFrame(
        {
            "key": keys,
            "score q·k/scale": steps.scores.round(4),
            "pattern (softmax)": steps.pattern.round(4),
        }
    )
    st.dataframe(frame, hide_index=True, key="step_scores")
    views.vector_panels(
        [
            (f"q = x[{steps.position}] W_Q + b_Q", steps.q[None], ["q"]),
            ("k = x W_K + b_K (a row per key position)", steps.k, keys),
            ("v = x W_V + b_V", steps.v, keys),
            ("z = pattern · v", steps.z[None], ["z"]),
            ("the head's write to the residual stream: z W_O", steps.result[None], ["z W_O"]),
        ],
        key="head_steps",
    )
    if steps.checks:
        st.dataframe(
            pd.DataFrame(
                {
                    "step": list(steps.checks),
                    "max |recomputed - cached|": [f"{v:.2e}" for v in steps.checks.values()],
                }
            ),
            hide_index=True,
            key="step_checks",
        )


def _residual(view) -> None:
    st.header("3. The residual stream is a sum")
    st.markdown(
        f"At position {view.position}, the stream the unembedding reads is the sum of every "
        f"component's write. The model predicts **{views.shown_token(view.predicted)!r}**; each "
        "bar is how much a component's write pushes toward it (direct logit attribution)."
    )
    st.dataframe(
        pd.DataFrame(
            {
                "component": view.labels,
                "norm of write": view.norms.round(3),
                "attribution to prediction": view.attributions.round(3),
            }
        ),
        hide_index=True,
        key="resid_table",
    )
    views.show(
        plot.logit_attribution(
            view.attributions,
            view.labels,
            title=f"Direct logit attribution toward {view.predicted!r}",
        ),
        key="resid_dla",
    )
    st.caption(f"Check: |sum of writes - final residual stream| <= {view.max_abs_diff:.2e}")


if __name__ == "__main__":
    render()
