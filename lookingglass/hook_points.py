"""TransformerLens's module path `transformer_lens.hook_points`, re-exporting our hooks
(`lookingglass.hooks`): `HookPoint`, `HookedRootModule` (TransformerLens 3.9 moved the
latter to its own module and still serves it here, with a deprecation warning)."""

from typing import Any

from lookingglass.errors import NotSupportedError
from lookingglass.hooks import HookedRootModule, HookFn, HookHandle, HookPoint, NameFilter

NamesFilter = NameFilter
HookFunction = HookFn

__all__ = ["HookFunction", "HookHandle", "HookPoint", "HookedRootModule", "NamesFilter"]


_NOT_PROVIDED = {
    "LensHandle": "lookingglass has no LensHandle (TransformerLens's wrapper of a PyTorch hook "
    "handle): our hook points keep `HookHandle`s (lookingglass.hooks.HookHandle: "
    ".remove(), .is_permanent, .level, .fn).",
    "HookIntrospectionMixin": "TransformerLens's internal mixin; HookedRootModule itself has "
    "hook_dict, mod_dict and hook_points().",
}


def __getattr__(name: str) -> Any:
    if name in _NOT_PROVIDED:
        raise NotSupportedError(f"transformer_lens.hook_points.{name}: {_NOT_PROVIDED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
