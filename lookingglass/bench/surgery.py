"""Model surgery through hooks: delete or replace a layer, knock out attention heads.

Every edit is a set of hooks on the model's hook points, returned as an `Edit` that
undoes itself (`edit.remove()`, or leave a `with` block): the weights are never touched,
so the original model is one `remove()` away and the edits compose with any other hooks.

- Deleting layer L makes block L the identity on the residual stream: its output
  `resid_post` is replaced by its input `resid_pre` (the block still runs; its writes are
  discarded).
- Replacing layer L with `fn` sets `resid_post = fn(resid_pre)`.
- Knocking out head (L, H) sets its `hook_z` slice to zero, to its mean over a reference
  batch and its positions, or to its value on a random reference row (the hooks of
  `interventions.ablation`), before W_O: the head writes nothing (zero), a constant
  (mean) or an unrelated input's output (resample) to the residual stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from jaxtyping import Float
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.hooks import HookHandle

Head = tuple[int, int]
AblationMode = Literal["zero", "mean", "resample"]


class Edit:
    """Hooks that make up one model edit; `remove()` (or leaving `with`) undoes it."""

    def __init__(self, handles: list[HookHandle], description: str) -> None:
        self.handles = handles
        self.description = description

    @property
    def active(self) -> bool:
        """True while the edit's hooks are attached."""
        return any(h.active for h in self.handles)

    def remove(self) -> None:
        """Undo the edit (harmless to call twice)."""
        for handle in self.handles:
            handle.remove()

    def __enter__(self) -> Edit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<Edit {self.description} ({'active' if self.active else 'removed'})>"


def delete_layer(model, layer: int) -> Edit:
    """Make block `layer` the identity on the residual stream (see the module docstring)."""
    return replace_layer(model, layer, lambda resid_pre: resid_pre, f"delete layer {layer}")


def replace_layer(
    model,
    layer: int,
    fn: Callable[[Float[Tensor, "batch pos d_model"]], Float[Tensor, "batch pos d_model"]],
    description: str | None = None,
) -> Edit:
    """Replace block `layer` by `fn`: its output becomes `fn(resid_pre)` (any callable
    or module mapping `[batch, pos, d_model]` to the same shape)."""
    _check_layer(model, layer)
    stash: dict[str, Tensor] = {}

    def keep_input(resid_pre: Tensor, hook) -> None:
        stash["resid_pre"] = resid_pre

    def replace_output(resid_post: Tensor, hook) -> Tensor:
        replaced = fn(stash.pop("resid_pre"))
        return replaced.to(resid_post.dtype)

    handles = model.add_hook(f"blocks.{layer}.hook_resid_pre", keep_input)
    handles += model.add_hook(f"blocks.{layer}.hook_resid_post", replace_output)
    return Edit(handles, description or f"replace layer {layer}")


def knock_out_heads(
    model,
    heads: Iterable[Head],
    mode: AblationMode = "zero",
    reference: Any = None,
) -> Edit:
    """Knock out attention heads `[(layer, head), ...]` through their `hook_z`: "zero"
    sets it to zero; "mean" to its mean over the rows and positions of `reference`
    (tokens or text); "resample" to its value on a random row of `reference`. The hooks
    are `interventions.ablation`'s; this makes them a reversible edit."""
    from lookingglass.interventions.ablation import Component, ablation_hooks

    by_layer = _heads_by_layer(model, heads)
    if mode not in ("zero", "mean", "resample"):
        raise InputError(f"mode must be 'zero', 'mean' or 'resample', got {mode!r}.")
    if mode != "zero" and reference is None:
        raise InputError(
            f"{mode} ablation needs reference=... (tokens or text to take the values from)."
        )
    if isinstance(reference, str | list):
        reference = model.to_tokens(reference)
    chosen = [Component.head(layer, h) for layer, ids in by_layer.items() for h in ids]
    hooks = ablation_hooks(model, chosen, mode, reference, per_position=False)
    handles = [handle for name, fn in hooks for handle in model.add_hook(name, fn)]
    listed = ", ".join(f"L{layer}H{h}" for layer, ids in by_layer.items() for h in ids)
    return Edit(handles, f"{mode}-ablate {listed}")


def _heads_by_layer(model, heads: Iterable[Head]) -> dict[int, list[int]]:
    by_layer: dict[int, list[int]] = {}
    for item in heads:
        if not isinstance(item, Sequence) or len(item) != 2:
            raise InputError(f"Heads are (layer, head) pairs, got {item!r}.")
        layer, head = int(item[0]), int(item[1])
        _check_layer(model, layer)
        if not 0 <= head < model.cfg.n_heads:
            raise InputError(
                f"Head {head} is out of range: the model has {model.cfg.n_heads} heads per layer."
            )
        by_layer.setdefault(layer, []).append(head)
    if not by_layer:
        raise InputError("No heads given to knock out.")
    return by_layer


def _check_layer(model, layer: int) -> None:
    if not 0 <= layer < model.cfg.n_layers:
        raise InputError(
            f"Layer {layer} is out of range: the model has {model.cfg.n_layers} layers."
        )


class SurgeryTool:
    """The bench's "surgery" tool: reversible edits of its model (see module docstring)."""

    def __init__(self, model) -> None:
        self.model = model

    def delete_layer(self, layer: int) -> Edit:
        """Block `layer` becomes the identity on the residual stream until removed."""
        return delete_layer(self.model, layer)

    def replace_layer(self, layer: int, fn: Callable[[Tensor], Tensor]) -> Edit:
        """Block `layer`'s output becomes `fn(resid_pre)` until removed."""
        return replace_layer(self.model, layer, fn)

    def knock_out_heads(
        self, heads: Iterable[Head], mode: AblationMode = "zero", reference: Any = None
    ) -> Edit:
        """Heads write nothing ("zero"), their mean or a resampled value over `reference`
        ("mean", "resample") until removed."""
        return knock_out_heads(self.model, heads, mode, reference)
