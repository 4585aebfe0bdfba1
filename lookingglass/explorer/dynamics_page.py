"""Training dynamics page (`--snapshots FOLDER`): each head's induction and
previous-token scores over training, the held-out and in-context-learning losses, and
the trajectory of training in the principal components of its per-token losses."""

from __future__ import annotations

import json

import streamlit as st

from lookingglass import plot
from lookingglass.explorer import state, views


def render() -> None:
    """Draw the page."""
    st.title("Training dynamics")
    path = state.setting("snapshots")
    if path is None:
        st.info(
            "No snapshots given. Start the explorer with --snapshots FOLDER (a folder of "
            "step_XXXXXX snapshots, or a run folder of `lookingglass replicate`) to see how "
            "the heads formed during training."
        )
        return
    with state.guarded():
        with st.spinner(
            "Measuring the snapshots (once; a run folder's dynamics.npz is read instead)..."
        ):
            view = state.dynamics()
        st.caption(
            f"{len(view.steps)} snapshots, steps {int(view.steps[0])} to {int(view.steps[-1])}; "
            f"from {view.origin}"
        )
        if view.summary.get("induction_heads"):
            heads = ", ".join(
                f"{h['head']} ({h['final_score']:.2f}, above threshold from step "
                f"{h['first_step_above']})"
                for h in view.summary["induction_heads"]
            )
            st.markdown(f"Induction heads at the end of training: **{heads}**")
        _scores(view)
        views.show(
            plot.training_curves(
                {"step": view.steps, "held-out loss": view.eval_loss, "ICL score": view.icl},
                title="Losses over training",
            ),
            key="dynamics_losses",
        )
        views.show(
            plot.loss_pca_trajectory(
                view.pca_trajectory,
                list(view.steps.astype(int)),
                explained_variance=view.pca_explained,
                components=[(0, 1)] if view.pca_trajectory.shape[1] > 1 else [(0, 0)],
            ),
            key="dynamics_pca",
        )
        if view.summary:
            with st.expander("Summary (phase changes)"):
                st.code(json.dumps(view.summary, indent=2), language="json")


def _scores(view) -> None:
    n_layers, n_heads = view.induction.shape[1:]
    for name, scores in (
        ("Induction score", view.induction),
        ("Previous-token score", view.previous_token),
    ):
        series = [
            plot.Series(f"L{l}H{h}", view.steps, scores[:, l, h], mode="lines+markers")
            for l in range(n_layers)
            for h in range(n_heads)
        ]
        panel = plot.Lines(series, title="", x_title="training step", y_title=name)
        views.show(
            plot.Figure(
                [panel], title=f"{name} of each head over training", cols=1, panel_size=(8.0, 3.0)
            ),
            key=f"dynamics_{name}",
        )


if __name__ == "__main__":
    render()
