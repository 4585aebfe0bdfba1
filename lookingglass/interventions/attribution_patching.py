"""Attribution patching (Nanda 2023): activation patching to first order, every
activation at once, from one forward and one backward pass.

Patching activation `a` of a run to its value `a'` in another run changes the metric by

    metric(run with a := a') - metric(run)  ~=  (a' - a) . d metric / d a

(the gradient taken on the run being patched), summed over what a patch replaces
together. The `get_attr_patch_*` functions mirror `get_act_patch_*` in arguments and
shapes: `get_attr_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)`
estimates `get_act_patch_resid_pre(...) - metric(corrupted logits)`, i.e.
`(clean_act - corrupted_act) . grad` at the corrupted run, Nanda's setting. Swapping the
roles, `(model, clean_tokens, corrupted_cache, metric)`, gives
`(corrupted_act - clean_act) . d metric / d act` at the clean run: the estimated effect
of corrupting each activation of the clean run. The estimate is exact when the metric is
linear in the activation (e.g. a logit difference and a last-layer head output with no
final norm) and good when the two runs are close.

`get_attr_patch_head_edges` attributes head -> head edges through the residual stream:
the sender's output difference dotted with the gradient at the receiver's input (its
query, key or value input, through the receiver's layer norm), the first-order estimate
of path patching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass import utils
from lookingglass.errors import InputError
from lookingglass.interventions._variants import DeclaredMetric

Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], Tensor] | DeclaredMetric


def gradients(
    model, tokens: Int[Tensor, "batch pos"], metric: Metric, names: Sequence[str]
) -> tuple[float, dict[str, Tensor], dict[str, Tensor]]:
    """`metric(model(tokens))` and the activations and gradients at hooks `names`.

    Gradients come from `torch.autograd.grad`, so parameters' `.grad` are left alone, and
    they exist also when the parameters are frozen.
    """
    acts: dict[str, Tensor] = {}

    def keep(activation: Tensor, hook) -> None:
        acts[hook.name] = activation

    def leaf(embedding: Tensor, hook) -> Tensor:
        return embedding.detach().requires_grad_(True)

    with (
        torch.enable_grad(),
        model.hooks(fwd_hooks=[("hook_embed", leaf)] + [(n, keep) for n in names]),
    ):
        value = _metric_value(metric, model(tokens))
        grads = torch.autograd.grad(value, [acts[n] for n in names], allow_unused=True)
    return (
        value.item(),
        {n: acts[n].detach() for n in names},
        {
            n: torch.zeros_like(acts[n]) if g is None else g
            for n, g in zip(names, grads, strict=True)
        },
    )


def _metric_value(metric: Metric, logits: Tensor) -> Tensor:
    if isinstance(metric, DeclaredMetric):
        value = metric.fn(logits[None])[0] if metric.batched else metric.fn(logits)
    else:
        value = metric(logits)
    if not isinstance(value, Tensor) or value.numel() != 1:
        shown = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)[:60]
        raise InputError(
            "Attribution patching needs a patching_metric returning a one-element tensor "
            f"computed from the logits (so it has a gradient), got {shown}."
        )
    return value.reshape(())


def attribution_patch(
    model,
    corrupted_tokens: Int[Tensor, "batch pos"],
    clean_cache,
    patching_metric: Metric,
    activation_name: str,
) -> Tensor:
    """`(clean - corrupted) * d metric / d activation` at the corrupted run, summed over the
    batch, per layer: `[n_layers, *activation_shape_without_batch]`. Sum further over
    the dimensions a patch replaces together (see the `get_attr_patch_*` functions)."""
    names = [utils.get_act_name(activation_name, layer) for layer in range(model.cfg.n_layers)]
    _, acts, grads = gradients(model, corrupted_tokens, patching_metric, names)
    for n in names:
        _check_same_shape(clean_cache, n, acts[n])
    return torch.stack([((clean_cache[n] - acts[n]) * grads[n]).sum(0) for n in names])


def _check_same_shape(clean_cache, name: str, corrupted: Tensor) -> None:
    """The clean activation exists and is shaped as the corrupted run's (batch 1 broadcasts)."""
    try:
        clean = clean_cache[name]
    except KeyError:
        raise InputError(
            f"clean_cache has no activation {name!r}: cache the clean run with this model."
        ) from None
    if clean.shape[1:] != corrupted.shape[1:] or clean.shape[0] not in (1, corrupted.shape[0]):
        raise InputError(
            f"clean_cache[{name!r}] has shape {tuple(clean.shape)}, but the corrupted run's is "
            f"{tuple(corrupted.shape)}: the clean cache must come from this model, on prompts "
            "of the corrupted tokens' length and batch size."
        )


def _specialized(name: str, activation_name: str, sum_dims: tuple[int, ...], shape: str):
    def attr(model, corrupted_tokens, clean_cache, patching_metric):
        per_element = attribution_patch(
            model, corrupted_tokens, clean_cache, patching_metric, activation_name
        )
        return per_element.sum(dim=sum_dims)

    attr.__name__ = attr.__qualname__ = name
    attr.__doc__ = f"""Attribution-patching estimate of `{name.replace("attr", "act")}`
    minus the corrupted run's metric, `{shape}` (see the module doc)."""
    return attr


# Activations are stacked [n_layers, ...]: [L, pos, d] for the residual stream and layer
# outputs, [L, pos, head, d_head] for head vectors, [L, head, dest, src] for patterns.
get_attr_patch_resid_pre = _specialized(
    "get_attr_patch_resid_pre", "resid_pre", (-1,), "[n_layers, pos]"
)
get_attr_patch_resid_mid = _specialized(
    "get_attr_patch_resid_mid", "resid_mid", (-1,), "[n_layers, pos]"
)
get_attr_patch_attn_out = _specialized(
    "get_attr_patch_attn_out", "attn_out", (-1,), "[n_layers, pos]"
)
get_attr_patch_mlp_out = _specialized("get_attr_patch_mlp_out", "mlp_out", (-1,), "[n_layers, pos]")
get_attr_patch_attn_head_out_by_pos = _specialized(
    "get_attr_patch_attn_head_out_by_pos", "z", (-1,), "[n_layers, pos, n_heads]"
)
get_attr_patch_attn_head_q_by_pos = _specialized(
    "get_attr_patch_attn_head_q_by_pos", "q", (-1,), "[n_layers, pos, n_heads]"
)
get_attr_patch_attn_head_k_by_pos = _specialized(
    "get_attr_patch_attn_head_k_by_pos", "k", (-1,), "[n_layers, pos, n_heads]"
)
get_attr_patch_attn_head_v_by_pos = _specialized(
    "get_attr_patch_attn_head_v_by_pos", "v", (-1,), "[n_layers, pos, n_heads]"
)
get_attr_patch_attn_head_pattern_by_pos = _specialized(
    "get_attr_patch_attn_head_pattern_by_pos", "pattern", (-1,), "[n_layers, n_heads, dest_pos]"
)
get_attr_patch_attn_head_out_all_pos = _specialized(
    "get_attr_patch_attn_head_out_all_pos", "z", (1, -1), "[n_layers, n_heads]"
)
get_attr_patch_attn_head_q_all_pos = _specialized(
    "get_attr_patch_attn_head_q_all_pos", "q", (1, -1), "[n_layers, n_heads]"
)
get_attr_patch_attn_head_k_all_pos = _specialized(
    "get_attr_patch_attn_head_k_all_pos", "k", (1, -1), "[n_layers, n_heads]"
)
get_attr_patch_attn_head_v_all_pos = _specialized(
    "get_attr_patch_attn_head_v_all_pos", "v", (1, -1), "[n_layers, n_heads]"
)
get_attr_patch_attn_head_pattern_all_pos = _specialized(
    "get_attr_patch_attn_head_pattern_all_pos", "pattern", (-2, -1), "[n_layers, n_heads]"
)


# ---------------------------------------------------------------------------- edges
@dataclass(frozen=True)
class EdgeAttribution:
    """Attribution of every head -> head edge and head -> final-residual edge.

    `head_to_head[ls, hs, lr, hr, c]`: sender head (ls, hs) to the query (c=0), key (1) or
    value (2) input of receiver head (lr, hr); zero unless ls < lr. For grouped-query
    attention the key/value entries are per key/value head (the first n_kv_heads).
    `head_to_final[ls, hs]`: sender head to the final residual stream (the logits).
    """

    head_to_head: Float[Tensor, "n_layers n_heads n_layers n_heads 3"]
    head_to_final: Float[Tensor, "n_layers n_heads"]


def get_attr_patch_head_edges(
    model, corrupted_tokens: Int[Tensor, "batch pos"], clean_cache, patching_metric: Metric
) -> EdgeAttribution:
    """Edge attribution: for sender s and receiver input r,
    `sum over batch, pos, d_model of (clean - corrupted output of s) . d metric / d r_in`,
    where `r_in` is the residual stream as receiver r reads it (the gradient through r's
    own query/key/value weights and its layer norm only). Estimates path patching s -> r
    into the corrupted run minus its metric (see `path_patching`, with roles swapped)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    z = [utils.get_act_name("z", layer) for layer in range(n_layers)]
    qkv = [utils.get_act_name(c, layer) for layer in range(n_layers) for c in "qkv"]
    resid = [utils.get_act_name("resid_pre", layer) for layer in range(n_layers)]
    final = utils.get_act_name("resid_post", n_layers - 1)
    _, acts, grads = gradients(model, corrupted_tokens, patching_metric, z + qkv + resid + [final])
    W_O = model.W_O.detach()
    delta = torch.stack(
        [torch.einsum("bphe,hed->hbpd", clean_cache[n] - acts[n], W_O[l]) for l, n in enumerate(z)]
    )  # [n_layers, n_heads, batch, pos, d_model]
    head_to_head = delta.new_zeros(n_layers, n_heads, n_layers, n_heads, 3)
    for layer in range(1, n_layers):
        inputs = _receiver_input_gradients(model, layer, acts[resid[layer]], grads)
        # [sender layer, sender head, receiver head, q/k/v]
        head_to_head[:layer, :, layer] = torch.einsum("shbpd,crbpd->shrc", delta[:layer], inputs)
    head_to_final = torch.einsum("shbpd,bpd->sh", delta, grads[final])
    return EdgeAttribution(head_to_head, head_to_final)


def _receiver_input_gradients(
    model, layer: int, resid_pre: Tensor, grads: dict[str, Tensor]
) -> Tensor:
    """d metric / d resid_pre through each head's q, k and v input only:
    `[3, n_heads, batch, pos, d_model]`.

    Replays block `layer` on 3 * n_heads copies of the residual stream; copy (c, h) gets
    the gradient of component c of head h only, so one backward pass separates them."""
    n_heads, batch = model.cfg.n_heads, resid_pre.shape[0]
    copies = 3 * n_heads
    outputs: dict[str, Tensor] = {}

    def keep(activation: Tensor, hook) -> None:
        outputs[hook.name] = activation

    names = [utils.get_act_name(c, layer) for c in "qkv"]
    with torch.enable_grad():
        x = resid_pre.detach().repeat(copies, 1, 1).requires_grad_(True)
        with model.hooks(fwd_hooks=[(n, keep) for n in names]):
            model(x, start_at_layer=layer, stop_at_layer=layer + 1)
        grad_outputs = []
        for c, name in enumerate(names):
            out = outputs[name].reshape(3, n_heads, batch, *outputs[name].shape[1:])
            selected = torch.zeros_like(out)
            for h in range(min(n_heads, out.shape[-2])):
                selected[c, h, :, :, h] = grads[name][:, :, h]
            grad_outputs.append(selected.reshape(outputs[name].shape))
        (grad,) = torch.autograd.grad([outputs[n] for n in names], [x], grad_outputs)
    return grad.view(3, n_heads, batch, *resid_pre.shape[1:])
