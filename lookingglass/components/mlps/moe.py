"""TransformerLens's module path `transformer_lens.components.mlps.moe`
(implementation: `lookingglass.model.moe`)."""

from lookingglass.model.moe import MixtureOfExperts

MoE = MixtureOfExperts

__all__ = ["MoE"]
