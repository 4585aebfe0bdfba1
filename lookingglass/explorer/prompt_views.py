"""The Prompt page's linked views, each drawn for the selected position and head: the
tokens shaded by their loss, the selected head's attention from the selected position
as coloured source text (CircuitsVis-style), the attention grid, and the logit lens as
a table with a column per token. Every token and column is clickable (`clickable`); a
click selects that position (and a grid click that head) in the URL (`state.set_url`),
so every view, and the other pages, move to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from lookingglass.explorer import clickable, compute, state, views

DEFAULT_PROMPT = (
    "And Abraham said unto Abimelech, I will swear. And Abraham said unto Abimelech, "
    "What hast thou done? And Abraham said unto"
)


def prompt_box(label: str = "Prompt", model=None) -> str:
    """The prompt text box, shared by the Prompt and Schematics pages through the URL.
    A prompt longer than the explorer takes is kept as typed (never silently emptied)
    and a button offers to cut it to the first tokens that fit."""
    prompt = state.url_value("prompt", DEFAULT_PROMPT)
    text = st.text_area(
        label,
        help="Shared with the Schematics page; kept in the link (the prompt= part of the URL).",
        **state.bind("prompt", prompt),
    )
    if model is not None:
        _offer_truncation(model, text)
    return text


def _offer_truncation(model, text: str) -> None:
    limit = compute.prompt_limit(model)
    n = int(model.to_tokens(text[: 8 * compute.MAX_PROMPT_CHARS], truncate=False).shape[1])
    if len(text) <= compute.MAX_PROMPT_CHARS and n <= limit:
        return
    kept = compute.truncated_prompt(model, text)
    more = "+" if len(text) > 8 * compute.MAX_PROMPT_CHARS else ""
    st.warning(
        f"This prompt is {len(text)} characters, {n}{more} "
        f"tokens; the explorer reads at most {limit} tokens (BOS included) and "
        f"{compute.MAX_PROMPT_CHARS} characters. Cut it to the first {len(kept)} characters?"
    )
    st.button("Cut to what fits", on_click=state.set_url, kwargs={"prompt": kept})


def selected(model, n: int) -> tuple[int, str]:
    """The selected position (default: the last) and head (default: head 0 of the last
    layer) from the URL, checked against this prompt and model. (The default does not
    wait for the head scores, which take a minute on a 30-layer model.)"""
    position = state.url_int("pos", n - 1, 0, n - 1)
    head = state.url_head(compute.head_labels(model), f"L{model.cfg.n_layers - 1}H0")
    return position, head


def quoted(token: str) -> str:
    """A token between quotes, escaped once, so leading spaces and newlines show."""
    return f"'{views.shown_token(token)}'"


def pick_position(position: int) -> None:
    """Select `position` everywhere (a click's callback)."""
    state.set_url(pos=position)


def pick_head(head: str, position: int) -> None:
    """Select `head` and the query `position` everywhere (a grid click's callback)."""
    state.set_url(head=head, pos=position)


def tokens_by_loss(result: compute.PromptAnalysis, position: int) -> None:
    """The prompt's tokens, each shaded by the loss of predicting it (the first has
    none), the selected one outlined; click one to select it."""
    loss = np.concatenate([[np.nan], result.loss])
    top = float(np.nanmax(loss)) if len(result.loss) else 1.0
    titles = [
        f"{i}: {quoted(t)}"
        + ("" if np.isnan(v) else f"  loss {v:.3f} nats (p {np.exp(-v):.1%})")
        + "\nclick to select this position"
        for i, (t, v) in enumerate(zip(result.str_tokens, loss, strict=True))
    ]
    clickable.token_text(
        [views.shown_token(t) for t in result.str_tokens],
        [clickable.colour(v / (top or 1.0)) for v in loss],
        titles,
        position,
        key="tokens_by_loss",
        on_pick=pick_position,
        legend=clickable.legend("loss of predicting the token (nats)", "0", f"{top:.2f}"),
    )


def attention_text(
    result: compute.PromptAnalysis, layer: int, head: int, position: int, label: str
) -> None:
    """Head `label`'s attention from the token at `position` to every earlier token, as
    the tokens coloured by their weight (later tokens grey); click one to select it."""
    weights = result.patterns[layer, head, position]
    values = [w if i <= position else np.nan for i, w in enumerate(weights)]
    titles = [
        f"key {i}: {quoted(t)}  "
        + (f"attention {w:.3f}" if i <= position else "after the query: not attended")
        for i, (t, w) in enumerate(zip(result.str_tokens, values, strict=True))
    ]
    clickable.token_text(
        [views.shown_token(t) for t in result.str_tokens],
        [clickable.colour(v) for v in values],
        titles,
        position,
        key="attention_text",
        on_pick=pick_position,
        legend=clickable.legend(f"attention of {label} from position {position}", "0", "1"),
    )


def attention_grid(
    result: compute.PromptAnalysis, layers: Sequence[int], head: str, position: int
) -> None:
    """Every head of `layers` as a small picture of its pattern on one scale; click one
    to select that head and the query row clicked."""
    n_heads = result.patterns.shape[1]
    clickable.head_grid(
        result.patterns[list(layers)].reshape(-1, *result.patterns.shape[2:]),
        [f"L{layer}H{h}" for layer in layers for h in range(n_heads)],
        [f"{quoted(t)}" for t in result.str_tokens],
        head,
        position,
        key="attention_grid",
        on_pick=pick_head,
    )


def lens_table(model, result: compute.PromptAnalysis, position: int) -> None:
    """The logit lens: a row per layer, a column per token, each cell coloured by the
    probability the layer's residual stream gives the actual next token (at the last
    position: the model's own prediction); hover for the rank and the top token, click
    to select the position."""
    lens = result.lens
    n = len(result.str_tokens)
    targets = [*result.str_tokens[1:], compute.token_str(model, int(lens.top_tokens[-1, 0, -1, 0]))]
    probs = lens.target_probs[:, 0].numpy()
    ranks = lens.target_ranks[:, 0].numpy()
    tops = lens.top_tokens[:, 0, :, 0].numpy()
    top_probs = lens.top_probs[:, 0, :, 0].numpy()
    names = {int(t): quoted(compute.token_str(model, int(t))) for t in np.unique(tops)}
    titles = [
        [
            f"{label}, position {j}: p(next {quoted(targets[j])}) = {probs[r, j]:.1%}, "
            f"rank {ranks[r, j]}\ntop: {names[int(tops[r, j])]} {top_probs[r, j]:.1%}"
            for j in range(n)
        ]
        for r, label in enumerate(lens.labels)
    ]
    clickable.column_table(
        lens.labels,
        [f"{j} {views.shown_token(t)}"[:14] for j, t in enumerate(result.str_tokens)],
        [[clickable.colour(p) for p in row] for row in probs],
        titles,
        [f"{j}: {quoted(t)} -> next {quoted(targets[j])}" for j, t in enumerate(result.str_tokens)],
        position,
        key="lens_table",
        on_pick=pick_position,
        legend=clickable.legend("probability of the next token", "0", "1"),
    )
    last = " (the last position has no next token: the target is the model's prediction)"
    st.caption(
        f"Position {position}, {quoted(result.str_tokens[position])}, predicting "
        f"{quoted(targets[position])}{last if position == n - 1 else ''}: layer by layer"
    )
    st.dataframe(
        pd.DataFrame(
            {
                "layer": lens.labels,
                "p(next)": [f"{p:.2%}" for p in probs[:, position]],
                "rank of next": ranks[:, position],
                **{
                    f"top {k + 1}": [
                        f"{quoted(compute.token_str(model, int(t)))} {p:.1%}"
                        for t, p in zip(
                            lens.top_tokens[:, 0, position, k].tolist(),
                            lens.top_probs[:, 0, position, k].tolist(),
                            strict=True,
                        )
                    ]
                    for k in range(lens.top_tokens.shape[-1])
                },
            }
        ),
        hide_index=True,
        key="lens_column",
    )
