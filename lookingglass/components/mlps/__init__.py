"""TransformerLens's module path `transformer_lens.components.mlps`: the MLP-like
sublayers (implementation: `lookingglass.model.mlp`, `lookingglass.model.moe`)."""

from lookingglass.model.mlp import MLP, CanBeUsedAsMLP, GatedMLP
from lookingglass.model.moe import MixtureOfExperts

MoE = MixtureOfExperts

__all__ = ["MLP", "CanBeUsedAsMLP", "GatedMLP", "MoE"]
