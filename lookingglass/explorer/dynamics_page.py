"""Training dynamics page (`--snapshots FOLDER`): each head's induction and
previous-token scores over training, the held-out and in-context-learning losses, and
the trajectory of training in the principal components of its per-token losses."""

from __future__ import annotations

import json

import streamlit as st

from lookingglass.explorer import dynamics_figures, state, views


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
            + (
                ". A bare snapshots folder is measured on the corpus's held-out chapters (or "
                "synthetic induction rows), not on the replication's own held-out rows: its "
                "losses and ICL score differ from the run's dynamics.npz; head scores use the "
                "same probe (20 repeated random sequences, seed 0) and agree."
                if "measured" in view.origin
                else ""
            )
        )
        if view.summary.get("induction_heads"):
            heads = ", ".join(
                f"{h['head']} ({h['final_score']:.2f}, above threshold from step "
                f"{h['first_step_above']})"
                for h in view.summary["induction_heads"]
            )
            st.markdown(f"Induction heads at the end of training: **{heads}**")
        summary = view.summary or {}
        for name, scores in (
            ("Induction score", view.induction),
            ("Previous-token score", view.previous_token),
        ):
            views.show(
                dynamics_figures.head_scores_figure(view.steps, scores, name, summary),
                key=f"dynamics_{name}",
            )
        st.caption(
            "Induction score: a head's attention from each token of a repeated random "
            "sequence to the token after its first occurrence. Previous-token score: its "
            "attention to the token just before."
        )
        figure, notes = dynamics_figures.losses_figure(
            view.steps, view.eval_loss, view.icl, summary
        )
        views.show(figure, key="dynamics_losses")
        st.caption(ICL_DEFINITION + (" Shaded: " + "; ".join(notes) + "." if notes else ""))
        views.show(
            dynamics_figures.pca_figure(view.pca_trajectory, view.steps, view.pca_explained),
            key="dynamics_pca",
        )
        st.caption(
            "Each point is a snapshot, labelled with its step: its per-token losses on a fixed "
            "sample of held-out tokens, projected on their principal components over all "
            "snapshots (Olsson et al. 2022). A phase change shows as a sharp turn."
        )
        if view.summary:
            with st.expander("Summary (phase changes)"):
                st.code(json.dumps(view.summary, indent=2), language="json")


ICL_DEFINITION = (
    "ICL score (in-context learning): the mean held-out loss over the second half of the "
    "context (tokens seq_len/2 to seq_len - 1) minus the mean loss over an early window "
    "(tokens seq_len/20 to seq_len/10), as Olsson et al.'s loss at token 500 minus at token "
    "50; negative means the model predicts better later in the context."
)


if __name__ == "__main__":
    render()
