"""Training dynamics: loss curves, and the trajectory of a model through training in the
principal components of its per-token losses (Olsson et al. 2022's phase-change plot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lookingglass.errors import InputError
from lookingglass.plot.figure import Figure, Lines, Series, to_numpy


def training_curves(
    history: Any,
    *,
    x: str = "step",
    metrics: Sequence[str] | None = None,
    log_x: bool = False,
    log_y: bool = False,
    title: str = "Training curves",
) -> Figure:
    """Loss (and other metrics) against training step, one panel per metric.

    Args:
        history: a `TrainResult` (train loss per step, eval loss at eval steps), a
            `training.dynamics.Dynamics` (held-out loss, ICL score and the largest
            induction score per snapshot), a dict of columns (`{"step": [...], "loss":
            [...]}`, or `{"loss": [...]}` counted from step 1), or a list of per-step dicts.
        x: the column used as the x axis.
        metrics: which columns to draw (default: all but `x`).
        log_x, log_y: logarithmic axes.
    """
    if hasattr(history, "train_losses"):
        columns: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "loss": (
                np.arange(1, len(history.train_losses) + 1),
                np.asarray(history.train_losses, float),
            )
        }
        panel = Lines(
            [Series("train", *columns["loss"])],
            title="loss",
            x_title="step",
            y_title="loss",
            log_x=log_x,
            log_y=log_y,
        )
        if getattr(history, "eval_losses", None):
            panel.series.append(
                Series(
                    "eval",
                    np.asarray(history.eval_steps, float),
                    np.asarray(history.eval_losses, float),
                    mode="lines+markers",
                )
            )
        return Figure([panel], title=title, cols=1, panel_size=(6.0, 3.5))
    if hasattr(history, "steps") and hasattr(history, "eval_loss"):
        history = {
            "step": history.steps,
            "eval_loss": history.eval_loss,
            "icl_score": history.icl,
            "max_induction_score": np.asarray(history.induction)
            .reshape(len(history.steps), -1)
            .max(1),
        }
    table = _columns(history)
    steps = np.asarray(table.pop(x), float) if x in table else None
    names = list(metrics) if metrics is not None else list(table)
    missing = [m for m in names if m not in table]
    if missing or not names:
        raise InputError(f"No metric column(s) {missing or names}; history has {sorted(table)}.")
    panels = []
    for name in names:
        y = np.asarray(table[name], float)
        xs = steps if steps is not None else np.arange(1, len(y) + 1)
        panels.append(
            Lines(
                [Series(name, xs, y)], title=name, x_title=x, y_title=name, log_x=log_x, log_y=log_y
            )
        )
    return Figure(panels, title=title, cols=min(2, len(panels)), panel_size=(5.0, 3.2))


def _columns(history: Any) -> dict[str, list]:
    if isinstance(history, Mapping):
        return {k: list(v) for k, v in history.items()}
    rows = list(history)
    if not rows or not isinstance(rows[0], Mapping):
        raise InputError("history must be a TrainResult, a dict of columns or a list of dicts.")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: [row.get(k, np.nan) for row in rows] for k in keys}


def loss_pca_trajectory(
    projections: Any,
    steps: Sequence[int] | np.ndarray | None = None,
    *,
    explained_variance: Any = None,
    components: Sequence[tuple[int, int]] = ((0, 1),),
    title: str = "Per-token loss PCA trajectory",
) -> Figure:
    """The path of a model through training in the PCA of its per-token losses.

    Args:
        projections: `[n_snapshots, n_components]`: each snapshot's per-token-loss vector
            projected on the principal components, or a `training.dynamics.LossPCA`
            (its `trajectory` and `explained_variance_ratio`).
        steps: the training step of each snapshot (labels the points).
        explained_variance: fraction of variance per component (shown on the axes).
        components: pairs of component indices, one panel each.
    """
    if hasattr(projections, "trajectory"):
        if explained_variance is None:
            explained_variance = getattr(projections, "explained_variance_ratio", None)
        projections = projections.trajectory
    data = to_numpy(projections)
    if data.ndim != 2:
        raise InputError(f"projections must be [n_snapshots, n_components], got {data.shape}.")
    labels = [str(s) for s in steps] if steps is not None else [str(i) for i in range(len(data))]
    variance = to_numpy(explained_variance) if explained_variance is not None else None
    panels = []
    for a, b in components:
        if max(a, b) >= data.shape[1]:
            raise InputError(f"Component {max(a, b)} requested, only {data.shape[1]} given.")

        def axis(i: int) -> str:
            return f"PC{i + 1}" + (f" ({variance[i]:.1%})" if variance is not None else "")

        panels.append(
            Lines(
                [Series("trajectory", data[:, a], data[:, b], text=labels, mode="lines+markers")],
                title=f"PC{a + 1} vs PC{b + 1}",
                x_title=axis(a),
                y_title=axis(b),
            )
        )
    return Figure(panels, title=title, cols=min(2, len(panels)), panel_size=(5.0, 4.0))
