"""Hook points and the root module that manages them, with TransformerLens's API.

A `HookPoint` is an identity module placed on every named activation. Hooks are plain
functions `fn(tensor, hook=hook_point)` that may return a replacement tensor or None.
Each attached hook is a `LensHandle` in the point's `fwd_hooks` / `bwd_hooks` list,
as in TransformerLens 3.9 (`is_permanent`, `context_level`, `user_hook`, `hook.remove()`).

Why not PyTorch's own module hooks: a hook point that nobody hooks must cost nothing, so
`HookPoint.__call__` returns its input after one list check, and only a hooked point pays
for running functions (PyTorch hooks registered on a hook point still run). Every hook
added by a context or a `run_with_*` call is removed when it exits, also when the forward
pass or a hook raises.
"""

from __future__ import annotations

import difflib
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from lookingglass.errors import HookError
from lookingglass.hook_caching import CachingHooks

HookFn = Callable[..., Tensor | None]
NamesFilter = str | Sequence[str] | Callable[[str], bool] | None
NameFilter = NamesFilter
Direction = Literal["fwd", "bwd", "both"]
HookList = Iterable[tuple[str | Callable[[str], bool], HookFn]]


_handle_ids = itertools.count()


@dataclass(eq=False)
class _Detacher:
    """What `LensHandle.hook` is: `remove()` detaches the hook (TransformerLens keeps a
    PyTorch `RemovableHandle` there; this has the same `remove`)."""

    hook_point: HookPoint
    direction: Literal["fwd", "bwd"]
    handle: LensHandle | None = None
    id: int = field(default_factory=lambda: next(_handle_ids))

    def _list(self) -> list[LensHandle]:
        return self.hook_point.fwd_hooks if self.direction == "fwd" else self.hook_point.bwd_hooks

    def remove(self) -> None:
        """Detach the hook; removing twice is harmless."""
        hooks = self._list()
        if any(h is self.handle for h in hooks):
            hooks[:] = [h for h in hooks if h is not self.handle]


@dataclass(eq=False)
class LensHandle:
    """One hook function attached to one hook point (TransformerLens's `LensHandle`)."""

    hook: _Detacher
    is_permanent: bool = False
    context_level: int | None = None
    user_hook: HookFn | None = None

    def remove(self) -> None:
        """Detach the hook; removing twice is harmless."""
        self.hook.remove()

    @property
    def active(self) -> bool:
        """True while the hook is attached."""
        return any(h is self for h in self.hook._list())

    @property
    def hook_point(self) -> HookPoint:
        return self.hook.hook_point

    @property
    def direction(self) -> Literal["fwd", "bwd"]:
        return self.hook.direction

    @property
    def fn(self) -> HookFn | None:
        """The hook function (`user_hook`)."""
        return self.user_hook

    @property
    def level(self) -> int | None:
        """The `context_level` of the `hooks()` context that added it (None outside)."""
        return self.context_level


HookHandle = LensHandle


class HookPoint(nn.Module):
    """An identity on a named activation, where hook functions can read or replace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fwd_hooks: list[LensHandle] = []
        self.bwd_hooks: list[LensHandle] = []
        self.ctx: dict[Any, Any] = {}
        # The hook's name from the root module's point of view, set by `setup()`.
        self.name: str | None = None
        # TransformerLens's `enable_reshape`: hooks see `convert(x)`, results are reverted.
        self.hook_conversion: Any = None

    def add_hook(
        self,
        hook: HookFn,
        dir: Literal["fwd", "bwd"] = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> LensHandle:
        """Attach `hook(tensor, hook=self)`; `dir="bwd"` hooks see the output's gradient.
        With `prepend` it runs before the hooks already attached."""
        if dir not in ("fwd", "bwd"):
            raise HookError(f"Invalid direction {dir!r}: dir must be 'fwd' or 'bwd'.")
        handle = LensHandle(_Detacher(self, dir), is_permanent, level, hook)
        handle.hook.handle = handle
        hooks = self.fwd_hooks if dir == "fwd" else self.bwd_hooks
        hooks.insert(0, handle) if prepend else hooks.append(handle)
        return handle

    def add_perma_hook(self, hook: HookFn, dir: Literal["fwd", "bwd"] = "fwd") -> LensHandle:
        """Attach a hook that `remove_hooks()` keeps unless `including_permanent=True`."""
        return self.add_hook(hook, dir=dir, is_permanent=True)

    def has_hooks(
        self, dir: Direction = "both", including_permanent: bool = True, level: int | None = None
    ) -> bool:
        """True if a hook in direction `dir` (of context `level`, if given) is attached."""
        if dir not in ("fwd", "bwd", "both"):
            raise HookError(f"Invalid direction {dir!r}: use 'fwd', 'bwd' or 'both'.")
        handles = (self.fwd_hooks if dir != "bwd" else []) + (
            self.bwd_hooks if dir != "fwd" else []
        )
        return any(
            (including_permanent or not h.is_permanent)
            and (level is None or h.context_level == level)
            for h in handles
        )

    def remove_hooks(
        self, dir: Direction = "fwd", including_permanent: bool = False, level: int | None = None
    ) -> None:
        """Detach hooks in direction `dir`, as TransformerLens: with `including_permanent`
        every hook goes (whatever its level); otherwise the non-permanent ones of context
        `level` (all levels when None)."""
        if dir not in ("fwd", "bwd", "both"):
            raise HookError(f"Invalid direction {dir!r}: use 'fwd', 'bwd' or 'both'.")

        def kept(handles: list[LensHandle]) -> list[LensHandle]:
            if including_permanent:
                return []
            return [
                h
                for h in handles
                if h.is_permanent or (level is not None and h.context_level != level)
            ]

        if dir in ("fwd", "both"):
            self.fwd_hooks = kept(self.fwd_hooks)
        if dir in ("bwd", "both"):
            self.bwd_hooks = kept(self.bwd_hooks)

    def clear_context(self) -> None:
        """Empty the `ctx` dict that hooks may use to stash values between calls."""
        self.ctx = {}

    def layer(self) -> int:
        """The layer index of a hook named `blocks.{layer}....` (an error otherwise)."""
        if self.name is None:
            raise HookError("This hook point has no name (it is not part of a set-up model).")
        parts = self.name.split(".")
        if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
            raise HookError(
                f"'{self.name}' is not in a layer: layer() reads names 'blocks.{{layer}}....'."
            )
        return int(parts[1])

    def __call__(self, x: Tensor) -> Tensor:
        if self._forward_hooks or self._forward_pre_hooks or self._backward_hooks:
            return super().__call__(x)  # PyTorch module hooks registered by the user
        if not self.fwd_hooks and not self.bwd_hooks:
            return x
        return self.forward(x)

    def forward(self, x: Tensor) -> Tensor:
        """Run the forward hooks in order, each on the previous one's result; register the
        backward hooks on the result's gradient."""
        for handle in list(self.fwd_hooks):
            out = self._call_user_hook(handle, x)
            if out is not None:
                x = self._checked(out, x, handle.user_hook, "returned")
        if self.bwd_hooks and x.requires_grad:
            for handle in list(self.bwd_hooks):
                x.register_hook(self._grad_hook(handle))
        return x

    def enable_reshape(self, hook_conversion: Any = None) -> None:
        """Hooks on this point see `hook_conversion.convert(x)`, and a tensor they return
        goes through `hook_conversion.revert` (a TransformerLens `BaseTensorConversion`;
        None switches it off)."""
        self.hook_conversion = hook_conversion

    def _call_user_hook(self, handle: LensHandle, x: Tensor, grad: bool = False) -> Any:
        conversion = self.hook_conversion
        out = handle.user_hook(x if conversion is None else conversion.convert(x), hook=self)
        if grad and isinstance(out, tuple) and len(out) == 1:  # PyTorch's (grad,), as TL
            out = out[0]
        return out if out is None or conversion is None else conversion.revert(out)

    def _grad_hook(self, handle: LensHandle) -> Callable[[Tensor], Tensor | None]:
        def run(grad: Tensor) -> Tensor | None:
            # A backward pass after the context closed must not run a removed hook.
            if not handle.active:
                return None
            out = self._call_user_hook(handle, grad, grad=True)
            return None if out is None else self._checked(out, grad, handle.user_hook, "returned")

        return run

    def _checked(self, out: Any, x: Tensor, fn: HookFn, verb: str) -> Tensor:
        fn_name = getattr(fn, "__name__", None) or getattr(
            getattr(fn, "func", None), "__name__", repr(fn)
        )
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

    def __repr__(self) -> str:
        bits = [f"name={self.name!r}"] if self.name is not None else []
        if self.fwd_hooks:
            bits.append(f"{len(self.fwd_hooks)} fwd")
        if self.bwd_hooks:
            bits.append(f"{len(self.bwd_hooks)} bwd")
        return f"HookPoint({', '.join(bits)})"


class HookedRootModule(CachingHooks, nn.Module):
    """A module whose `HookPoint`s are addressed by name, with TransformerLens's hook API.

    Subclasses call `self.setup()` at the end of `__init__` (and after changing which hook
    points exist) to name the hook points and fill `hook_dict` / `mod_dict`. Hooks added
    inside `hooks()` (and so by `run_with_hooks` / `run_with_cache`) carry that context's
    `context_level` and are removed when it exits, also on exceptions.
    """

    hook_dict: dict[str, HookPoint]
    mod_dict: dict[str, nn.Module]

    def __init__(self, *args: Any) -> None:
        super().__init__()
        self.is_caching = False
        self.context_level = 0

    def setup(self) -> None:
        """Name every module after its path (as TransformerLens) and index the hook points."""
        self.mod_dict = {}
        self.hook_dict = {}
        for name, module in self.named_modules():
            if name == "":
                continue
            if isinstance(module, HookPoint) or getattr(module, "name", None) is None:
                module.name = name
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                self.hook_dict[name] = module

    def hook_points(self):
        """All hook points (a view of `hook_dict.values()`), in order of construction."""
        return self.hook_dict.values()

    # ----------------------------------------------------------------- adding hooks
    def resolve_hook_names(self, name: str | Callable[[str], bool]) -> list[str]:
        """Hook names matching `name` (an exact name or a predicate on names)."""
        if callable(name):
            return [n for n in self.hook_dict if name(n)]
        if name in self.hook_dict:
            return [name]
        self.check_hooks_to_add(None, name, None)  # a switched-off point: say which flag
        close = difflib.get_close_matches(name, list(self.hook_dict), n=5, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise HookError(
            f"Unknown hook name '{name}'.{hint} Hook names look like "
            "'blocks.0.attn.hook_pattern'; `model.hook_dict.keys()` lists them all. Some "
            "hook points exist only when switched on (use_attn_result, use_split_qkv_input, "
            "use_normalized_qkv_input, use_hook_mlp_in, use_attn_in)."
        )

    def check_hooks_to_add(
        self,
        hook_point: HookPoint,
        hook_point_name: str,
        hook: HookFn,
        dir: Literal["fwd", "bwd"] = "fwd",
        is_permanent: bool = False,
        prepend: bool = False,
    ) -> None:
        """Override to refuse some hooks before they are added (does nothing here)."""

    def check_and_add_hook(
        self,
        hook_point: HookPoint,
        hook_point_name: str,
        hook: HookFn,
        dir: Literal["fwd", "bwd"] = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> LensHandle:
        """Run `check_hooks_to_add`, then attach the hook to `hook_point`."""
        self.check_hooks_to_add(
            hook_point, hook_point_name, hook, dir=dir, is_permanent=is_permanent, prepend=prepend
        )
        return hook_point.add_hook(
            hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend
        )

    def add_hook(
        self,
        name: str | Callable[[str], bool],
        hook: HookFn,
        dir: Literal["fwd", "bwd"] = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> list[LensHandle]:
        """Attach `hook` to the named hook point (or every point the predicate accepts).
        Returns the handles (TransformerLens returns None)."""
        return [
            self.check_and_add_hook(self.hook_dict[n], n, hook, dir, is_permanent, level, prepend)
            for n in self.resolve_hook_names(name)
        ]

    def add_perma_hook(
        self, name: str | Callable[[str], bool], hook: HookFn, dir: Literal["fwd", "bwd"] = "fwd"
    ) -> list[LensHandle]:
        """Attach a hook that `reset_hooks()` keeps (unless `including_permanent=True`)."""
        return self.add_hook(name, hook, dir=dir, is_permanent=True)

    def list_hooks(
        self,
        name_filter: NamesFilter = None,
        dir: Direction = "both",
        including_permanent: bool = True,
    ) -> dict[str, list[LensHandle]]:
        """Attached hooks by hook name (points without hooks are left out)."""
        matches = _as_predicate(name_filter)
        out: dict[str, list[LensHandle]] = {}
        for name, hp in self.hook_dict.items():
            if not matches(name):
                continue
            handles = (hp.fwd_hooks if dir != "bwd" else []) + (
                hp.bwd_hooks if dir != "fwd" else []
            )
            handles = [h for h in handles if including_permanent or not h.is_permanent]
            if handles:
                out[name] = handles
        return out

    def num_hooks(self) -> int:
        """How many hook functions are attached in total (0 after every clean exit)."""
        return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in self.hook_dict.values())

    # ---------------------------------------------------------------- removing hooks
    def remove_all_hook_fns(
        self,
        direction: Direction = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """`remove_hooks` on every hook point."""
        for hp in self.hook_dict.values():
            hp.remove_hooks(direction, including_permanent=including_permanent, level=level)

    def clear_contexts(self) -> None:
        """Empty every hook point's `ctx`."""
        for hp in self.hook_dict.values():
            hp.clear_context()

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: Direction = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove hooks from every hook point (permanent ones only if asked)."""
        if clear_contexts:
            self.clear_contexts()
        self.remove_all_hook_fns(direction, including_permanent, level=level)
        self.is_caching = False

    # ------------------------------------------------------------- temporary hooks
    @contextmanager
    def hooks(
        self,
        fwd_hooks: HookList = (),
        bwd_hooks: HookList = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[HookedRootModule]:
        """Attach hooks for the duration of a `with` block; they are removed on exit,
        also when the block raises. Backward hooks must be used (`.backward()`) inside."""
        self.context_level += 1
        level = self.context_level
        added: list[LensHandle] = []
        try:
            for direction, hook_list in (("fwd", fwd_hooks), ("bwd", bwd_hooks)):
                for name, fn in hook_list:
                    added += self._enable_hook(name, fn, direction)
            yield self
        finally:
            if reset_hooks_end:
                for handle in added:  # also those whose hook point setup() replaced
                    handle.remove()
                self.reset_hooks(clear_contexts, including_permanent=False, level=level)
            self.context_level -= 1

    def _enable_hook(
        self, name: str | Callable[[str], bool], hook: HookFn, dir: Literal["fwd", "bwd"]
    ) -> list[Any]:
        """Attach `hook` at the current `context_level` to the named point (or to every
        point the predicate accepts), as TransformerLens's `hooks()` does. Returns what
        the hook points' `add_hook` returns (`LensHandle`s)."""
        if isinstance(name, str):
            return [self._enable_hook_with_name(name, hook, dir)]
        return self._enable_hooks_for_points(self.hook_dict.items(), name, hook, dir)

    def _enable_hook_with_name(self, name: str, hook: HookFn, dir: Literal["fwd", "bwd"]) -> Any:
        # As TransformerLens: the module of that name. A wrapper such as HookedAutoModel
        # names its hook points apart from its modules: those are found in hook_dict.
        module = self.mod_dict.get(name)
        if module is None:
            module = self.hook_dict.get(name)
        if module is None or not hasattr(module, "add_hook"):
            self.resolve_hook_names(name)  # raises, naming close matches
        return module.add_hook(hook, dir=dir, level=self.context_level)

    def _enable_hooks_for_points(
        self,
        hook_points: Iterable[tuple[str, HookPoint]],
        enabled: Callable[[str], bool],
        hook: HookFn,
        dir: Literal["fwd", "bwd"],
    ) -> list[Any]:
        return [
            hp.add_hook(hook, dir=dir, level=self.context_level)
            for name, hp in hook_points
            if enabled(name)
        ]

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks: HookList = (),
        bwd_hooks: HookList = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs: Any,
    ) -> Any:
        """Run the model with temporary hooks. Returns what `forward` returns."""
        bwd_hooks = list(bwd_hooks)
        if bwd_hooks and reset_hooks_end:
            warnings.warn(
                "Backward hooks are removed when run_with_hooks returns, before you can call "
                "backward(); use `with model.hooks(bwd_hooks=...)` and call backward inside, "
                "or pass reset_hooks_end=False.",
                stacklevel=2,
            )
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
            return self.forward(*model_args, **model_kwargs)


def _as_predicate(names_filter: NamesFilter) -> Callable[[str], bool]:
    if names_filter is None:
        return lambda name: True
    if callable(names_filter):
        return names_filter
    if isinstance(names_filter, str):
        return lambda name: name == names_filter
    allowed = set(names_filter)
    return lambda name: name in allowed
