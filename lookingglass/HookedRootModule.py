"""TransformerLens's module path `transformer_lens.HookedRootModule`, re-exporting
`lookingglass.hooks.HookedRootModule`."""

from lookingglass.hooks import HookedRootModule

__all__ = ["HookedRootModule"]
