"""Prompt page: type a prompt; see its tokens, the next-token predictions at every
position, every head's attention (a grid; pick one to enlarge), the logit lens, and the
direct logit attribution of heads and layers toward a token or a token difference."""

from __future__ import annotations

import numpy as np
import streamlit as st
from plotly.subplots import make_subplots

from lookingglass import plot
from lookingglass.explorer import compute, state, views

DEFAULT_PROMPT = (
    "And Abraham said unto Abimelech, I will swear. And Abimelech said unto Abraham, "
    "What hast thou done? And Abraham said unto"
)
MAX_GRID_HEADS = 48  # heads drawn at once in the attention grid


def render() -> None:
    """Draw the page."""
    st.title("Prompt")
    model = state.loaded_model().model
    prompt = st.text_area(
        "Prompt",
        DEFAULT_PROMPT,
        max_chars=compute.MAX_PROMPT_CHARS,
        key="prompt",
        help=f"At most {compute.prompt_limit(model)} tokens, BOS included.",
    )
    with state.guarded():
        result = state.prompt_analysis(state.model_key(), prompt)
        st.subheader("Tokens")
        views.token_strip(
            result.str_tokens,
            np.concatenate([[np.nan], result.loss]),
            title=f"{len(result.str_tokens)} tokens, shaded by the loss of predicting each "
            f"(mean {result.loss.mean():.3f} nats)"
            if len(result.loss)
            else "",
        )
        st.subheader("Top next-token predictions")
        st.dataframe(
            views.predictions_table(result.str_tokens, result.top),
            hide_index=True,
            key="predictions",
        )
        _attention(model, result)
        st.subheader("Logit lens")
        st.caption(
            "What the residual stream predicts after each layer (each row read through the "
            "final norm and the unembedding). Cell: the top token; colour: its probability."
        )
        views.show(plot.logit_lens(result.lens, result.str_tokens, model=model), key="lens")
        _attribution(model, prompt)  # last: a bad token there leaves the rest shown


def _attention(model, result: compute.PromptAnalysis) -> None:
    st.subheader("Attention patterns")
    n_layers, n_heads = result.patterns.shape[:2]
    layers = list(range(n_layers))
    if n_layers * n_heads > MAX_GRID_HEADS:
        layers = st.multiselect("Layers", layers, default=[0], key="grid_layers")
    labels = [f"L{l}H{h}" for l in layers for h in range(n_heads)]
    grid = make_subplots(
        rows=max(1, len(layers)),
        cols=n_heads,
        subplot_titles=labels,
        horizontal_spacing=0.01,
        vertical_spacing=0.08 if len(layers) > 1 else 0.0,
    )
    for row, layer in enumerate(layers):
        for head in range(n_heads):
            pattern = result.patterns[layer, head]  # future keys blank:
            grid.add_heatmap(
                z=np.where(np.tri(len(pattern)) > 0, pattern, np.nan),
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=False,
                hoverinfo="skip",
                row=row + 1,
                col=head + 1,
            )
    grid.update_xaxes(visible=False)
    grid.update_yaxes(visible=False, autorange="reversed")
    grid.update_layout(
        margin=dict(l=5, r=5, t=30, b=5),
        height=max(160, 150 * len(layers)),
        template="plotly_white",
    )
    st.caption(
        "Each square: one head; rows are queries (destination), columns keys (source). "
        "Click a head below to enlarge it."
    )
    views.show(grid, key="attention_grid")
    chosen = st.pills("Enlarge", labels, key="enlarge", label_visibility="collapsed")
    if chosen:
        layer, head = compute.parse_head(model, chosen)
        views.attention_heatmap(
            result.patterns[layer, head],
            result.str_tokens,
            f"Attention of {chosen}",
            "attention_big",
        )


def _attribution(model, prompt: str) -> None:
    st.subheader("Direct logit attribution")
    n = len(compute.prompt_tokens(model, prompt)[0])
    left, middle, right = st.columns(3)
    position = left.number_input(
        "Position", min_value=0, max_value=n - 1, value=n - 1, key=f"dla_position_{n}"
    )
    answer = middle.text_input(
        "Toward token (empty: the top prediction)",
        key="dla_answer",
        help="One token, with its leading space if it has one, e.g. ' Abraham'.",
    )
    wrong = right.text_input("Minus token (optional)", key="dla_wrong")
    if not answer:
        answer = state.prompt_analysis(state.model_key(), prompt).top[int(position)][0].token_id
    result = state.attribution(state.model_key(), prompt, int(position), answer, wrong or None)
    st.caption(
        f"Toward {result.target} at position {result.position}: the model's logit"
        f"{' difference' if wrong else ''} is **{result.logit:.3f}**; the components below "
        f"sum to {result.layer_values.sum():.3f}, plus {result.bias:.3f} from the unembedding bias."
    )
    head_col, layer_col = st.columns(2)
    with head_col:
        views.show(plot.head_attribution(result.head_values, title="Per head"), key="dla_heads")
    with layer_col:
        views.show(
            plot.logit_attribution(result.layer_values, result.layer_labels, title="Per layer"),
            key="dla_layers",
        )


if __name__ == "__main__":
    render()
