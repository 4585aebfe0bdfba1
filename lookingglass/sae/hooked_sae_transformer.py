"""`HookedSAETransformer`: SAELens's class name, a `HookedTransformer` with the SAE
methods of `lookingglass.sae.splice`, so SAELens users' code carries over."""

from __future__ import annotations

from typing import Any

from lookingglass.model.transformer import HookedTransformer
from lookingglass.sae import splice


class HookedSAETransformer(HookedTransformer):
    """A `HookedTransformer` with `add_sae`, `reset_saes`, `saes()`, `run_with_saes`,
    `run_with_cache_with_saes`, `run_with_hooks_with_saes` and `acts_to_saes`."""

    @classmethod
    def from_pretrained(cls, model_name, **kwargs: Any) -> HookedSAETransformer:
        model = HookedTransformer.from_pretrained(model_name, **kwargs)
        model.__class__ = cls
        return model

    @classmethod
    def from_pretrained_no_processing(cls, model_name, **kwargs: Any) -> HookedSAETransformer:
        model = HookedTransformer.from_pretrained_no_processing(model_name, **kwargs)
        model.__class__ = cls
        return model

    @property
    def acts_to_saes(self):
        return splice.attached_saes(self)

    add_sae = splice.add_sae
    reset_saes = splice.reset_saes
    saes = splice.saes
    run_with_saes = splice.run_with_saes
    run_with_cache_with_saes = splice.run_with_cache_with_saes
    run_with_hooks_with_saes = splice.run_with_hooks_with_saes
