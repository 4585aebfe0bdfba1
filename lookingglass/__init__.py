"""lookingglass: mechanistic interpretability of transformer language models.

The public surface keeps TransformerLens's names, so tutorials carry over:

    from lookingglass import HookedTransformer
    model = HookedTransformer.from_pretrained("gpt2")
    logits, cache = model.run_with_cache("When Mary and John went to the store, John gave")
    cache["pattern", 5]
"""

from lookingglass import utils
from lookingglass.auto import HookedAutoModel
from lookingglass.cache import ActivationCache
from lookingglass.config import HookedTransformerConfig, ModelConfig
from lookingglass.errors import (
    CheckpointError,
    ConfigError,
    HookError,
    InputError,
    LookingGlassError,
    UnsupportedArchitectureError,
)
from lookingglass.factored_matrix import FactoredMatrix
from lookingglass.hooks import HookedRootModule, HookPoint
from lookingglass.loading.registry import list_models
from lookingglass.model import HookedTransformer, HookedTransformerKeyValueCache, KeyValueCache

__version__ = "0.1.0"

__all__ = [
    "ActivationCache",
    "CheckpointError",
    "ConfigError",
    "FactoredMatrix",
    "HookError",
    "HookPoint",
    "HookedRootModule",
    "HookedAutoModel",
    "HookedTransformer",
    "HookedTransformerConfig",
    "HookedTransformerKeyValueCache",
    "InputError",
    "KeyValueCache",
    "LookingGlassError",
    "ModelConfig",
    "UnsupportedArchitectureError",
    "list_models",
    "utils",
]
