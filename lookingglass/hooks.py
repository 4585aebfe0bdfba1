"""Hook points and the root module that manages them.

A `HookPoint` is an identity module placed on every named activation. Hooks are plain
functions `fn(tensor, hook=hook_point)` that may return a replacement tensor or None.

Why not PyTorch's own module hooks: a hook point that nobody hooks must cost nothing, so
`HookPoint.__call__` returns its input after one list check, and only a hooked point pays
for running functions. Every hook added by a context or a `run_with_*` call is removed
when it exits, also when the forward pass or a hook raises.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lookingglass.errors import HookError

HookFn = Callable[..., Tensor | None]
NameFilter = str | Sequence[str] | Callable[[str], bool] | None
Direction = Literal["fwd", "bwd", "both"]


@dataclass(eq=False)
class HookHandle:
    """One hook function attached to one hook point; `remove()` detaches it."""

    hook_point: HookPoint
    fn: HookFn
    direction: Literal["fwd", "bwd"]
    is_permanent: bool = False
    level: int | None = None

    def remove(self) -> None:
        """Detach the hook; removing twice is harmless."""
        hooks = self.hook_point._fwd if self.direction == "fwd" else self.hook_point._bwd
        if self in hooks:
            hooks.remove(self)

    @property
    def active(self) -> bool:
        """True while the hook is attached."""
        hooks = self.hook_point._fwd if self.direction == "fwd" else self.hook_point._bwd
        return self in hooks


class HookPoint(nn.Module):
    """An identity on a named activation, where hook functions can read or replace it."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self.ctx: dict[Any, Any] = {}
        self._fwd: list[HookHandle] = []
        self._bwd: list[HookHandle] = []

    def has_hooks(self) -> bool:
        """True if any forward or backward hook is attached (used by fast paths)."""
        return bool(self._fwd or self._bwd)

    def add_hook(
        self,
        hook: HookFn,
        dir: Literal["fwd", "bwd"] = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> HookHandle:
        """Attach `hook(tensor, hook=self)`; `dir="bwd"` hooks see the output's gradient."""
        if dir not in ("fwd", "bwd"):
            raise HookError(f"dir must be 'fwd' or 'bwd', got {dir!r}.")
        handle = HookHandle(self, hook, dir, is_permanent, level)
        hooks = self._fwd if dir == "fwd" else self._bwd
        hooks.insert(0, handle) if prepend else hooks.append(handle)
        return handle

    def remove_hooks(
        self, dir: Direction = "fwd", including_permanent: bool = False, level: int | None = None
    ) -> None:
        """Detach hooks in the given direction (permanent ones only if asked)."""
        for hooks, d in ((self._fwd, "fwd"), (self._bwd, "bwd")):
            if dir not in (d, "both"):
                continue
            hooks[:] = [
                h
                for h in hooks
                if (h.is_permanent and not including_permanent)
                or (level is not None and h.level != level)
            ]

    def clear_context(self) -> None:
        """Empty the `ctx` dict that hooks may use to stash values between calls."""
        self.ctx.clear()

    def forward(self, x: Tensor) -> Tensor:
        return self(x)

    def __call__(self, x: Tensor) -> Tensor:
        if not self._fwd and not self._bwd:
            return x
        for handle in list(self._fwd):
            out = handle.fn(x, hook=self)
            if out is not None:
                x = self._checked(out, x, handle.fn, "returned")
        if self._bwd and x.requires_grad:
            for handle in list(self._bwd):
                x.register_hook(self._grad_hook(handle))
        return x

    def _grad_hook(self, handle: HookHandle) -> Callable[[Tensor], Tensor | None]:
        def run(grad: Tensor) -> Tensor | None:
            # A backward pass after the context closed must not run a removed hook.
            if not handle.active:
                return None
            out = handle.fn(grad, hook=self)
            return None if out is None else self._checked(out, grad, handle.fn, "returned")

        return run

    def _checked(self, out: Any, x: Tensor, fn: HookFn, verb: str) -> Tensor:
        fn_name = getattr(fn, "__name__", repr(fn))
        if not isinstance(out, Tensor):
            raise HookError(
                f"Hook {fn_name} on '{self.name}' {verb} {type(out).__name__}; a hook must "
                f"return None or a tensor of shape {tuple(x.shape)}."
            )
        if out.shape != x.shape:
            raise HookError(
                f"Hook {fn_name} on '{self.name}' {verb} a tensor of shape "
                f"{tuple(out.shape)}, but '{self.name}' has shape {tuple(x.shape)}. Return "
                "None or a tensor of the same shape."
            )
        if out.dtype != x.dtype:
            raise HookError(
                f"Hook {fn_name} on '{self.name}' {verb} dtype {out.dtype}, but "
                f"'{self.name}' is {x.dtype}. Cast the result with .to({x.dtype})."
            )
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, fwd={len(self._fwd)}, bwd={len(self._bwd)}"


class HookedRootModule(nn.Module):
    """A module whose `HookPoint`s are addressed by name, with TransformerLens's hook API.

    Subclasses call `self.setup()` at the end of `__init__` (and after changing which hook
    points exist) to name the hook points and fill `hook_dict` / `mod_dict`.
    """

    hook_dict: dict[str, HookPoint]
    mod_dict: dict[str, nn.Module]

    def setup(self) -> None:
        """Name every hook point after its module path and index modules by name."""
        self.mod_dict = {}
        self.hook_dict = {}
        for name, module in self.named_modules():
            if name == "":
                continue
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module
            self.mod_dict[name] = module

    def hook_points(self) -> list[HookPoint]:
        """All hook points, in forward order of construction."""
        return list(self.hook_dict.values())

    # ----------------------------------------------------------------- adding hooks
    def resolve_hook_names(self, name: str | Callable[[str], bool]) -> list[str]:
        """Hook names matching `name` (an exact name or a predicate on names)."""
        if callable(name):
            return [n for n in self.hook_dict if name(n)]
        if name in self.hook_dict:
            return [name]
        close = difflib.get_close_matches(name, list(self.hook_dict), n=5, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise HookError(
            f"Unknown hook name '{name}'.{hint} Hook names look like "
            "'blocks.0.attn.hook_pattern'; `model.hook_dict.keys()` lists them all. Some "
            "hook points exist only when switched on (use_attn_result, use_split_qkv_input, "
            "use_hook_mlp_in, use_attn_in)."
        )

    def add_hook(
        self,
        name: str | Callable[[str], bool],
        hook: HookFn,
        dir: Literal["fwd", "bwd"] = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> list[HookHandle]:
        """Attach `hook` to the named hook point (or every point the predicate accepts)."""
        return [
            self.hook_dict[n].add_hook(hook, dir, is_permanent, level, prepend)
            for n in self.resolve_hook_names(name)
        ]

    def add_perma_hook(
        self, name: str | Callable[[str], bool], hook: HookFn, dir: Literal["fwd", "bwd"] = "fwd"
    ) -> list[HookHandle]:
        """Attach a hook that `reset_hooks()` keeps (unless `including_permanent=True`)."""
        return self.add_hook(name, hook, dir=dir, is_permanent=True)

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: Direction = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove hooks from every hook point (permanent ones only if asked)."""
        for hp in self.hook_dict.values():
            hp.remove_hooks(direction, including_permanent=including_permanent, level=level)
            if clear_contexts:
                hp.clear_context()

    remove_all_hook_fns = reset_hooks

    def num_hooks(self) -> int:
        """How many hook functions are attached in total (0 after every clean exit)."""
        return sum(len(hp._fwd) + len(hp._bwd) for hp in self.hook_dict.values())

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = (),
        bwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[HookedRootModule]:
        """Attach hooks for the duration of a `with` block; they are removed on exit,
        also when the block raises. Backward hooks must be used (`.backward()`) inside."""
        handles: list[HookHandle] = []
        try:
            for name, fn in fwd_hooks:
                handles += self.add_hook(name, fn, dir="fwd")
            for name, fn in bwd_hooks:
                handles += self.add_hook(name, fn, dir="bwd")
            yield self
        finally:
            if reset_hooks_end:
                for handle in handles:
                    handle.remove()
                if clear_contexts:
                    for hp in self.hook_dict.values():
                        hp.clear_context()

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = (),
        bwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs: Any,
    ) -> Any:
        """Run the model with temporary hooks. Returns what `forward` returns."""
        bwd_hooks = list(bwd_hooks)
        if bwd_hooks and reset_hooks_end:
            warnings.warn(
                "Backward hooks are removed when run_with_hooks returns, before you can call "
                "backward(); use `with model.hooks(bwd_hooks=...)` and call backward inside.",
                stacklevel=2,
            )
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
            return self(*model_args, **model_kwargs)

    # -------------------------------------------------------------------- caching
    def get_caching_hooks(
        self,
        names_filter: NameFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, Tensor] | None = None,
        pos_slice: slice | int | None = None,
    ) -> tuple[dict[str, Tensor], list[tuple[str, HookFn]], list[tuple[str, HookFn]]]:
        """Hooks that store activations (detached) in `cache`; returns (cache, fwd, bwd)."""
        cache = {} if cache is None else cache
        names = self._filtered_names(names_filter)
        index = _pos_index(pos_slice)

        def store(key_suffix: str) -> HookFn:
            def save(tensor: Tensor, hook: HookPoint) -> None:
                value = tensor.detach()
                if index is not None and value.dim() > 1:
                    value = _slice_positions(value, hook.name or "", index)
                if remove_batch_dim:
                    value = value[0]
                cache[f"{hook.name}{key_suffix}"] = value if device is None else value.to(device)

            save.__name__ = "save_activation" + key_suffix
            return save

        fwd = [(n, store("")) for n in names]
        bwd = [(n, store("_grad")) for n in names] if incl_bwd else []
        return cache, fwd, bwd

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NameFilter = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        pos_slice: slice | int | None = None,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, Any]:
        """Run the model and cache activations (all, or those `names_filter` selects).

        `names_filter` is a hook name, a list of names, or a predicate on names. With
        `incl_bwd=True` the model output must be a scalar (e.g. `return_type="loss"`):
        it is back-propagated and gradients are cached as `<name>_grad`.
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

    def _filtered_names(self, names_filter: NameFilter) -> list[str]:
        if names_filter is None:
            return list(self.hook_dict)
        if isinstance(names_filter, str):
            return self.resolve_hook_names(names_filter)
        if callable(names_filter):
            return [n for n in self.hook_dict if names_filter(n)]
        names = list(names_filter)
        for n in names:
            self.resolve_hook_names(n)
        return names


def _pos_index(pos_slice: slice | int | None) -> slice | None:
    if pos_slice is None or isinstance(pos_slice, slice):
        return pos_slice
    return slice(pos_slice, pos_slice + 1 if pos_slice != -1 else None)


def _slice_positions(value: Tensor, name: str, index: slice) -> Tensor:
    # Attention scores and patterns are [batch, head, query_pos, key_pos]: slice the
    # query positions; every other activation has positions in dimension 1.
    if name.endswith(("hook_attn_scores", "hook_pattern")):
        return value[..., index, :]
    return value[:, index]
