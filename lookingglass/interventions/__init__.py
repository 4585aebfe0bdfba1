"""Interventions: ablation, and activation, path and attribution patching.

* `ablation`: zero / mean / resample ablation of heads, neurons, layers or any hook, as
  hooks or a context (`ablate`); loss change per token.
* `direct_effects`: every head's direct path to the logits ablated, from one pass.
* `patching`: TransformerLens's activation patching functions, run batched (also
  importable as `lookingglass.patching`).
* `path_patching`: sender heads -> receivers through the direct path (Wang et al. 2022).
* `attribution_patching`: first-order estimates of patching, nodes and head -> head edges.
* `cspa`: copy-suppression-preserving ablation (McDougall et al. 2023): how much of a
  head's effect is copy suppression.
"""

from lookingglass.interventions._variants import DeclaredMetric, declare_metric
from lookingglass.interventions.ablation import (
    Component,
    TokenLossChange,
    ablate,
    ablation_hooks,
    dataset_activations,
    make_components,
    mean_ablation_hook,
    per_token_loss_change,
    resample_ablation_hook,
    top_loss_changes,
    zero_ablation_hook,
)
from lookingglass.interventions.attribution_patching import (
    EdgeAttribution,
    attribution_patch,
    get_attr_patch_head_edges,
)
from lookingglass.interventions.cspa import (
    CSPAResult,
    copy_suppression_preserving_ablation,
    cspa_head_output,
    cspa_variants,
    head_mean_result,
)
from lookingglass.interventions.direct_effects import head_direct_effects
from lookingglass.interventions.path_patching import path_patch, path_patch_sweep

__all__ = [
    "CSPAResult",
    "Component",
    "DeclaredMetric",
    "EdgeAttribution",
    "TokenLossChange",
    "ablate",
    "ablation_hooks",
    "attribution_patch",
    "copy_suppression_preserving_ablation",
    "cspa_head_output",
    "cspa_variants",
    "dataset_activations",
    "declare_metric",
    "get_attr_patch_head_edges",
    "head_direct_effects",
    "head_mean_result",
    "make_components",
    "mean_ablation_hook",
    "path_patch",
    "path_patch_sweep",
    "per_token_loss_change",
    "resample_ablation_hook",
    "top_loss_changes",
    "zero_ablation_hook",
]
