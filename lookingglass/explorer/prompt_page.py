"""Prompt page: type a prompt and click through it. Its tokens (shaded by their loss),
the predictions at the selected position, the selected head's attention from there as
coloured text, every head's attention pattern in a grid, the logit lens and the direct
logit attribution all follow one selected position and head, which live in the URL
(`?prompt=...&pos=5&head=L1H3`) and are shared with the other pages."""

from __future__ import annotations

import streamlit as st

from lookingglass import plot
from lookingglass.explorer import compute, prompt_views, state, views

MAX_GRID_HEADS = 48  # heads drawn at once in the attention grid unless more layers are picked


def render() -> None:
    """Draw the page."""
    st.title("Prompt")
    model = state.loaded_model().model
    prompt = prompt_views.prompt_box(model=model)
    with state.guarded():
        result = state.prompt_analysis(state.model_key(), prompt)
        n = len(result.str_tokens)
        position, head = prompt_views.selected(model, n)
        st.subheader("Tokens")
        st.caption(
            f"{n} tokens, mean loss {result.loss.mean():.3f} nats. Click a token to select "
            "its position: the attention, the logit lens, the predictions and the "
            "attribution below move to it (and so do the other pages)."
            if len(result.loss)
            else "Click a token to select its position."
        )
        prompt_views.tokens_by_loss(result, position)
        _position(result, position)
        _attention(model, result, head, position)
        st.subheader("Logit lens")
        st.caption(
            "What the residual stream predicts before each layer and at the end (read "
            "through the final norm and the unembedding). Colour: the probability it gives "
            "the actual next token; hover a cell for its rank and the top token; click a "
            "column to select that position. Scrolls sideways for long prompts."
        )
        prompt_views.lens_table(model, result, position)
        _attribution(model, prompt, result, position)  # last: a bad token leaves the rest


def _position(result: compute.PromptAnalysis, position: int) -> None:
    n = len(result.str_tokens)
    st.subheader("Selected position")
    left, right = st.columns([1, 3])
    left.number_input("Position", min_value=0, max_value=n - 1, **state.bind("pos", position))
    nxt = (
        f"the next token is {prompt_views.quoted(result.str_tokens[position + 1])} "
        f"(loss {result.loss[position]:.3f} nats)"
        if position < n - 1
        else "the last position: what the model predicts next"
    )
    right.markdown(
        views.plain(f"Token {position}, {prompt_views.quoted(result.str_tokens[position])}: {nxt}.")
    )
    right.dataframe(
        views.predictions_table(result.str_tokens, result.top).iloc[[position]],
        hide_index=True,
        key="predictions",
    )


def _attention(model, result: compute.PromptAnalysis, head: str, position: int) -> None:
    st.subheader("Attention")
    labels = compute.head_labels(model)
    layer, index = compute.parse_head(model, head)
    left, right = st.columns([1, 3])
    left.selectbox("Head", labels, **state.bind("head", head))
    n_layers, n_heads = result.patterns.shape[:2]
    layers = list(range(n_layers))
    if n_layers * n_heads > MAX_GRID_HEADS:
        chosen = st.session_state.get("grid_layers", [])
        if layer not in chosen:  # the selected head's layer is always drawn
            st.session_state["grid_layers"] = sorted([*chosen, layer])
        layers = right.multiselect("Layers in the grid", layers, key="grid_layers")
    prompt_views.attention_text(result, layer, index, position, head)
    st.caption(
        "Each picture: one head's pattern, rows are queries (destination), columns keys "
        "(source), one colour scale (white 0, blue 1; grey: future keys). Hover for the "
        "tokens and the weight; click to select the head and that query row."
    )
    prompt_views.attention_grid(result, sorted(set(layers)), head, position)
    views.attention_heatmap(
        result.patterns[layer, index], result.str_tokens, f"Attention of {head}", "attention_big"
    )


def _attribution(model, prompt: str, result: compute.PromptAnalysis, position: int) -> None:
    st.subheader("Direct logit attribution")
    candidates = {
        s.token_id: f"{prompt_views.quoted(s.token)} (top {i + 1}, {s.value:.1%})"
        for i, s in enumerate(result.top[position])
    }
    if position < len(result.tokens) - 1:
        following = int(result.tokens[position + 1])
        candidates.setdefault(following, f"{prompt_views.quoted(result.str_tokens[position + 1])}")
        candidates[following] += " (the actual next token)"
    left, right = st.columns(2)
    answer = left.selectbox(
        f"Toward token (at position {position})",
        list(candidates),
        format_func=candidates.get,
        key=f"dla_answer_{position}",
    )
    wrong = right.selectbox(
        "Minus token (optional)",
        [None, *candidates],
        format_func=lambda t: "none" if t is None else candidates[t],
        key=f"dla_wrong_{position}",
    )
    result = state.attribution(state.model_key(), prompt, position, int(answer), wrong)
    st.caption(
        f"Toward {result.target} at position {result.position}: the model's logit"
        f"{' difference' if wrong is not None else ''} is **{result.logit:.3f}**; the "
        f"components below sum to {result.layer_values.sum():.3f}, plus {result.bias:.3f} "
        "from the unembedding bias."
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
