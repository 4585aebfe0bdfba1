"""The transformer itself: one readable implementation, small components, every
activation passing a named hook point."""

from lookingglass.model.kv_cache import (
    HookedTransformerKeyValueCache,
    KeyValueCache,
    TransformerLensKeyValueCache,
    TransformerLensKeyValueCacheEntry,
)
from lookingglass.model.transformer import HookedTransformer, Output

__all__ = [
    "HookedTransformer",
    "HookedTransformerKeyValueCache",
    "KeyValueCache",
    "Output",
    "TransformerLensKeyValueCache",
    "TransformerLensKeyValueCacheEntry",
]
