"""The Training dynamics page's figures (plotly): head scores and losses over training
with the phase-change windows shaded, and the per-token-loss PCA trajectory with every
point labelled by its step and coloured along a gradient from first to last snapshot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

WINDOWS = {  # summary key -> (label, fill colour, label position: the windows often overlap)
    "induction_phase": ("induction phase change", "rgba(214,96,77,0.15)", "top left"),
    "icl_phase": ("ICL phase change", "rgba(67,147,195,0.15)", "bottom left"),
}


def shade_windows(figure: go.Figure, summary: dict, rows: Sequence[int] = (1,)) -> list[str]:
    """Shade the detected phase-change windows of `summary` (`dynamics_summary`) on every
    subplot row in `rows`; returns a sentence per window drawn."""
    notes = []
    for name, (label, colour, position) in WINDOWS.items():
        window = summary.get(name) or {}
        if not window.get("detected"):
            continue
        for row in rows:
            # Labelled on the first row only (an annotation_text of None reads "new text").
            label_args = (
                {"annotation_text": label, "annotation_position": position}
                if row == rows[0]
                else {}
            )
            figure.add_vrect(
                x0=window["start"],
                x1=window["end"],
                fillcolor=colour,
                line_width=0,
                layer="below",
                row=row,
                col=1,
                **label_args,
            )
        notes.append(
            f"{label}: steps {window['start']} to {window['end']} (rise {window['rise']:.2f})"
        )
    return notes


def head_scores_figure(
    steps: np.ndarray, scores: np.ndarray, name: str, summary: dict, top: int = 8
) -> go.Figure:
    """`scores [n_snapshots, n_layers, n_heads]` over training, one line per head; only
    the `top` heads with the highest final score are labelled in the legend, the others
    are drawn thin and grey."""
    n_layers, n_heads = scores.shape[1:]
    final = scores[-1].reshape(-1)
    best = set(np.argsort(-final)[:top].tolist())
    figure = make_subplots(rows=1, cols=1)
    for index in range(n_layers * n_heads):
        layer, head = divmod(index, n_heads)
        strong = index in best
        figure.add_scatter(
            x=steps,
            y=scores[:, layer, head],
            mode="lines+markers" if strong else "lines",
            name=f"L{layer}H{head}",
            showlegend=strong,
            line=dict(width=2 if strong else 1, color=None if strong else "rgba(150,150,150,0.5)"),
            hovertemplate=f"L{layer}H{head}, step %{{x}}: %{{y:.3f}}<extra></extra>",
            row=1,
            col=1,
        )
    shade_windows(figure, summary)
    figure.update_layout(
        title_text=f"{name} of each head over training",
        xaxis_title="training step",
        yaxis_title=name,
        height=320,
        template="plotly_white",
        margin=dict(l=50, r=10, t=40, b=40),
    )
    return figure


def losses_figure(
    steps: np.ndarray, eval_loss: np.ndarray, icl: np.ndarray, summary: dict
) -> tuple[go.Figure, list[str]]:
    """Held-out loss and ICL score over training (two panels, shared steps), the phase
    windows shaded on both."""
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        subplot_titles=(
            "held-out loss (nats)",
            "ICL score (nats; lower: more in-context learning)",
        ),
        vertical_spacing=0.12,
    )
    figure.add_scatter(
        x=steps, y=eval_loss, mode="lines+markers", name="held-out loss", row=1, col=1
    )
    figure.add_scatter(x=steps, y=icl, mode="lines+markers", name="ICL score", row=2, col=1)
    notes = shade_windows(figure, summary, rows=(1, 2))
    figure.update_xaxes(title_text="training step", row=2, col=1)
    figure.update_layout(
        title_text="Losses over training",
        height=420,
        template="plotly_white",
        showlegend=False,
        margin=dict(l=50, r=10, t=60, b=40),
    )
    return figure, notes


def pca_figure(trajectory: np.ndarray, steps: np.ndarray, explained: np.ndarray) -> go.Figure:
    """The trajectory in the first two principal components (or the first against the
    step when there is one): points joined in step order, coloured from the first
    snapshot (dark) to the last (yellow), each labelled with its step."""
    steps = np.asarray(steps).astype(int)
    two = trajectory.shape[1] > 1
    x = trajectory[:, 0] if two else steps
    y = trajectory[:, 1] if two else trajectory[:, 0]
    order = np.arange(len(steps))
    every = max(1, len(steps) // 15)  # label at most ~15 points, always the ends
    labels = [str(s) if i % every == 0 or i == len(steps) - 1 else "" for i, s in enumerate(steps)]
    figure = go.Figure()
    figure.add_scatter(
        x=x,
        y=y,
        mode="lines",
        line=dict(color="rgba(120,120,120,0.5)"),
        hoverinfo="skip",
        showlegend=False,
    )
    figure.add_scatter(
        x=x,
        y=y,
        mode="markers+text",
        text=labels,
        textposition="top center",
        textfont=dict(size=10),
        customdata=steps,
        marker=dict(
            size=9,
            color=order,
            colorscale="Viridis",
            colorbar=dict(
                title=dict(text="step"),
                tickvals=[0, len(steps) - 1],
                ticktext=[str(steps[0]), str(steps[-1])],
                thickness=10,
            ),
        ),
        hovertemplate="step %{customdata}<br>(%{x:.3f}, %{y:.3f})<extra></extra>",
        showlegend=False,
    )
    variance = [f"PC{i + 1} ({100 * v:.1f}% of variance)" for i, v in enumerate(explained)]
    figure.update_layout(
        title_text="Training in the principal components of the per-token losses",
        xaxis_title=variance[0] if two else "training step",
        yaxis_title=variance[1] if two else variance[0],
        height=460,
        template="plotly_white",
        margin=dict(l=50, r=10, t=40, b=40),
    )
    return figure
