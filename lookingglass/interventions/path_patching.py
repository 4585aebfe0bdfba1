"""Path patching: the effect of sender heads on receivers through the direct path only.

The two-step algorithm of Wang et al. 2022 ("Interpretability in the Wild", the IOI
paper), on the clean run:

1. Run the clean input with the senders' outputs (`hook_z`) replaced by their corrupted
   values and every other head's output, and every MLP's output, frozen to its clean
   value. Only the senders' change reaches the residual stream, so the receivers'
   inputs, recomputed from it, change only through the direct paths sender -> receiver.
   Record the receivers' inputs.
2. Run the clean input with just the receivers' inputs patched to the recorded values,
   everything downstream recomputed, and measure the metric.

Receivers are heads' query, key or value inputs (patched at `hook_q/k/v` of that head,
which is the input projected by the head's own weights) or the final residual stream
(the input of the final norm). `freeze_mlps=False` leaves MLPs free in step 1, as
ARENA's IOI notebook does, so paths sender -> MLP -> receiver count too.

Both steps run batched: `path_patch_sweep` patches every sender head on its own, all
variants stacked along the batch, step 1 starting at the sender's block and stopping
after the last receiver's block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass import utils
from lookingglass.errors import InputError
from lookingglass.interventions._variants import (
    BaseRun,
    DeclaredMetric,
    Edit,
    Variant,
    evaluate_metric,
    run_variants,
)

FINAL_RESIDUAL = ("resid_final", "logits")
Head = tuple[int, int]
Receivers = str | Sequence[str | tuple[int, int] | tuple[int, int, str]]


def path_patch(
    model,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    senders: Sequence[Head],
    receivers: Receivers,
    metric: Callable[[Float[Tensor, "batch pos d_vocab"]], Tensor | float] | DeclaredMetric,
    freeze_mlps: bool = True,
    receiver_positions: Sequence[int] | None = None,
) -> float:
    """The metric after path patching `senders` -> `receivers` (see the module doc).

    Args:
        model: a `HookedTransformer`.
        clean_tokens, corrupted_tokens: `[batch, pos]`, the same shape.
        senders: `(layer, head)` pairs, patched together.
        receivers: `"resid_final"` (or `"logits"`), and/or `(layer, head)` (its q, k and
            v inputs) or `(layer, head, "q" | "k" | "v" | "qk" | ...)`.
        metric: `fn(logits [batch, pos, d_vocab]) -> scalar` (or `declare_metric`).
        freeze_mlps: freeze MLP outputs in step 1 (direct paths only).
        receiver_positions: patch the receivers at these positions only (default all).
    """
    values = _path_patch_values(
        model,
        clean_tokens,
        corrupted_tokens,
        [list(senders)],
        receivers,
        metric,
        freeze_mlps,
        receiver_positions,
        None,
    )
    return float(values[0])


def path_patch_sweep(
    model,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    receivers: Receivers,
    metric: Callable[[Float[Tensor, "batch pos d_vocab"]], Tensor | float] | DeclaredMetric,
    freeze_mlps: bool = True,
    receiver_positions: Sequence[int] | None = None,
    batch_size: int | None = None,
) -> Float[Tensor, "n_layers n_heads"]:
    """`path_patch` with each head as the only sender, for every head: `[n_layers, n_heads]`
    metric values. Heads that cannot reach any receiver (in its layer or later) get the
    clean metric without a forward pass."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    sets = [[(layer, head)] for layer in range(n_layers) for head in range(n_heads)]
    values = _path_patch_values(
        model,
        clean_tokens,
        corrupted_tokens,
        sets,
        receivers,
        metric,
        freeze_mlps,
        receiver_positions,
        batch_size,
    )
    return values.reshape(n_layers, n_heads).to(model.W_U.device)


def _parse_receivers(model, receivers: Receivers) -> tuple[list[tuple[int, int, str]], bool]:
    """Receiver heads as (layer, head, "q"/"k"/"v"), and whether the final residual is one."""
    if isinstance(receivers, str) or (
        isinstance(receivers, tuple) and receivers and isinstance(receivers[0], int)
    ):
        receivers = [receivers]  # one receiver
    heads, final = [], False
    for receiver in receivers:
        if not isinstance(receiver, str | tuple | list) or not (
            isinstance(receiver, str) or 2 <= len(receiver) <= 3
        ):
            raise InputError(
                f"A receiver is 'resid_final' or (layer, head[, 'qkv']), got {receiver!r}."
            )
        if isinstance(receiver, str):
            if receiver not in FINAL_RESIDUAL:
                raise InputError(
                    f"Unknown receiver {receiver!r}: use 'resid_final' or (layer, head[, 'qkv'])."
                )
            final = True
            continue
        layer, head, *inputs = receiver
        _check_head(model, (layer, head), "receiver")
        for name in inputs[0] if inputs else "qkv":
            if name not in "qkv":
                raise InputError(
                    f"Receiver input {name!r} of {receiver} must be among 'q', 'k', 'v'."
                )
            heads.append((layer, head, name))
    if not heads and not final:
        raise InputError("No receivers given.")
    return list(dict.fromkeys(heads)), final


def _check_head(model, head: Head, role: str) -> None:
    if not (
        isinstance(head, tuple | list)
        and len(head) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in head)
    ):
        raise InputError(f"A {role} head is a (layer, head) pair of ints, got {head!r}.")
    layer, index = head
    if not (0 <= layer < model.cfg.n_layers and 0 <= index < model.cfg.n_heads):
        raise InputError(
            f"{role} head {head} is out of range for {model.cfg.n_layers} layers of "
            f"{model.cfg.n_heads} heads."
        )


@torch.no_grad()
def _path_patch_values(
    model,
    clean_tokens,
    corrupted_tokens,
    sender_sets,
    receivers,
    metric,
    freeze_mlps,
    receiver_positions,
    batch_size,
) -> Tensor:
    """The metric after path patching each set of senders, `[len(sender_sets)]`."""
    heads, final = _parse_receivers(model, receivers)
    for senders in sender_sets:
        for sender in senders:
            _check_head(model, sender, "sender")
    if clean_tokens.shape != corrupted_tokens.shape:
        raise InputError(
            f"Clean tokens {tuple(clean_tokens.shape)} and corrupted tokens "
            f"{tuple(corrupted_tokens.shape)} must have the same shape."
        )
    metric = metric if isinstance(metric, DeclaredMetric) else DeclaredMetric(metric)
    n_layers = model.cfg.n_layers
    base = BaseRun.from_tokens(model, clean_tokens)
    batch, n_pos = base.tokens.shape
    full_metric = dataclasses.replace(metric, positions=None)
    results = evaluate_metric(full_metric, base.logits, batch, n_pos).repeat(len(sender_sets))
    last = n_layers if final else max(layer for layer, _, _ in heads)
    live = [i for i, senders in enumerate(sender_sets) if any(layer < last for layer, _ in senders)]
    if not live:
        return results
    frozen = _Frozen(model, base.tokens, corrupted_tokens, freeze_mlps)
    positions = None
    if receiver_positions is not None:
        outside = [p for p in receiver_positions if not -n_pos <= p < n_pos]
        if outside:
            raise InputError(
                f"receiver_positions {outside} are outside the {n_pos} positions of the tokens "
                f"(allowed: -{n_pos} .. {n_pos - 1})."
            )
        positions = torch.tensor(sorted({p % n_pos for p in receiver_positions}), dtype=torch.long)
    records = [{} for _ in live]
    step1 = [
        _step1_variant(model, sender_sets[i], heads, final, frozen, records[j])
        for j, i in enumerate(live)
    ]
    run_variants(
        model, base, step1, None, batch_size, stop_at_layer=n_layers if final else last + 1
    )
    step2 = [_step2_variant(model, record, positions) for record in records]
    results[live] = run_variants(model, base, step2, metric, batch_size)
    return results


class _Frozen:
    """Clean head outputs and MLP outputs to freeze to, and corrupted head outputs."""

    def __init__(self, model, clean_tokens, corrupted_tokens, freeze_mlps: bool) -> None:
        n_layers = model.cfg.n_layers
        self.z = [utils.get_act_name("z", layer) for layer in range(n_layers)]
        self.mlp = [
            utils.get_act_name("mlp_out", layer)
            for layer in range(n_layers)
            if freeze_mlps and utils.get_act_name("mlp_out", layer) in model.hook_dict
        ]
        _, self.clean = model.run_with_cache(
            clean_tokens,
            names_filter=self.z + self.mlp,
            return_type=None,
            return_cache_object=False,
        )
        _, self.corrupted = model.run_with_cache(
            corrupted_tokens, names_filter=self.z, return_type=None, return_cache_object=False
        )


def _step1_variant(model, senders, heads, final, frozen: _Frozen, record: dict) -> Variant:
    """Clean run, senders corrupted, all else frozen; records the receivers' inputs."""
    n_layers, start = model.cfg.n_layers, min(layer for layer, _ in senders)
    stop = n_layers if final else max(layer for layer, _, _ in heads) + 1
    edits = []
    for layer in range(start, stop):
        patched = [head for sender_layer, head in senders if sender_layer == layer]
        name = frozen.z[layer]
        edits.append(
            Edit(name, layer, _freeze(frozen.clean[name], frozen.corrupted[name], patched))
        )
        mlp = utils.get_act_name("mlp_out", layer)
        if mlp in frozen.clean:
            edits.append(Edit(mlp, layer, _freeze(frozen.clean[mlp], None, [])))
    for layer, head, name in heads:
        if layer > start:
            hook_name = utils.get_act_name(name, layer)
            edits.append(Edit(hook_name, layer, _record(record, (hook_name, layer), model, head)))
    if final:
        hook_name = utils.get_act_name("resid_post", n_layers - 1)
        edits.append(
            Edit(hook_name, n_layers - 1, _record(record, (hook_name, n_layers - 1), model, None))
        )
    return Variant(tuple(edits), 0)


def _freeze(clean: Tensor, corrupted: Tensor | None, patched: list[int]):
    def freeze(rows: Tensor, p0: int) -> None:
        rows.copy_(clean)
        if patched:
            rows[:, :, patched] = corrupted[:, :, patched]

    return freeze


def _record(record: dict, key: tuple[str, int], model, head: int | None):
    def save(rows: Tensor, p0: int) -> None:
        if head is None:
            record[key] = (None, rows.clone())
            return
        # Grouped-query attention: keys/values have fewer heads, shared by groups.
        slot = head * rows.shape[2] // model.cfg.n_heads
        previous = record.get(key, (None, None))[0] or []
        record[key] = (sorted({*previous, slot}), rows.clone())

    return save


def _step2_variant(model, record: dict, positions: Tensor | None) -> Variant:
    """Clean run with the receivers' inputs patched to what step 1 recorded."""
    edits = [
        Edit(name, layer, _put(value, slots, positions))
        for (name, layer), (slots, value) in record.items()
    ]
    first = 0 if positions is None else int(positions[0])
    return Variant(tuple(edits), first)


def _put(value: Tensor, slots: list[int] | None, positions: Tensor | None):
    def put(rows: Tensor, p0: int) -> None:
        where = slice(p0, None) if positions is None else positions
        target = slice(None) if positions is None else positions - p0
        if slots is None:
            rows[:, target] = value[:, where]
            return
        for slot in slots:
            rows[:, target, slot] = value[:, where, slot]

    return put
