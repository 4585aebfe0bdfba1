"""TransformerLens's module path `transformer_lens.components.mlps.mlp`
(implementation: `lookingglass.model.mlp`)."""

from lookingglass.model.mlp import MLP

__all__ = ["MLP"]
