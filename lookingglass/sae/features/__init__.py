"""Feature views of an SAE: top activating contexts and interval (quantile) groups,
activation histograms, top/bottom logits, as `lookingglass.plot` figures, and export in
Neuronpedia's batch JSON format.

    acts = FeatureActivations.from_model(model, sae, rows)     # or .from_harvest(folder, sae)
    feature_contexts(model, acts, 17).to_html("f17.html")
    export_neuronpedia(model, sae, acts, range(100), "batch-0.json")
"""

from lookingglass.sae.features.collect import Context, FeatureActivations, feature_logits
from lookingglass.sae.features.neuronpedia import export_neuronpedia, feature_dashboard
from lookingglass.sae.features.plots import feature_contexts, feature_histogram, feature_logit_bars

__all__ = [
    "Context",
    "FeatureActivations",
    "export_neuronpedia",
    "feature_contexts",
    "feature_dashboard",
    "feature_histogram",
    "feature_logit_bars",
    "feature_logits",
]
