"""TransformerLens's module path `transformer_lens.components.mlps.gated_mlp`
(implementation: `lookingglass.model.mlp`)."""

from lookingglass.model.mlp import GatedMLP

__all__ = ["GatedMLP"]
