"""Ablation: knock out heads, neurons, layers or any activation, and measure what changes.

An ablation replaces part of an activation by a reference value:

* `"zero"`: by zero.
* `"mean"`: by its mean over a dataset of token batches (position by position, as is
  usual for templated prompts; `per_position=False` also averages over positions).
* `"resample"`: by its value on a random example of the dataset (same positions).

The part is a `Component`: a hook name and an index into the activation after its batch
dimension, e.g. head 4 of layer 1 is `Component.head(1, 4)`, `blocks.1.attn.hook_z[:, :, 4]`.
Use the hooks with `model.hooks(...)` / `run_with_hooks`, or the `ablate(...)` context.

One view built on it: `per_token_loss_change`, how much each next-token loss rises when a
component is ablated, and `top_loss_changes`, where it matters most. Ablating only each
head's direct path to the logits is `direct_effects.head_direct_effects`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass import utils
from lookingglass.errors import InputError

Method = Literal["zero", "mean", "resample"]
HookFn = Callable[..., Tensor]
TokenData = Int[Tensor, "batch pos"] | Iterable[Tensor]  # a tensor, or batches of token ids


@dataclass(frozen=True)
class Component:
    """`activation[:, *index]` at hook `hook_name`: the part of the model to ablate."""

    hook_name: str
    index: tuple = ()

    @classmethod
    def head(cls, layer: int, head: int) -> Component:
        """One attention head's output: `blocks.{layer}.attn.hook_z[:, :, head]`."""
        return cls(utils.get_act_name("z", layer), (slice(None), head))

    @classmethod
    def neuron(cls, layer: int, neuron: int) -> Component:
        """One MLP neuron's activation: `blocks.{layer}.mlp.hook_post[:, :, neuron]`."""
        return cls(utils.get_act_name("post", layer), (slice(None), neuron))

    @classmethod
    def attn_layer(cls, layer: int) -> Component:
        """A whole attention layer's output, `blocks.{layer}.hook_attn_out`."""
        return cls(utils.get_act_name("attn_out", layer))

    @classmethod
    def mlp_layer(cls, layer: int) -> Component:
        """A whole MLP layer's output, `blocks.{layer}.hook_mlp_out`."""
        return cls(utils.get_act_name("mlp_out", layer))

    def __str__(self) -> str:
        return self.hook_name + (f"[:, {self.index}]" if self.index else "")


def make_components(
    heads: Sequence[tuple[int, int]] = (),
    neurons: Sequence[tuple[int, int]] = (),
    attn_layers: Sequence[int] = (),
    mlp_layers: Sequence[int] = (),
    hooks: Sequence[Component | str | tuple[str, tuple]] = (),
) -> list[Component]:
    """Components from `(layer, head)` and `(layer, neuron)` pairs, layer numbers, and
    hook names (whole activation) or `(hook_name, index)` pairs."""
    out = [Component.head(*h) for h in heads] + [Component.neuron(*n) for n in neurons]
    out += [Component.attn_layer(layer) for layer in attn_layers]
    out += [Component.mlp_layer(layer) for layer in mlp_layers]
    for hook in hooks:
        if isinstance(hook, Component):
            out.append(hook)
        elif isinstance(hook, str):
            out.append(Component(hook))
        else:
            out.append(Component(hook[0], tuple(hook[1])))
    return out


# -------------------------------------------------------------------- hook functions
def zero_ablation_hook(index: tuple = ()) -> HookFn:
    """A hook that sets `activation[:, *index]` to zero."""

    def zero_ablate(activation: Tensor, hook) -> Tensor:
        activation = activation.clone()
        activation[(slice(None), *index)] = 0.0
        return activation

    return zero_ablate


def mean_ablation_hook(mean: Tensor, index: tuple = ()) -> HookFn:
    """A hook that sets `activation[:, *index]` to `mean[index]`. `mean` has the
    activation's shape without the batch dimension (positions may be more than the run's;
    a position dimension of size 1 stands for every position)."""

    def mean_ablate(activation: Tensor, hook) -> Tensor:
        activation = activation.clone()
        reference = _fit(mean[None], activation, hook)
        activation[(slice(None), *index)] = reference[(slice(None), *index)].to(activation.dtype)
        return activation

    return mean_ablate


def resample_ablation_hook(reference: Tensor, index: tuple = (), seed: int | None = 0) -> HookFn:
    """A hook that sets `activation[b, *index]` to `reference[r_b, *index]` for a random
    row `r_b` of `reference` (the activations of a dataset, `[n_examples, ...]`)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def resample_ablate(activation: Tensor, hook) -> Tensor:
        rows = torch.randint(0, reference.shape[0], (activation.shape[0],), generator=generator)
        source = _fit(reference[rows.to(reference.device)], activation, hook)
        activation = activation.clone()
        activation[(slice(None), *index)] = source[(slice(None), *index)].to(activation.dtype)
        return activation

    return resample_ablate


def _fit(reference: Tensor, activation: Tensor, hook) -> Tensor:
    """`reference [n, pos, ...]` for an activation `[batch, pos, ...]`: cut to its
    positions if longer, expanded if it has a single position."""
    if reference.shape[1:] != activation.shape[1:]:
        same_rest = reference.shape[2:] == activation.shape[2:]
        if not same_rest or hook.name.endswith(("hook_pattern", "hook_attn_scores")):
            _mismatch(reference, activation, hook)
        if reference.shape[1] == 1:
            reference = reference.expand(-1, activation.shape[1], *reference.shape[2:])
        elif reference.shape[1] >= activation.shape[1]:
            reference = reference[:, : activation.shape[1]]
        else:
            _mismatch(reference, activation, hook)
    return reference.to(activation.device)


def _mismatch(reference: Tensor, activation: Tensor, hook) -> None:
    raise InputError(
        f"The ablation data's activation at '{hook.name}' has shape "
        f"{tuple(reference.shape[1:])} (without batch) but the ablated run's is "
        f"{tuple(activation.shape[1:])}. Use data with at least as many positions."
    )


# ------------------------------------------------------------------ building hooks
def ablation_hooks(
    model,
    components: Sequence[Component],
    method: Method = "zero",
    data: TokenData | None = None,
    per_position: bool = True,
    seed: int | None = 0,
) -> list[tuple[str, HookFn]]:
    """`(hook_name, hook_fn)` pairs ablating every component (for `model.hooks`).

    Args:
        model: a `HookedTransformer`.
        components: what to ablate (see `Component`, `make_components`).
        method: "zero", "mean" or "resample".
        data: token ids `[n, pos]` (or an iterable of such batches) for "mean" and
            "resample".
        per_position: for "mean", keep one mean per position (else average positions).
        seed: for "resample", the seed of the row choice (None: unseeded).
    """
    if method not in ("zero", "mean", "resample"):
        raise InputError(f"method must be 'zero', 'mean' or 'resample', got {method!r}.")
    names = list(dict.fromkeys(c.hook_name for c in components))
    for name in names:
        model.resolve_hook_names(name)
    if method == "zero":
        return [(c.hook_name, zero_ablation_hook(c.index)) for c in components]
    if data is None:
        raise InputError(f"method={method!r} needs data=: token ids to take the reference from.")
    acts = dataset_activations(model, data, names, mean=method == "mean")
    if method == "mean":
        if not per_position and any(n.endswith(("hook_pattern", "hook_attn_scores")) for n in acts):
            raise InputError(
                "per_position=False averages over positions, which attention "
                "patterns do not have in dimension 1; keep per_position=True."
            )
        means = {n: a if per_position else a.mean(dim=0, keepdim=True) for n, a in acts.items()}
        return [(c.hook_name, mean_ablation_hook(means[c.hook_name], c.index)) for c in components]
    return [
        (c.hook_name, resample_ablation_hook(acts[c.hook_name], c.index, seed)) for c in components
    ]


@torch.no_grad()
def dataset_activations(
    model, data: TokenData, names: Sequence[str], mean: bool
) -> dict[str, Tensor]:
    """Activations at `names` over a dataset: all rows `[n, ...]`, or with `mean` their
    mean over rows `[...]` (batches must have equal lengths)."""
    batches = [data] if isinstance(data, Tensor) else list(data)
    sums: dict[str, Tensor] = {}
    rows: dict[str, list[Tensor]] = {n: [] for n in names}
    count = 0
    for tokens in batches:
        tokens = tokens if tokens.dim() == 2 else tokens[None]
        _, cache = model.run_with_cache(
            tokens, names_filter=list(names), return_type=None, return_cache_object=False
        )
        for name in names:
            if mean:
                total = cache[name].float().sum(dim=0)
                sums[name] = total if name not in sums else sums[name] + total
            else:
                rows[name].append(cache[name])
        count += tokens.shape[0]
    if count == 0:
        raise InputError("The ablation data is empty.")
    if mean:
        return {n: s / count for n, s in sums.items()}
    return {n: torch.cat(r) for n, r in rows.items()}


@contextmanager
def ablate(
    model,
    components: Sequence[Component] = (),
    *,
    heads: Sequence[tuple[int, int]] = (),
    neurons: Sequence[tuple[int, int]] = (),
    attn_layers: Sequence[int] = (),
    mlp_layers: Sequence[int] = (),
    hooks: Sequence[Component | str | tuple[str, tuple]] = (),
    method: Method = "zero",
    data: TokenData | None = None,
    per_position: bool = True,
    seed: int | None = 0,
) -> Iterator:
    """Within the `with` block the model runs with the components ablated.

        with ablate(model, heads=[(1, 4)], method="mean", data=tokens):
            loss = model(tokens, return_type="loss")

    The hooks are removed on exit, also when the block raises.
    """
    chosen = list(components) + make_components(heads, neurons, attn_layers, mlp_layers, hooks)
    fwd_hooks = ablation_hooks(model, chosen, method, data, per_position, seed)
    with model.hooks(fwd_hooks=fwd_hooks):
        yield model


# ------------------------------------------------------------ loss change per token
def per_token_loss_change(
    model,
    tokens: Int[Tensor, "batch pos"],
    component: Component | Sequence[Component],
    method: Method = "zero",
    data: TokenData | None = None,
    per_position: bool = True,
    seed: int | None = 0,
) -> Float[Tensor, "batch pos_minus_1"]:
    """How much each next-token loss rises when `component` is ablated: ablated loss
    minus clean loss, `[batch, pos-1]` (entry p is the loss of predicting token p+1).
    For "mean" and "resample" without `data`, the reference is taken from `tokens`."""
    chosen = [component] if isinstance(component, Component) else list(component)
    reference = tokens if data is None and method != "zero" else data
    with torch.no_grad():
        clean = model(tokens, return_type="loss", loss_per_token=True)
        with ablate(
            model, chosen, method=method, data=reference, per_position=per_position, seed=seed
        ):
            ablated = model(tokens, return_type="loss", loss_per_token=True)
    return ablated - clean


@dataclass(frozen=True)
class TokenLossChange:
    """One predicted token and how much its loss changed (see `top_loss_changes`)."""

    batch: int
    pos: int
    target: int
    change: float
    target_str: str | None = None
    context: str | None = field(default=None, repr=False)


def top_loss_changes(
    model,
    tokens: Int[Tensor, "batch pos"],
    loss_change: Float[Tensor, "batch pos_minus_1"],
    k: int = 10,
    context: int = 8,
    largest: bool = True,
) -> list[TokenLossChange]:
    """The `k` predictions whose loss rose most (`largest=False`: fell most), with the
    target token and, when the model has a tokenizer, up to `context` preceding tokens."""
    flat = loss_change.flatten()
    values, where = flat.topk(min(k, flat.numel()), largest=largest)
    out = []
    for value, i in zip(values.tolist(), where.tolist(), strict=True):
        b, p = divmod(i, loss_change.shape[1])
        target = int(tokens[b, p + 1])
        target_str = prefix = None
        if getattr(model, "tokenizer", None) is not None:
            target_str = model.to_string([target])
            prefix = model.to_string(tokens[b, max(0, p + 1 - context) : p + 1].tolist())
        out.append(TokenLossChange(b, p, target, value, target_str, prefix))
    return out
