"""TransformerLens's module path `transformer_lens.FactoredMatrix`, re-exporting
`lookingglass.factored_matrix.FactoredMatrix`."""

from lookingglass.factored_matrix import FactoredMatrix

__all__ = ["FactoredMatrix"]
