"""Indirect-object identification: the logit difference IO - S and who writes it.

For each prompt (see `ioi_prompts`) the model's logit difference at the last position,

    logit_diff = logits[-1, IO] - logits[-1, S],

and its direct logit attribution (DLA) to every component that writes to the residual
stream: each attention head, each MLP layer, the token (and position) embedding and the
accumulated output biases (`ActivationCache.get_full_resid_decomposition`), plus the
unembedding's own bias b_U. Each component's write at the last position is divided by
the final norm's cached scale (as `ActivationCache.apply_ln_to_stack` does,
TransformerLens's convention) and projected on the IO - S unembedding direction
(`logit_attrs`). With the norm's weights folded into
W_U and b_U (the default processing) the components sum to the logit difference exactly.

Prompts are run in groups of equal token length, so no padding enters any number, and
only the last position's activations are cached.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.errors import InputError

_CACHED = ("hook_z", "hook_mlp_out", "hook_embed", "hook_pos_embed")


@dataclass
class IOIAttribution:
    """Logit differences and their direct attribution, one row per prompt.

    Attributes:
        io_tokens, s_tokens: `[prompt]` token ids of " IO" and " S".
        logit_diff: `[prompt]` the model's logit(IO) - logit(S) at the last position.
        head_dla: `[prompt, n_layers, n_heads]` each head's direct attribution to it.
        other_dla: `[prompt, component]` the other components (labels in `other_labels`:
            "{l}_mlp_out", "embed", "bias", ..., and "b_U": b_U[IO] - b_U[S]);
            `head_dla` and `other_dla` of a prompt sum to its `logit_diff`.
        other_labels: names of the `other_dla` columns.
    """

    io_tokens: Int[Tensor, " prompt"]
    s_tokens: Int[Tensor, " prompt"]
    logit_diff: Float[Tensor, " prompt"]
    head_dla: Float[Tensor, "prompt n_layers n_heads"]
    other_dla: Float[Tensor, "prompt component"]
    other_labels: list[str]

    @property
    def accuracy(self) -> float:
        """The fraction of prompts whose IO logit is above the S logit."""
        return float((self.logit_diff > 0).float().mean())


@torch.no_grad()
def ioi_attribution(
    model, texts: Sequence[str], io_names: Sequence[str], s_names: Sequence[str]
) -> IOIAttribution:
    """Run the prompts and attribute each one's IO - S logit difference to every component.

    Args:
        model: a `HookedTransformer` with a tokenizer.
        texts: the prompts (each ends right before the indirect object).
        io_names, s_names: the indirect object and the subject of each prompt, without
            the leading space; " " + name must be a single token.

    Returns:
        An `IOIAttribution`, rows in the order of `texts`.
    """
    if not len(texts) == len(io_names) == len(s_names) or not texts:
        raise InputError("Give one IO name and one S name per prompt, and at least one prompt.")
    io_tokens = torch.tensor([model.to_single_token(" " + n) for n in io_names])
    s_tokens = torch.tensor([model.to_single_token(" " + n) for n in s_names])
    by_length: dict[int, list[int]] = defaultdict(list)
    rows = [model.to_tokens(text)[0] for text in texts]
    for index, row in enumerate(rows):
        by_length[len(row)].append(index)

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    logit_diff = torch.zeros(len(texts))
    head_dla = torch.zeros(len(texts), n_layers, n_heads)
    other_dla: Tensor | None = None
    labels: list[str] = []
    for indices in by_length.values():
        tokens = torch.stack([rows[i] for i in indices])
        io, s = io_tokens[indices].to(tokens.device), s_tokens[indices].to(tokens.device)
        logits, cache = model.run_with_cache(  # only the last position is attributed
            tokens,
            names_filter=lambda name: name.endswith(_CACHED) or name == "ln_final.hook_scale",
            pos_slice=-1,
        )
        last = logits[:, -1].float()
        logit_diff[indices] = (last.gather(1, io[:, None]) - last.gather(1, s[:, None]))[:, 0].cpu()
        stack, labels = cache.get_full_resid_decomposition(
            layer=-1, expand_neurons=False, pos_slice=-1, return_labels=True
        )
        attrs = cache.logit_attrs(stack, io, s, pos_slice=-1)  # [component, batch]
        b_u = model.b_U[io] - model.b_U[s]  # the unembedding's bias, outside the stream
        attrs = torch.cat([attrs, b_u[None].to(attrs.dtype)]).float().cpu()
        n_head_rows = n_layers * n_heads
        head_dla[indices] = attrs[:n_head_rows].T.reshape(len(indices), n_layers, n_heads)
        if other_dla is None:
            other_dla = torch.zeros(len(texts), attrs.shape[0] - n_head_rows)
        other_dla[indices] = attrs[n_head_rows:].T
    assert other_dla is not None
    return IOIAttribution(
        io_tokens, s_tokens, logit_diff, head_dla, other_dla, [*labels[n_layers * n_heads :], "b_U"]
    )
