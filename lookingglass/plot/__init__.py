"""Plots for interpretability results, interactive (plotly) and static (matplotlib) from
the same call:

    from lookingglass import plot
    fig = plot.attention_patterns(cache["pattern", 0], model.to_str_tokens(text))
    fig.to_html("attention.html")    # self-contained, works offline
    fig.to_image("attention.png")    # or .svg / .pdf

Every function returns a `Figure` (see `figure.py`) whose panels hold the plotted data.
"""

from lookingglass.plot.attention import attention_patterns
from lookingglass.plot.attribution import head_attribution, logit_attribution, patching_heatmap
from lookingglass.plot.figure import Bars, Figure, Heatmap, Lines, Series, TokenText
from lookingglass.plot.heatmap import heatmap
from lookingglass.plot.lens import logit_lens
from lookingglass.plot.results import hypothesis_result, model_profile
from lookingglass.plot.text import loss_per_token
from lookingglass.plot.training import loss_pca_trajectory, training_curves

__all__ = [
    "Bars",
    "Figure",
    "Heatmap",
    "Lines",
    "Series",
    "TokenText",
    "attention_patterns",
    "head_attribution",
    "heatmap",
    "hypothesis_result",
    "logit_attribution",
    "logit_lens",
    "loss_pca_trajectory",
    "loss_per_token",
    "model_profile",
    "patching_heatmap",
    "training_curves",
]
