"""TransformerLens's module path `transformer_lens.cache.key_value_cache`
(implementation: `lookingglass.model.kv_cache`)."""

from lookingglass.model.kv_cache import (
    TransformerLensKeyValueCache,
    TransformerLensKeyValueCacheEntry,
)

__all__ = ["TransformerLensKeyValueCache", "TransformerLensKeyValueCacheEntry"]
