"""Key/value cache for generation: each layer keeps the keys and values it has seen."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.config import ModelConfig


@dataclass
class KeyValueCacheEntry:
    """One layer's keys and values so far, `[batch, pos_so_far, head_index, d_head]`."""

    past_keys: Tensor | None = None
    past_values: Tensor | None = None

    def append(
        self, k: Float[Tensor, "batch pos head_index d_head"], v: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Store the new keys/values and return all keys/values up to now."""
        if self.past_keys is not None:
            k = torch.cat([self.past_keys, k], dim=1)
            v = torch.cat([self.past_values, v], dim=1)
        self.past_keys, self.past_values = k, v
        return k, v


@dataclass
class KeyValueCache:
    """The per-layer entries plus the attention mask of every position seen so far."""

    entries: list[KeyValueCacheEntry]
    previous_attention_mask: Int[Tensor, "batch pos_so_far"] | None = None
    _length: int = field(default=0)

    @classmethod
    def init_cache(
        cls, cfg: ModelConfig, device: torch.device | str | None = None, batch_size: int = 1
    ) -> KeyValueCache:
        """An empty cache for a model with this config (TransformerLens's constructor name)."""
        return cls([KeyValueCacheEntry() for _ in range(cfg.n_layers)])

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, layer: int) -> KeyValueCacheEntry:
        return self.entries[layer]

    def extend_attention_mask(self, new_mask: Int[Tensor, "batch pos"]) -> Tensor:
        """Record the new positions' mask; returns the mask over all positions so far."""
        if self.previous_attention_mask is not None:
            new_mask = torch.cat([self.previous_attention_mask, new_mask], dim=1)
        self.previous_attention_mask = new_mask
        self._length = new_mask.shape[1]
        return new_mask


HookedTransformerKeyValueCache = KeyValueCache
