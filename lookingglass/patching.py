"""TransformerLens's module path `transformer_lens.patching`, re-exporting
`lookingglass.interventions.patching` (the same functions, run batched)."""

from lookingglass.interventions.patching import *  # noqa: F403
from lookingglass.interventions.patching import __all__  # noqa: F401
