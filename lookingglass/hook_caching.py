"""Caching activations with hooks: TransformerLens's `get_caching_hooks`,
`add_caching_hooks`, `cache_all`, `cache_some` and `run_with_cache`, as a mixin of
`HookedRootModule` (which provides `hooks()`, `hook_dict` and name resolution).

A caching hook stores its activation detached (on `device`, without the batch
dimension, sliced by `pos_slice` when asked) under the hook's name, `<name>_grad` for
gradients.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lookingglass.errors import HookError, InputError
from lookingglass.utils import Slice, SliceInput

if TYPE_CHECKING:
    from lookingglass.hooks import HookFn, HookPoint, NamesFilter


class CachingHooks:
    """Mixin for `HookedRootModule`: the caching half of the hook API."""

    def get_caching_hooks(
        self,
        names_filter: NamesFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, Tensor] | None = None,
        pos_slice: Slice | SliceInput = None,
    ) -> tuple[dict[str, Tensor], list[tuple[str, HookFn]], list[tuple[str, HookFn]]]:
        """Hooks that store activations (detached, on `device`) in `cache`, without adding
        them; returns (cache, fwd_hooks, bwd_hooks). Gradients are stored as `<name>_grad`.

        `pos_slice` keeps those positions, as TransformerLens: along dimension -3 for
        `hook_q/k/v/z/result`, -2 for everything else with at least two dimensions
        (the query position of attention scores and patterns)."""
        cache = {} if cache is None else cache
        names = self._filtered_names(names_filter)
        self.is_caching = True
        save = partial(
            _save_activation,
            cache=cache,
            device=device,
            remove_batch_dim=remove_batch_dim,
            pos_slice=Slice.unwrap(pos_slice),
        )
        fwd = [(n, partial(save, is_backward=False)) for n in names]
        bwd = [(n, partial(save, is_backward=True)) for n in names] if incl_bwd else []
        return cache, fwd, bwd

    def add_caching_hooks(
        self,
        names_filter: NamesFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Attach caching hooks until `reset_hooks()` (does not run the model); returns the
        dict the activations will be stored in."""
        cache, fwd, bwd = self.get_caching_hooks(
            names_filter, incl_bwd, device, remove_batch_dim, cache
        )
        for direction, hook_list in (("fwd", fwd), ("bwd", bwd)):
            for name, fn in hook_list:
                self.hook_dict[name].add_hook(fn, dir=direction)
        return cache

    def cache_all(
        self,
        cache: dict[str, Tensor] | None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
    ) -> None:
        """Deprecated in TransformerLens: `add_caching_hooks` for every hook point."""
        logging.warning(
            "cache_all is deprecated and will eventually be removed, use add_caching_hooks or "
            "run_with_cache"
        )
        self.add_caching_hooks(None, incl_bwd, device, remove_batch_dim, cache)

    def cache_some(
        self,
        cache: dict[str, Tensor] | None,
        names: NamesFilter,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
    ) -> None:
        """Deprecated in TransformerLens: `add_caching_hooks` for the selected hook points."""
        logging.warning(
            "cache_some is deprecated and will eventually be removed, use add_caching_hooks or "
            "run_with_cache"
        )
        self.add_caching_hooks(names, incl_bwd, device, remove_batch_dim, cache)

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NamesFilter = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        pos_slice: Slice | SliceInput = None,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, Any]:
        """Run the model and cache activations (all, or those `names_filter` selects).

        `names_filter` is a hook name, a list of names, or a predicate on names. With
        `incl_bwd=True` the model output must be a scalar (e.g. `return_type="loss"`):
        it is back-propagated and gradients are cached as `<name>_grad`. Returns
        `(output, ActivationCache)`, or `(output, dict)` with `return_cache_object=False`.
        """
        cache, fwd, bwd = self.get_caching_hooks(
            names_filter, incl_bwd, device, remove_batch_dim, pos_slice=pos_slice
        )
        with self.hooks(fwd, bwd, reset_hooks_end, clear_contexts):
            out = self(*model_args, **model_kwargs)
            if incl_bwd:
                if not isinstance(out, Tensor) or out.numel() != 1:
                    raise HookError(
                        "run_with_cache(incl_bwd=True) back-propagates the model output, which "
                        "must be a scalar; pass return_type='loss'."
                    )
                out.backward()
        if not return_cache_object:
            return out, cache
        from lookingglass.cache import ActivationCache

        return out, ActivationCache(cache, self, has_batch_dim=not remove_batch_dim)

    def _filtered_names(self, names_filter: NamesFilter) -> list[str]:
        _check_names_filter(names_filter)
        if names_filter is None:
            return list(self.hook_dict)
        if isinstance(names_filter, str):
            return self.resolve_hook_names(names_filter)
        if callable(names_filter):
            return [n for n in self.hook_dict if names_filter(n)]
        wanted = list(names_filter)
        for n in wanted:
            self.resolve_hook_names(n)  # an unknown name is an error, with close matches
        return [n for n in self.hook_dict if n in set(wanted)]


# The position dimension of activations shaped [batch, pos, head_index, d]; every other
# activation has it (or the query position) second from last.
_HEAD_ACTIVATIONS = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_result")


def _save_activation(
    tensor: Tensor,
    hook: HookPoint,
    *,
    cache: dict[str, Tensor],
    device: str | torch.device | None,
    remove_batch_dim: bool,
    pos_slice: Slice,
    is_backward: bool,
) -> None:
    """The caching hook: store `tensor` detached, as TransformerLens's `save_hook`.

    The batch and position slices are taken before the move to `device`, so only what
    is kept is copied; a slice smaller than its tensor is stored as a copy, so that the
    cache does not hold the whole activation alive (a pattern's last row, for one)."""
    value = tensor.detach()
    if remove_batch_dim:
        value = value[0]
    pos_dim = -3 if hook.name.endswith(_HEAD_ACTIVATIONS) else -2
    if tensor.dim() >= -pos_dim:
        try:
            value = pos_slice.apply(value, dim=pos_dim)
        except IndexError as error:
            raise InputError(
                f"pos_slice {_shown(pos_slice)} selects positions outside {hook.name}, which "
                f"has {value.shape[pos_dim]} positions ({error})."
            ) from error
    moved = value.to(device)
    if moved is value and value._is_view() and value.numel() < tensor.numel():
        moved = value.clone()
    cache[hook.name + ("_grad" if is_backward else "")] = moved


def _check_names_filter(names_filter: Any) -> None:
    """A names filter is None (every hook), a hook name, a predicate, or a list, tuple or
    set of hook names."""
    if names_filter is None or isinstance(names_filter, str) or callable(names_filter):
        return
    if isinstance(names_filter, list | tuple | set | frozenset) and all(
        isinstance(name, str) for name in names_filter
    ):
        return
    shown = f"{names_filter!r}"[:80]
    raise InputError(
        "names_filter must be None (every hook), a hook name, a list of hook names, or a "
        f"function name -> bool; got {shown} ({type(names_filter).__name__})."
    )


def _shown(pos_slice: Slice) -> str:
    value = pos_slice.slice
    return repr(value.tolist() if hasattr(value, "tolist") else value)
