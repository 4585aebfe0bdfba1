"""Key/value cache for generation: each layer keeps the keys and values it has seen.

TransformerLens 3.9's classes, names and behaviour: `TransformerLensKeyValueCache.
init_cache(cfg, device, batch_size)` starts with empty `[batch, 0, n_kv_heads, d_head]`
tensors; a forward pass with `past_kv_cache=` appends every layer's new keys/values and
the attention mask of the new positions (`append_attention_mask`). A frozen cache
(`freeze()`) returns the extended keys/values/mask but stores nothing, so many inputs
can share one cached prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.config import ModelConfig


@dataclass
class TransformerLensKeyValueCacheEntry:
    """One layer's keys and values so far, `[batch, pos_so_far, n_kv_heads, d_head]`."""

    past_keys: Float[Tensor, "batch pos_so_far n_kv_heads d_head"]
    past_values: Float[Tensor, "batch pos_so_far n_kv_heads d_head"]
    frozen: bool = False

    @classmethod
    def init_cache_entry(
        cls, cfg: ModelConfig, device: torch.device | str | None, batch_size: int = 1
    ) -> TransformerLensKeyValueCacheEntry:
        """An empty entry in the model's dtype."""
        shape = (batch_size, 0, cfg.n_kv_heads, cfg.d_head)
        return cls(
            past_keys=torch.empty(shape, device=device, dtype=cfg.dtype),
            past_values=torch.empty(shape, device=device, dtype=cfg.dtype),
        )

    def append(
        self,
        new_keys: Float[Tensor, "batch new_tokens n_kv_heads d_head"],
        new_values: Float[Tensor, "batch new_tokens n_kv_heads d_head"],
    ) -> tuple[Tensor, Tensor]:
        """All keys/values up to now; stored unless the entry is frozen."""
        if self.past_keys.shape[1] == 0:  # an empty cache takes any batch size
            updated_keys, updated_values = new_keys, new_values
        else:
            updated_keys = torch.cat([self.past_keys.to(new_keys), new_keys], dim=1)
            updated_values = torch.cat([self.past_values.to(new_values), new_values], dim=1)
        if not self.frozen:
            self.past_keys, self.past_values = updated_keys, updated_values
        return updated_keys, updated_values


@dataclass
class TransformerLensKeyValueCache:
    """The per-layer entries plus the attention mask of every position seen so far."""

    entries: list[TransformerLensKeyValueCacheEntry]
    previous_attention_mask: Int[Tensor, "batch pos_so_far"]
    frozen: bool = False

    @classmethod
    def init_cache(
        cls, cfg: ModelConfig, device: torch.device | str | None = None, batch_size: int = 1
    ) -> TransformerLensKeyValueCache:
        """An empty cache for a model with this config (on `device`, else `cfg.device`)."""
        device = device if device is not None else (cfg.device or "cpu")
        return cls(
            entries=[
                TransformerLensKeyValueCacheEntry.init_cache_entry(cfg, device, batch_size)
                for _ in range(cfg.n_layers)
            ],
            previous_attention_mask=torch.empty((batch_size, 0), device=device, dtype=torch.int),
        )

    def freeze(self) -> None:
        """Stop storing: later passes read the cache but do not extend it."""
        self.frozen = True
        for entry in self.entries:
            entry.frozen = True

    def unfreeze(self) -> None:
        """Store again."""
        self.frozen = False
        for entry in self.entries:
            entry.frozen = False

    def append_attention_mask(
        self, attention_mask: Int[Tensor, "batch new_tokens"]
    ) -> Int[Tensor, "batch pos_so_far_plus_new_tokens"]:
        """The mask over all positions (cached then new); stored unless frozen."""
        attention_mask = attention_mask.to(self.previous_attention_mask.device)
        if self.previous_attention_mask.shape[-1] == 0:  # any batch size, as the entries
            updated = attention_mask
        else:
            updated = torch.cat([self.previous_attention_mask, attention_mask], dim=-1)
        if not self.frozen:
            self.previous_attention_mask = updated
        return updated

    extend_attention_mask = append_attention_mask  # our earlier name

    def __getitem__(self, idx: int) -> TransformerLensKeyValueCacheEntry:
        return self.entries[idx]

    def __len__(self) -> int:
        """How many positions the cache holds (not a TransformerLens method)."""
        return max((entry.past_keys.shape[1] for entry in self.entries), default=0)


# Our earlier names, kept working.
KeyValueCache = TransformerLensKeyValueCache
KeyValueCacheEntry = TransformerLensKeyValueCacheEntry
HookedTransformerKeyValueCache = TransformerLensKeyValueCache
HookedTransformerKeyValueCacheEntry = TransformerLensKeyValueCacheEntry
