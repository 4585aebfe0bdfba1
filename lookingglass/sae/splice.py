"""Splicing SAEs into a model's hook points: `add_sae`, `reset_saes`, the `saes()`
context, `run_with_saes`, `run_with_cache_with_saes`, `run_with_hooks_with_saes`
(SAELens's `HookedSAETransformer` methods, as functions that take the model).

An attached SAE replaces its hook point `hook_name` by a `SplicedHookPoint`: the hooks
on that name still run first, on what the model computed (the name keeps its
TransformerLens meaning); then the SAE's output (`hook_sae_output`) flows on. The SAE's
own hook points join the model's, under the output hook's name, as in SAELens
(`blocks.3.hook_resid_post.hook_sae_acts_post`), so `run_with_cache`, `hooks()`,
`names_filter` and the intervention code reach them by name. A transcoder reads
`hook_name` (after that point's hooks) and writes `hook_name_out`.

Unlike SAELens, SAE parameters never join the model's `state_dict`, permanent hooks on
the spliced names survive attaching and detaching, and `reset_hooks(including_permanent=
True)` cannot silently unplug a transcoder.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch import Tensor

from lookingglass.errors import HookError
from lookingglass.hooks import HookPoint
from lookingglass.sae.sae import SAE, SAE_HOOK_NAMES


class SplicedHookPoint(HookPoint):
    """A model hook point with an SAE attached (`role="out"`) or a transcoder's input
    (`role="in"`, which only records its value for the partner output point)."""

    def __init__(self, original: HookPoint, sae: SAE, role: str, use_error_term: bool) -> None:
        # Neither the replaced point nor the SAE is a submodule: the replaced point's name
        # must not appear twice, and the SAE's parameters stay out of the model.
        self.__dict__["original"] = original
        self.__dict__["sae"] = sae
        kept = (original.fwd_hooks, original.bwd_hooks, original.ctx)
        super().__init__()  # (sets the three below empty, through the properties)
        original.fwd_hooks, original.bwd_hooks, original.ctx = kept
        self.role = role
        self.use_error_term = use_error_term
        self.captured: Tensor | None = None
        self.__dict__["partner"] = None  # the transcoder's output point (role "in")
        if role == "out":
            for name in SAE_HOOK_NAMES:
                self.add_module(name, getattr(sae, name))

    # The hooks live on the replaced point, so handles made before, during or after the
    # splice all detach from the same lists.
    fwd_hooks = property(
        lambda self: self.original.fwd_hooks,
        lambda self, v: setattr(self.original, "fwd_hooks", v),
    )
    bwd_hooks = property(
        lambda self: self.original.bwd_hooks,
        lambda self, v: setattr(self.original, "bwd_hooks", v),
    )
    ctx = property(lambda self: self.original.ctx, lambda self, v: setattr(self.original, "ctx", v))

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def has_hooks(self, dir="both", including_permanent: bool = True, level=None) -> bool:
        """True outside a context level: the model must call this point (fast paths that
        skip unhooked points would skip the SAE)."""
        if level is not None:
            return super().has_hooks(dir, including_permanent, level)
        return dir != "bwd" or super().has_hooks(dir, including_permanent, level)

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x) if (self.fwd_hooks or self.bwd_hooks) else x
        if self.role == "in":
            self.partner.captured = x
            return x
        sae = self.sae
        if x.shape[-1] != sae.cfg.out_dim:
            raise HookError(
                f"The SAE at '{self.name}' writes {sae.cfg.out_dim} numbers per position, but "
                f"'{self.name}' has shape {tuple(x.shape)}: its d_in/d_out do not fit this hook."
            )
        before = sae.use_error_term
        sae.use_error_term = self.use_error_term
        try:
            if sae.cfg.is_transcoder:
                if self.captured is None:
                    raise HookError(
                        f"Transcoder output '{self.name}' ran before its input "
                        f"'{sae.cfg.hook_name}': hook_name must come earlier in the model."
                    )
                out = sae.splice(self.captured, target=x)
            else:
                out = sae.splice(x)
        finally:
            sae.use_error_term = before
            self.captured = None
        return out


def _splices(model) -> dict[str, SplicedHookPoint]:
    if "_sae_splices" not in model.__dict__:
        model.__dict__["_sae_splices"] = {}
    return model.__dict__["_sae_splices"]


def _swap(model, name: str, new: HookPoint) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def _point(model, name: str) -> HookPoint:
    point = model.hook_dict.get(name)
    if point is None:
        from difflib import get_close_matches

        close = get_close_matches(name, list(model.hook_dict), n=3)
        raise HookError(
            f"No hook point '{name}' to attach an SAE to"
            + (f"; did you mean {', '.join(close)}?" if close else ".")
            + " Set the SAE's cfg.hook_name to one of model.hook_dict's names."
        )
    return point.original if isinstance(point, SplicedHookPoint) else point


def attached_saes(model) -> dict[str, SAE]:
    """The attached SAEs by input hook name (SAELens's `acts_to_saes`)."""
    return {name: point.sae for name, point in _splices(model).items()}


def add_sae(model, sae: SAE, use_error_term: bool | None = None) -> None:
    """Attach `sae` at `sae.cfg.hook_name` (to `hook_name_out` for transcoders) until
    `reset_saes`; an SAE already attached there is replaced. `use_error_term=None`
    keeps the SAE's own setting."""
    in_name = sae.cfg.hook_name
    if in_name is None:
        raise HookError("The SAE has no cfg.hook_name; set it to the hook it reads.")
    out_name = sae.cfg.hook_name_out or in_name
    if in_name in _splices(model):
        reset_saes(model, in_name)
    err = sae.use_error_term if use_error_term is None else use_error_term
    out = SplicedHookPoint(_point(model, out_name), sae, "out", err)
    if out_name != in_name:
        inp = SplicedHookPoint(_point(model, in_name), sae, "in", err)
        inp.__dict__["partner"] = out
        _swap(model, in_name, inp)
    _swap(model, out_name, out)
    _splices(model)[in_name] = out
    model.setup()


def reset_saes(model, act_names: str | Sequence[str] | None = None) -> None:
    """Detach the SAEs attached at `act_names` (input hook names; all when None)."""
    splices = _splices(model)
    names = [act_names] if isinstance(act_names, str) else list(act_names or splices)
    for name in names:
        out = splices.pop(name, None)
        if out is None:
            continue
        sae = out.sae
        out_name = sae.cfg.hook_name_out or name
        _swap(model, out_name, _restored(out))
        if out_name != name:
            _swap(model, name, _restored(model.get_submodule(name)))
        sae.setup()  # the SAE's hook points get their own names back
    model.setup()


def _restored(point: HookPoint) -> HookPoint:
    original = point.original
    original.fwd_hooks, original.bwd_hooks, original.ctx = (
        point.fwd_hooks,
        point.bwd_hooks,
        point.ctx,
    )
    return original


@contextmanager
def saes(
    model,
    saes: SAE | Sequence[SAE] = (),
    reset_saes_end: bool = True,
    use_error_term: bool | None = None,
) -> Iterator[Any]:
    """Attach `saes` within the block; on exit (also on errors) detach them and put back
    the SAEs they displaced."""
    saes = [saes] if isinstance(saes, SAE) else list(saes)
    displaced = [(s.cfg.hook_name, _splices(model).get(s.cfg.hook_name)) for s in saes]
    try:
        for sae in saes:
            add_sae(model, sae, use_error_term=use_error_term)
        yield model
    finally:
        if reset_saes_end:
            for name, previous in reversed(displaced):
                reset_saes(model, name)
                if previous is not None:
                    add_sae(model, previous.sae, use_error_term=previous.use_error_term)


def run_with_saes(
    model,
    *args,
    saes: SAE | Sequence[SAE] = (),
    reset_saes_end: bool = True,
    use_error_term: bool | None = None,
    **kwargs,
):
    """`model(*args, **kwargs)` with `saes` attached for this call."""
    with _ctx(model, saes, reset_saes_end, use_error_term):
        return model(*args, **kwargs)


def run_with_cache_with_saes(
    model,
    *args,
    saes: SAE | Sequence[SAE] = (),
    reset_saes_end: bool = True,
    use_error_term: bool | None = None,
    **kwargs,
):
    """`model.run_with_cache(...)` with `saes` attached; SAE activations are cached under
    names like `blocks.3.hook_resid_post.hook_sae_acts_post`."""
    with _ctx(model, saes, reset_saes_end, use_error_term):
        return model.run_with_cache(*args, **kwargs)


def run_with_hooks_with_saes(
    model,
    *args,
    saes: SAE | Sequence[SAE] = (),
    reset_saes_end: bool = True,
    fwd_hooks=(),
    bwd_hooks=(),
    use_error_term: bool | None = None,
    **kwargs,
):
    """`model.run_with_hooks(...)` with `saes` attached (hooks may name SAE hook points)."""
    with _ctx(model, saes, reset_saes_end, use_error_term):
        return model.run_with_hooks(
            *args, fwd_hooks=list(fwd_hooks), bwd_hooks=list(bwd_hooks), **kwargs
        )


_ctx = saes
