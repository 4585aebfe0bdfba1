"""Export feature dashboards in Neuronpedia's batch JSON format.

The layout is SAEDashboard's `NeuronpediaDashboardBatch.to_dict()` (the files Neuronpedia
imports): `{"model_id", "layer", "sae_set", "features": [...], "settings":
{"n_batches_to_sample_from", "n_prompt_to_select"}}`, each feature with `feature_index`,
`neg_str`/`neg_values` and `pos_str`/`pos_values` (the bottom/top logits of
W_dec[f] @ W_U), `frac_nonzero`, `freq_hist_data_bar_values`/`_bar_heights` (the
activation histogram), `logits_hist_data_bar_values`/`_bar_heights` (the histogram of
W_dec[f] @ W_U), `num_tokens_for_dashboard` and `activations`: one entry per context
with `bin_min`, `bin_max`, `bin_contains`, `tokens` (strings) and `values` (top contexts:
bin_min -1, bin_max the maximum activation, bin_contains -1, as SAEDashboard's
"TOP ACTIVATIONS" group; interval groups: their bounds and fraction). The correlation and
neuron-alignment lists, which need extra passes, are written empty. Values are rounded to
3 decimals as SAEDashboard rounds them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookingglass.sae.features.collect import Context, FeatureActivations, feature_logits
from lookingglass.utils.files import write_atomic

_EMPTY = (
    "neuron_alignment_indices",
    "neuron_alignment_values",
    "neuron_alignment_l1",
    "correlated_neurons_indices",
    "correlated_neurons_l1",
    "correlated_neurons_pearson",
    "correlated_features_indices",
    "correlated_features_l1",
    "correlated_features_pearson",
)


def _r(values: Any) -> list[float]:
    return [round(float(v), 3) for v in values]


def _activation(model: Any, c: Context, lo: float, hi: float, contains: float) -> dict:
    return {
        "bin_min": lo,
        "bin_max": hi,
        "bin_contains": contains,
        "tokens": [model.to_single_str_token(i) for i in c.token_ids],
        "values": _r(c.values),
    }


def feature_dashboard(
    model: Any, sae: Any, acts: FeatureActivations, f: int, n_top: int = 20
) -> dict:
    """One feature's Neuronpedia dict."""
    pos, neg = feature_logits(model, sae, f, 10)
    with torch.no_grad():
        logit_effect = (sae.W_dec[f].to(model.W_U.dtype) @ model.W_U).float().cpu().numpy()
    l_heights, l_edges = np.histogram(logit_effect, bins=40)
    centres, heights = acts.histogram(f, 40)
    top = round(acts.max_activation(f), 3)
    activations = [_activation(model, c, -1, top, -1) for c in acts.top_contexts(f, n_top)]
    for lo, hi, frac, contexts in acts.quantile_contexts(f):
        activations += [_activation(model, c, round(lo, 3), round(hi, 3), frac) for c in contexts]
    return {
        "feature_index": int(f),
        **{key: [] for key in _EMPTY},
        "neg_str": [t for t, _ in neg],
        "neg_values": _r(v for _, v in neg),
        "pos_str": [t for t, _ in pos],
        "pos_values": _r(v for _, v in pos),
        "frac_nonzero": float(acts.density()[f]),
        "freq_hist_data_bar_values": _r(centres),
        "freq_hist_data_bar_heights": _r(heights),
        "logits_hist_data_bar_heights": _r(l_heights),
        "logits_hist_data_bar_values": _r((l_edges[:-1] + l_edges[1:]) / 2),
        "num_tokens_for_dashboard": int(acts.rows.shape[1]),
        "activations": activations,
    }


def export_neuronpedia(
    model: Any,
    sae: Any,
    acts: FeatureActivations,
    features: Sequence[int],
    path: str | Path,
    model_id: str | None = None,
    sae_set: str = "lookingglass",
    n_top: int = 20,
) -> dict:
    """Write the features' dashboards as one Neuronpedia batch file; returns the dict."""
    match = re.match(r"blocks\.(\d+)\.", sae.cfg.hook_name or "")
    batch = {
        "model_id": model_id or sae.cfg.model_name or "",
        "layer": int(match.group(1)) if match else 0,
        "sae_set": sae_set,
        "features": [feature_dashboard(model, sae, acts, int(f), n_top) for f in features],
        "settings": {
            "n_batches_to_sample_from": int(acts.rows.shape[0]),
            "n_prompt_to_select": n_top,
        },
    }
    write_atomic(Path(path), json.dumps(batch))
    return batch
