"""TransformerLens's module path `transformer_lens.components.mlps.can_be_used_as_mlp`
(implementation: `lookingglass.model.mlp`)."""

from lookingglass.model.mlp import CanBeUsedAsMLP

__all__ = ["CanBeUsedAsMLP"]
