"""TransformerLens's module path `transformer_lens.HookedTransformer`, re-exporting
`lookingglass.model.HookedTransformer`."""

from lookingglass.model import HookedTransformer

__all__ = ["HookedTransformer"]
