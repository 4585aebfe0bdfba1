"""`ActivationCache`: the activations of one forward pass, by hook name.

Dict-like with TransformerLens's shorthand: `cache["pattern", 3]` is
`cache["blocks.3.attn.hook_pattern"]`, negative layers count from the end.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from lookingglass import utils
from lookingglass.cache_analysis import CacheAnalysis
from lookingglass.errors import InputError
from lookingglass.utils import Slice, SliceInput


class ActivationCache(CacheAnalysis):
    """Cached activations of a model run (from `run_with_cache`); the analysis methods
    (`decompose_resid`, `accumulated_resid`, `logit_attrs`, ...) are in `cache_analysis.py`."""

    def __init__(
        self, cache_dict: dict[str, Tensor], model: Any, has_batch_dim: bool = True
    ) -> None:
        self.cache_dict = cache_dict
        self.model = model
        self.has_batch_dim = has_batch_dim
        self.has_embed = "hook_embed" in cache_dict
        self.has_pos_embed = "hook_pos_embed" in cache_dict

    def _key(self, key: str | tuple) -> str:
        if isinstance(key, str):
            return key if key in self.cache_dict else utils.get_act_name(key)
        if isinstance(key, tuple) and key:
            name, *rest = key
            if name in self.cache_dict and not rest:
                return name
            layer = rest[0] if rest else None
            if isinstance(layer, int) and layer < 0:
                layer += self.model.cfg.n_layers
            return utils.get_act_name(name, layer, rest[1] if len(rest) > 1 else None)
        raise InputError(f"Cache keys are hook names or (name, layer[, type]) tuples, got {key!r}.")

    def __getitem__(self, key: str | tuple) -> Tensor:
        name = self._key(key)
        if name not in self.cache_dict:
            raise KeyError(
                f"'{name}' is not in the cache ({len(self.cache_dict)} activations cached). Was it "
                "excluded by names_filter, or is it a hook point this model does not have?"
            )
        return self.cache_dict[name]

    def __contains__(self, key: str | tuple) -> bool:
        return self._key(key) in self.cache_dict

    def __len__(self) -> int:
        return len(self.cache_dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def keys(self):
        """Hook names, in the order they were cached (forward order)."""
        return self.cache_dict.keys()

    def values(self):
        """Cached tensors."""
        return self.cache_dict.values()

    def items(self):
        """(hook name, tensor) pairs."""
        return self.cache_dict.items()

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.cache_dict)}"

    def to(self, device: str | torch.device, move_model: bool = False) -> ActivationCache:
        """Move every cached tensor (and optionally the model) to `device`; returns self."""
        self.cache_dict = {k: v.to(device) for k, v in self.cache_dict.items()}
        if move_model:
            self.model.to(device)
        return self

    def _batch_size(self) -> int:
        """The most common leading dimension of the cached tensors."""
        counts = Counter(v.shape[0] for v in self.cache_dict.values() if v.dim() > 0)
        return counts.most_common(1)[0][0] if counts else 1

    def remove_batch_dim(self) -> ActivationCache:
        """Drop the batch dimension of a batch-size-1 cache; returns self."""
        if not self.has_batch_dim:
            logging.warning("Tried removing batch dimension after already having removed it.")
            return self
        batch_size = self._batch_size()
        if batch_size != 1:
            raise InputError(
                f"Cannot remove batch dimension from cache with batch size {batch_size}."
            )
        self.cache_dict = {
            k: v[0] if v.dim() > 0 and v.shape[0] == 1 else v for k, v in self.cache_dict.items()
        }
        self.has_batch_dim = False
        return self

    def apply_slice_to_batch_dim(self, batch_slice: Slice | SliceInput) -> ActivationCache:
        """A new cache holding only the selected batch rows, as TransformerLens: an int
        selects one row and drops the batch dimension, a tuple is `slice(*tuple)`, a list
        or tensor selects those rows."""
        batch_slice = batch_slice if isinstance(batch_slice, Slice) else Slice(batch_slice)
        if not self.has_batch_dim and batch_slice.mode != "identity":
            raise InputError("Cannot index into a cache without a batch dim.")
        batch_size = self._batch_size()
        return ActivationCache(
            {
                k: batch_slice.apply(v, dim=0) if v.dim() > 0 and v.shape[0] == batch_size else v
                for k, v in self.cache_dict.items()
            },
            self.model,
            has_batch_dim=self.has_batch_dim and batch_slice.mode != "int",
        )

    def toggle_autodiff(self, mode: bool = False) -> None:
        """Switch autograd on or off globally (`torch.set_grad_enabled(mode)`), as
        TransformerLens's; `torch.inference_mode()` does the same without global state."""
        logging.warning("Changed the global state, set autodiff to %s", mode)
        torch.set_grad_enabled(mode)
