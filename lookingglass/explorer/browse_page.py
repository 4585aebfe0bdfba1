"""Browse examples page: texts from a dataset (the corpus's held-out chapters by
default); ablate a head or a layer (zero or mean) and see, token by token, how the loss
of predicting each token changes: a strip of the tokens on a signed colour scale with a
legend (red: ablating raises the loss, the component helps; blue: it lowers it), the
numbers of a token under the mouse, a bar per token, and for the selected position the
losses, probabilities and top predictions before and after, the component's direct logit
attribution, the logit lens and (for a head) its attention. "Across the dataset" ranks
every prediction of the dataset for the component, in batches, once per setting.

The example, the component and the selected position live in the URL (`example`,
`component`, `pos`), which the other pages read too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lookingglass.explorer import compute, sources, state, views
from lookingglass.explorer.browse_ranking import ranking_section
from lookingglass.explorer.links import (
    component_from_query,
    component_to_query,
    follow_query,
    int_from_query,
    wrote_query,
)
from lookingglass.explorer.token_view import token_strip

DEFAULT_SCALE = 1.0  # nats: the colour scale's end unless the reader sets another
LEGEND = "loss change when ablated (nats): red, the component helps; blue, it hurts"


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
        default = scores.strongest(scores.induction)[0]
        _seed_widgets(labels, default, len(data.names))
        top = st.columns([3, 2, 2, 1, 1])
        doc = top[0].selectbox(
            "Example",
            range(len(data.names)),
            format_func=lambda i: data.names[i],
            key="doc",
            on_change=_new_example,
        )
        component = top[1].selectbox("Ablate", labels, key="component", on_change=_new_example)
        method = top[2].radio("Ablation", compute.ABLATION_METHODS, key="method", horizontal=True)
        n_doc = state.with_model(sources.document_length, data.texts[doc])
        step = max(1, sources.example_length(model) - 1)
        start = top[3].number_input(
            "From token",
            0,
            max(0, n_doc - 1),
            step=step,
            key=f"start_{doc}",
            on_change=_new_example,
        )
        scale = top[4].number_input(
            "Colour scale (± nats)",
            min_value=0.001,
            max_value=100.0,
            value=DEFAULT_SCALE,
            key="scale",
            help="Loss changes of this size or more get the full colour: a fixed scale, so "
            "examples and components compare.",
        )
        wrote_query("doc", "example", str(doc))
        wrote_query("component", "component", component_to_query(component))
        view = state.ablation(
            state.model_key(), state.setting("data"), int(doc), int(start), component, method
        )
        change = view.ablated_loss - view.clean_loss
        position = _position(view, change)
        _losses(view)
        _strip(view, change, float(scale), position)
        _bars(view, change, float(scale), position)
        _selected(view, position)
        _helps(view)
        _component(view)
        ranking_section(model, data, component, method)


def _seed_widgets(labels: list[str], default: str, n_docs: int) -> None:
    """Before the widgets exist: their first values from the URL (a shared link)."""
    follow_query("component", "component", lambda: component_from_query(labels, default), labels)
    follow_query(
        "doc", "example", lambda: int_from_query("example", 0, 0, n_docs - 1), range(n_docs)
    )
    jump = st.session_state.pop("browse_jump", None)  # a ranked row was clicked
    if jump is not None:
        doc, start, pos = jump
        st.session_state["doc"], st.session_state[f"start_{doc}"] = doc, start
        st.session_state["browse_pos"] = pos


def _new_example() -> None:
    st.session_state.pop("browse_pos", None)  # the position of another example means nothing


def _position(view: compute.AblationView, change: np.ndarray) -> int:
    """The selected token: from the URL when it changed (a link, another page), else
    the one clicked, else where the ablation raises the loss most."""
    n = len(view.str_tokens)
    chosen = st.session_state.get("browse_pos")
    text = st.query_params.get("pos")
    if text is not None and text != st.session_state.get("_query_browse_pos"):
        chosen = int_from_query("pos", chosen, 0, n - 1)
    if chosen is None or not 0 <= chosen < n:
        chosen = int(np.argmax(change)) + 1
    st.session_state["browse_pos"] = chosen
    wrote_query("browse_pos", "pos", str(chosen))
    return chosen


def _select(position: int) -> None:
    st.session_state["browse_pos"] = int(position)


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


def token_tips(view: compute.AblationView) -> list[str]:
    """The detail line of each token: the loss of predicting it, clean and ablated, its
    probability, and the top predictions after it, clean and ablated."""
    tips = []
    for i, token in enumerate(view.str_tokens):
        lines = [f"pos {i}: {views.quoted_token(token)}"]
        if i == 0:
            lines.append("(first token: nothing predicts it)")
        else:
            clean, ablated = float(view.clean_loss[i - 1]), float(view.ablated_loss[i - 1])
            lines.append(
                f"loss of predicting it: clean {clean:.3f}, ablated {ablated:.3f} "
                f"(change {ablated - clean:+.3f}); p {np.exp(-clean):.3f} -> {np.exp(-ablated):.3f}"
            )
        for name, top in (("clean", view.clean_top[i]), ("ablated", view.ablated_top[i])):
            best = ", ".join(f"{views.quoted_token(s.token)} {s.value:.1%}" for s in top[:3])
            lines.append(f"next, {name}: {best}")
        tips.append("\n".join(lines))
    return tips


def _strip(view: compute.AblationView, change: np.ndarray, scale: float, position: int) -> None:
    st.caption(
        "Each token coloured by how much ablating changes the loss of predicting it "
        "(click a token to select it)."
    )
    token_strip(
        view.str_tokens,
        np.concatenate([[np.nan], change]),
        token_tips(view),
        scale,
        LEGEND,
        key="browse_strip",
        selected=position,
        on_click=_select,
    )


def _bars(view: compute.AblationView, change: np.ndarray, scale: float, position: int) -> None:
    positions = np.arange(1, len(view.str_tokens))
    labels = [views.quoted_token(t) for t in view.str_tokens[1:]]
    figure = go.Figure(
        go.Bar(
            x=positions,
            y=change,
            customdata=np.stack([labels, view.clean_loss, view.ablated_loss], axis=1),
            marker=dict(
                color=change,
                colorscale="RdBu",
                reversescale=True,
                cmin=-scale,
                cmax=scale,
                colorbar=dict(title=dict(text="Δ loss"), thickness=10),
                line=dict(width=[2 if p == position else 0 for p in positions], color="#222"),
            ),
            hovertemplate="pos %{x}: %{customdata[0]}<br>Δ loss %{y:+.3f}"
            "<br>clean %{customdata[1]:.3f}, ablated %{customdata[2]:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        title_text="Loss change per token (ablated minus clean; click a bar to select it)",
        xaxis_title="position of the predicted token",
        yaxis_title="Δ loss (nats)",
        height=260,
        template="plotly_white",
        margin=dict(l=50, r=10, t=40, b=40),
    )
    event = st.plotly_chart(
        figure,
        key="browse_bars",
        config=views.PLOTLY_CONFIG,
        theme=None,
        on_select="rerun",
        selection_mode="points",
    )
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if points and int(points[0]["x"]) != position:
        _select(int(points[0]["x"]))
        st.rerun()


def _selected(view: compute.AblationView, position: int) -> None:
    token = view.str_tokens[position]
    st.subheader(f"Position {position}: {views.quoted_token(token)}")
    left, right = st.columns(2)
    with left:
        if position == 0:
            st.markdown("The first token: nothing predicts it.")
        else:
            clean, ablated = view.clean_loss[position - 1], view.ablated_loss[position - 1]
            st.dataframe(
                pd.DataFrame(
                    {
                        "": ["clean", "ablated"],
                        "loss": [round(float(clean), 4), round(float(ablated), 4)],
                        "p(token)": [
                            round(float(np.exp(-clean)), 4),
                            round(float(np.exp(-ablated)), 4),
                        ],
                        "logit": [
                            round(float(view.clean_target_logit[position - 1]), 3),
                            round(float(view.ablated_target_logit[position - 1]), 3),
                        ],
                    }
                ),
                hide_index=True,
                key="selected_loss",
            )
            st.caption(
                f"Predicting {views.quoted_token(token)} after "
                f"{views.quoted_token(view.str_tokens[position - 1])}: {view.component}'s direct "
                f"logit attribution toward it is {view.direct_attribution[position - 1]:+.3f}; the "
                f"logit lens at {view.lens_label} gives it p = "
                f"{view.lens_target_prob[position - 1]:.4f} (top: "
                f"{views.quoted_token(view.lens_top[position - 1])})."
            )
    with right:
        st.markdown(f"**Next-token predictions after {views.quoted_token(token)}**")
        st.dataframe(
            views.predictions_table(
                ["clean", "ablated"], [view.clean_top[position], view.ablated_top[position]]
            )
            .drop(columns="pos")
            .rename(columns={"token": "run"}),
            hide_index=True,
            key="top_before_after",
        )


def _helps(view: compute.AblationView) -> None:
    def table(rows: list[compute.LossChangeRow]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "pos": [r.position + 1 for r in rows],
                "context": [views.shown_token(r.context) for r in rows],
                "next token": [views.quoted_token(r.target) for r in rows],
                "loss change": [round(r.change, 4) for r in rows],
            }
        )

    left, right = st.columns(2)
    for column, rows, title, key in (
        (left, view.helps_most, "**Where it helps most** (ablating raises the loss)", "helps"),
        (right, view.hurts_most, "**Where it hurts most** (ablating lowers the loss)", "hurts"),
    ):
        column.markdown(title)
        frame = table(rows)
        event = column.dataframe(
            frame, hide_index=True, key=key, on_select="rerun", selection_mode="single-row"
        )
        picked = event.selection.rows if event is not None else []
        if picked and int(frame["pos"][picked[0]]) != st.session_state.get("browse_pos"):
            _select(int(frame["pos"][picked[0]]))
            st.rerun()


def _component(view: compute.AblationView) -> None:
    st.subheader(f"{view.component} on this example")
    n = len(view.str_tokens)
    frame = pd.DataFrame(
        {
            "pos": range(1, n),
            "token": [views.quoted_token(t) for t in view.str_tokens[1:]],
            "loss clean": view.clean_loss.round(3),
            "loss ablated": view.ablated_loss.round(3),
            "logit clean": view.clean_target_logit.round(3),
            "logit ablated": view.ablated_target_logit.round(3),
            "direct logit attribution": view.direct_attribution.round(3),
            f"lens at {view.lens_label}: top": [views.quoted_token(t) for t in view.lens_top],
            f"lens at {view.lens_label}: p(token)": view.lens_target_prob.round(4),
        }
    )
    st.caption(
        "Each row: the prediction of the token at `pos` (made at pos - 1). Direct logit "
        "attribution: what the component writes toward that token. Logit lens at "
        f"{view.lens_label}: what the residual stream predicts just before the component."
    )
    st.dataframe(frame, hide_index=True, key="component_table", height=250)
    if view.pattern is not None:
        views.attention_heatmap(
            view.pattern, view.str_tokens, f"Attention of {view.component}", "browse_attention"
        )


if __name__ == "__main__":
    render()
