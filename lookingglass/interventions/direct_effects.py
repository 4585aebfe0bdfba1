"""The direct-effect survey: every head's direct path to the logits ablated, in one pass.

A head's direct path is its output's contribution to the final residual stream, not
what later layers read from it. Ablating only that path changes the logits through the
final norm and unembedding alone, so every head's effect follows from one cached forward
pass: for each head, subtract its output from the cached final residual stream and
unembed. With the final LayerNorm's scale frozen at its cached clean value (the usual
approximation, "freezing the final LayerNorm scale") the logits are linear in each
head's output, i.e. direct logit attribution; without freezing, the result equals path
patching from each head to the final residual stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass import utils
from lookingglass.errors import InputError
from lookingglass.interventions._variants import (
    DEFAULT_ROW_BUDGET,
    DeclaredMetric,
    computed_positions,
    evaluate_metric,
)
from lookingglass.interventions.ablation import TokenData, dataset_activations


@torch.no_grad()
def head_direct_effects(
    model,
    tokens: Int[Tensor, "batch pos"],
    metric: Literal["loss"] | Callable[[Tensor], Tensor | float] | DeclaredMetric = "loss",
    method: Literal["zero", "mean", "corrupted"] = "zero",
    data: TokenData | None = None,
    corrupted_tokens: Int[Tensor, "batch pos"] | None = None,
    freeze_ln_scale: bool = True,
    batch_size: int | None = None,
) -> Float[Tensor, "n_layers n_heads"]:
    """The change in `metric` when each head's *direct path* to the logits is ablated:
    its output is taken out of the final residual stream only, not out of what later
    layers read. `[n_layers, n_heads]`, ablated minus clean.

    All heads come from one forward pass: head h of layer l writes
    `result = z[:, :, h] @ W_O[l, h]`; its ablated final residual is
    `resid_final - (result - reference)`, with reference 0 ("zero"), its mean over
    `data` ("mean") or its value on `corrupted_tokens` ("corrupted"). With
    `freeze_ln_scale=True` (the usual approximation, "freezing the final LayerNorm
    scale") the final norm divides by the clean run's cached scale `ln_final.hook_scale`,
    which makes the logits linear in each head's output (direct logit attribution);
    `False` recomputes the norm on the ablated residual, which equals path patching
    from each head to the final residual stream.

    Args:
        metric: "loss" (mean next-token loss on `tokens`) or `fn(logits) -> scalar`.
        batch_size: heads evaluated per pass through the final norm and unembedding.
    """
    tokens = tokens if tokens.dim() == 2 else tokens[None]
    n_layers = model.cfg.n_layers
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    z_names = [utils.get_act_name("z", layer) for layer in range(n_layers)]
    scale_names = [n for n in ("ln_final.hook_scale",) if n in model.hook_dict]
    _, cache = model.run_with_cache(
        tokens, names_filter=[*z_names, final, *scale_names], return_cache_object=False
    )
    W_O = model.W_O  # each head's output, [n_layers, n_heads, batch, pos, d_model]:
    result = torch.stack(
        [torch.einsum("bphe,hed->hbpd", cache[n], W_O[l]) for l, n in enumerate(z_names)]
    )
    reference = _direct_reference(model, method, z_names, W_O, data, corrupted_tokens, result)
    if metric == "loss":
        metric = DeclaredMetric(lambda logits: utils.lm_cross_entropy_loss(logits, tokens))
    elif not isinstance(metric, DeclaredMetric):
        metric = DeclaredMetric(metric)
    resid, delta = cache[final], (result - reference).flatten(0, 1)  # delta: [L * H, b, p, d]
    scale = cache[scale_names[0]] if scale_names and freeze_ln_scale else None
    batch, n_pos = resid.shape[:2]
    positions = computed_positions(metric, n_pos)
    if positions is not None:  # the metric reads only these positions: unembed only them
        resid, delta = resid[:, positions], delta[:, :, positions]
        scale = None if scale is None else scale[:, positions]
    clean_value = evaluate_metric(metric, _unembed(model, resid[None], scale), batch, n_pos)
    per_pass = batch_size or max(1, DEFAULT_ROW_BUDGET // (batch * resid.shape[1]))
    values = [
        evaluate_metric(metric, _unembed(model, resid[None] - chunk, scale), batch, n_pos)
        for chunk in delta.split(per_pass)
    ]
    return (torch.cat(values) - clean_value).reshape(n_layers, -1).to(cache[final].device)


def _direct_reference(
    model, method, z_names, W_O, data, corrupted_tokens, result
) -> Tensor | float:
    if method == "zero":
        return 0.0
    if method == "mean":
        if data is None:
            raise InputError("method='mean' needs data=: token ids to average head outputs over.")
        means = dataset_activations(model, data, z_names, mean=True)
        n_pos = result.shape[3]
        if means[z_names[0]].shape[0] < n_pos:
            raise InputError(f"The mean data has fewer positions than the {n_pos} of tokens.")
        return torch.stack(
            [
                torch.einsum("phe,hed->hpd", means[n][:n_pos], W_O[l])[:, None]
                for l, n in enumerate(z_names)
            ]
        )
    if method == "corrupted":
        if corrupted_tokens is None:
            raise InputError("method='corrupted' needs corrupted_tokens=.")
        _, cache = model.run_with_cache(
            corrupted_tokens, names_filter=z_names, return_type=None, return_cache_object=False
        )
        return torch.stack(
            [torch.einsum("bphe,hed->hbpd", cache[n], W_O[l]) for l, n in enumerate(z_names)]
        )
    raise InputError(f"method must be 'zero', 'mean' or 'corrupted', got {method!r}.")


def _unembed(model, resid: Float[Tensor, "n batch pos d_model"], scale: Tensor | None) -> Tensor:
    """Final norm (dividing by the frozen `scale` if given) and unembedding of each of `n`
    residual streams; returns `[n * batch, pos, d_vocab]`."""
    flat = resid.flatten(0, 1)
    if scale is None:
        return model(flat, start_at_layer=model.cfg.n_layers)
    frozen = scale.repeat(resid.shape[0], 1, 1)
    with model.hooks(fwd_hooks=[("ln_final.hook_scale", lambda s, hook: frozen.to(s.dtype))]):
        return model(flat, start_at_layer=model.cfg.n_layers)
