"""Schematics page: the transformer explained with the model's own numbers, on the
prompt, head and position the Prompt page has selected (they live in the URL): the
token and positional embeddings and their sum, one attention head step by step (the
normalized input x, q, k, the product of q and the winning key that makes its score,
the pattern, v, z and the head's write), and the residual stream as the sum of what
every component wrote. Vectors of one kind share one colour scale, with its bar."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lookingglass import plot
from lookingglass.explorer import compute, prompt_views, state, views
from lookingglass.explorer.schematics_views import Panel, vector_figure


def render() -> None:
    """Draw the page."""
    st.title("Schematics")
    model = state.loaded_model().model
    prompt = prompt_views.prompt_box("Prompt (the same as on the Prompt page)", model)
    with state.guarded():
        n = len(compute.prompt_tokens(model, prompt)[0])
        position, head_label = prompt_views.selected(model, n)
        _embeddings(state.embeddings(state.model_key(), prompt))
        st.header("2. One attention head, step by step")
        left, right = st.columns(2)
        left.selectbox("Head", compute.head_labels(model), **state.bind("head", head_label))
        right.number_input("Query position", 0, n - 1, **state.bind("pos", position))
        layer, head = compute.parse_head(model, head_label)
        _head(state.head_steps(state.model_key(), prompt, layer, head, position))
        _residual(state.residual(state.model_key(), prompt, position))


def _labels(str_tokens) -> list[str]:
    return [f"{i}: {prompt_views.quoted(t)}" for i, t in enumerate(str_tokens)]


def _embeddings(view) -> None:
    st.header("1. Embeddings")
    rows = _labels(view.str_tokens)
    has_pos = view.pos_embed is not None
    st.markdown(
        "Each token id picks a row of the embedding matrix **W_E**"
        + (
            "; each position picks a row of **W_pos**. Their sum, x0, is the residual stream "
            "entering layer 0."
            if has_pos
            else ". That row is the residual stream entering layer 0, x0 (this model has no "
            "positional embedding matrix: positions enter inside attention, by rotating q "
            "and k)."
        )
    )
    panels = [Panel("Token embeddings W_E[token]", view.token_embed, rows)]
    if has_pos:
        panels.append(Panel("Positional embeddings W_pos[position]", view.pos_embed, rows))
    panels.append(
        Panel(
            "x0 = W_E[token] + W_pos[position], the residual stream entering layer 0"
            if has_pos
            else "x0 = W_E[token], the residual stream entering layer 0",
            view.resid_pre0,
            rows,
        )
    )
    vector_figure(panels, "value", key="embeddings")
    st.caption(
        f"Every dimension drawn, one colour scale for all three. Check: |W_E[token]"
        f"{' + W_pos[position]' if has_pos else ''} - resid_pre[0]| <= {view.max_abs_diff:.2e}"
    )


def _head(steps) -> None:
    keys = _labels(steps.str_tokens[: steps.position + 1])
    query, winner = keys[steps.position], keys[steps.winner]
    st.markdown(
        f"Head **{steps.head}**, query position **{views.plain(query)}**. The head reads the "
        "normalized residual stream x, makes a query q for this position and a key k and a "
        f"value v for every position up to it, scores each key by q·k / {steps.attn_scale:.3g}, "
        "turns the scores into a pattern by softmax, and writes the pattern-weighted sum of "
        "values (z) through W_O into the residual stream."
    )
    for note in steps.notes:
        st.info(f"This model's attention has an extra step: {note}.")
    vector_figure(
        [
            Panel("x: the normalized input (a row per position up to the query)", steps.x, keys),
            Panel("the head's write to the residual stream: z W_O", steps.result[None], ["z W_O"]),
        ],
        "value (d_model)",
        key="head_inputs",
    )
    rotated = "rotated " if any("rotary" in note for note in steps.notes) else ""
    score = float(steps.product.sum() / steps.attn_scale)
    st.markdown(
        f"The winning key is **{views.plain(winner)}** (pattern {steps.pattern[steps.winner]:.3f}, "
        f"outlined in k and v). Its score is the sum of the {rotated}q·k product row below, "
        f"divided by the scale: {steps.product.sum():.3f} / {steps.attn_scale:.3g} = "
        f"**{score:.3f}** (the cached score: {steps.scores[steps.winner]:.3f})."
    )
    vector_figure(
        [
            Panel(f"{rotated}q = x[{steps.position}] W_Q + b_Q", steps.q_scored[None], ["q"]),
            Panel(
                f"{rotated}k = x W_K + b_K (a row per key; the winner outlined)",
                steps.k_scored,
                keys,
                [steps.winner],
            ),
            Panel(
                f"q * k[{steps.winner}], dim by dim: its sum / scale is the winning score",
                steps.product[None],
                ["q*k"],
            ),
            Panel("v = x W_V + b_V (the winner outlined)", steps.v, keys, [steps.winner]),
            Panel("z = pattern · v", steps.z[None], ["z"]),
        ],
        "value (d_head)",
        key="head_steps",
    )
    st.dataframe(
        pd.DataFrame(
            {
                "key": keys,
                "score q·k/scale": steps.scores.round(4),
                "pattern (softmax)": steps.pattern.round(4),
            }
        ),
        hide_index=True,
        key="step_scores",
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
    predicted = prompt_views.quoted(view.predicted)
    st.markdown(
        f"At position {view.position}, the stream the unembedding reads is the sum of every "
        f"component's write. The model predicts **{views.plain(predicted)}**; each bar is how "
        "much a component's write pushes toward it (direct logit attribution)."
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
            view.attributions, view.labels, title=f"Direct logit attribution toward {predicted}"
        ),
        key="resid_dla",
    )
    st.caption(f"Check: |sum of writes - final residual stream| <= {view.max_abs_diff:.2e}")


if __name__ == "__main__":
    render()
