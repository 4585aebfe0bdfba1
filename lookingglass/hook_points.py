"""TransformerLens's module path `transformer_lens.hook_points`, re-exporting our hooks
(`lookingglass.hooks`): `HookPoint`, `HookedRootModule` (TransformerLens 3.9 moved the
latter to its own module and still serves it here, with a deprecation warning)."""

from typing import Any

from lookingglass.errors import NotSupportedError
from lookingglass.hooks import HookedRootModule, HookFn, HookHandle, HookPoint, NameFilter

NamesFilter = NameFilter
HookFunction = HookFn

__all__ = ["HookFunction", "HookHandle", "HookPoint", "HookedRootModule", "NamesFilter"]


def __getattr__(name: str) -> Any:
    if name == "LensHandle":
        raise NotSupportedError(
            "lookingglass has no LensHandle (TransformerLens's wrapper of a PyTorch hook "
            "handle): our hook points keep `HookHandle`s (lookingglass.hooks.HookHandle: "
            ".remove(), .is_permanent, .level, .fn)."
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
