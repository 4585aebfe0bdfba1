"""TransformerLens's module path `transformer_lens.cache.key_value_cache_entry`
(implementation: `lookingglass.model.kv_cache`)."""

from lookingglass.model.kv_cache import TransformerLensKeyValueCacheEntry

__all__ = ["TransformerLensKeyValueCacheEntry"]
