"""TransformerLens's `transformer_lens.utilities.cache`."""

from __future__ import annotations

from lookingglass.model.kv_cache import TransformerLensKeyValueCache


def get_pos_offset(past_kv_cache: TransformerLensKeyValueCache | None, batch_size: int) -> int:
    """How many positions `past_kv_cache` holds (0 without a cache); `batch_size` is
    unused, as in TransformerLens."""
    if past_kv_cache is None:
        return 0
    return past_kv_cache.entries[0].past_keys.shape[1]
