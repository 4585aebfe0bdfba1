"""SAE feature attribution and ablation, through the project's intervention code.

Attribution is activation x gradient (the first-order estimate of what zeroing a
feature does to a metric, as in attribution patching): with the SAEs spliced in with
their error terms (so the model's output is unchanged), `attribution[..., i] =
f_i * d metric / d f_i`, read at each SAE's `hook_sae_acts_post`. Ablation zeroes
chosen features at `hook_sae_acts_post` with `lookingglass.interventions.ablation`'s
hooks; with the error term on, only the ablated features' decoder contributions change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.interventions.ablation import ablate
from lookingglass.interventions.attribution_patching import gradients
from lookingglass.sae.sae import SAE
from lookingglass.sae.splice import saes as saes_context


def _acts_name(sae: SAE) -> str:
    return f"{sae.cfg.hook_name_out or sae.cfg.hook_name}.hook_sae_acts_post"


def feature_attribution(
    model,
    tokens: Int[Tensor, "batch pos"],
    saes: SAE | Sequence[SAE],
    metric: Callable[[Tensor], Tensor],
    use_error_term: bool = True,
) -> tuple[float, dict[str, Float[Tensor, "batch pos d_sae"]], dict[str, Tensor]]:
    """The metric, and per SAE (keyed by its `...hook_sae_acts_post` name) the
    attribution `acts * grad` and the feature activations `acts`.

    `metric` maps the logits to a scalar tensor (e.g. a logit difference)."""
    saes = [saes] if isinstance(saes, SAE) else list(saes)
    names = [_acts_name(s) for s in saes]
    with saes_context(model, saes, use_error_term=use_error_term):
        value, acts, grads = gradients(model, tokens, metric, names)
    return value, {n: acts[n] * grads[n] for n in names}, acts


@contextmanager
def ablate_features(
    model,
    features: Mapping[SAE, Sequence[int]] | Sequence[tuple[SAE, Sequence[int]]],
    use_error_term: bool = True,
) -> Iterator:
    """Within the block the model runs with each SAE spliced in and its listed features
    zeroed (at every position)::

        with ablate_features(model, {sae: [12, 40]}):
            loss = model(tokens, return_type="loss")
    """
    pairs = list(features.items()) if isinstance(features, Mapping) else list(features)
    hooks = [(_acts_name(s), (slice(None), list(ids))) for s, ids in pairs]
    with (
        saes_context(model, [s for s, _ in pairs], use_error_term=use_error_term),
        ablate(model, hooks=hooks, method="zero"),
    ):
        yield model
