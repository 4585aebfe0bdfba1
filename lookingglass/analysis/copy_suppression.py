"""Find copy-suppression heads (McDougall et al. 2023) in any model: three kinds of
evidence per head, each a number a user can check.

* `in_context_direct_effect`: the head's direct effect on the logits of tokens that
  appear earlier in the context (a copy suppressor lowers them). For each destination
  q, the head's output is unembedded with the final norm's clean scale frozen, centred
  over the vocabulary (so a uniform shift counts as nothing), and read off at the tokens
  of source positions 1..q (the BOS left out); averaged over sources and destinations.
  Negative: the head pushes down what is already in context.
* `ov_suppression_fraction`: the OV circuit read through the *effective embedding*
  (the token embedding after block 0, which GPT-2's later heads read instead of the raw
  embedding): for a sample of tokens t, does `ln1(W_EE[t]) W_V W_O W_U` lower token t
  more than any other token? The paper: 84.7% of tokens for GPT-2 small L10H7.
* `attention_to_predicted`: how much the head attends to earlier copies of the token
  the residual stream entering its layer predicts (the QK side; the criterion of
  `analysis.heads.copy_suppression_scores`, computed for chosen heads only).

`survey_copy_suppression` computes the first for every head and the other two for the
strongest candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass import utils
from lookingglass.errors import InputError


@torch.no_grad()
def effective_embedding(model, chunk: int = 4096) -> Float[Tensor, "d_vocab d_model"]:
    """The residual stream after block 0 for each token alone (a one-token sequence, so
    block 0's attention attends only to the token itself): `W_E + attn_0 + mlp_0`."""
    rows = []
    for start in range(0, model.cfg.d_vocab, chunk):
        resid = model.W_E[start : start + chunk, None, :]  # [chunk, 1 pos, d_model]
        rows.append(model.blocks[0](resid)[:, 0].float())
    return torch.cat(rows)


@torch.no_grad()
def ov_suppression_fraction(
    model,
    n_tokens: int = 1024,
    seed: int = 0,
    W_EE: Tensor | None = None,
    heads: list[tuple[int, int]] | None = None,
) -> Float[Tensor, "n_layers n_heads"]:
    """Per head, the fraction of `n_tokens` tokens (drawn uniformly from the vocabulary
    with `seed`) whose own logit the head's OV circuit lowers most: `t` is the argmin of
    `ln1_l(W_EE[t]) @ W_V[l, h] @ W_O[l, h] @ W_U`. Layer 0 reads the raw embedding.
    Chance level is 1 / d_vocab. With `heads`, only those are computed (the rest NaN)."""
    if model.cfg.d_vocab != model.cfg.d_vocab_out:
        raise InputError("The OV suppression fraction needs d_vocab == d_vocab_out.")
    W_EE = effective_embedding(model) if W_EE is None else W_EE
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randperm(model.cfg.d_vocab, generator=generator)[:n_tokens]
    sample = sample.to(model.W_E.device)
    W_U = model.W_U.float()
    every = [(lay, h) for lay in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    chosen = set(every if heads is None else heads)
    scores = torch.full((model.cfg.n_layers, model.cfg.n_heads), float("nan"))
    for layer in sorted({lay for lay, _ in chosen}):
        source = model.W_E[sample] if layer == 0 else W_EE[sample].to(model.W_E.dtype)
        normed = model.blocks[layer].ln1(source[:, None, :])[:, 0].float()
        for head in sorted(h for lay, h in chosen if lay == layer):
            # Through d_head: [n, d_head] @ [d_head, d_vocab] is the cheap order.
            value = normed @ model.W_V[layer, head].float()
            most_lowered = (value @ (model.W_O[layer, head].float() @ W_U)).argmin(dim=-1)
            scores[layer, head] = (most_lowered == sample).float().mean().cpu()
    return scores


@torch.no_grad()
def in_context_direct_effect(
    model, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "n_layers n_heads"]:
    """Per head, the mean direct effect of its output at each destination on the
    (vocabulary-centred) logits of the tokens at source positions 1..q, in logits.
    See the module doc."""
    tokens = tokens if tokens.dim() == 2 else tokens[None]
    n_layers, n_pos = model.cfg.n_layers, tokens.shape[1]
    z_names = [utils.get_act_name("z", layer) for layer in range(n_layers)]
    scale_names = [n for n in ("ln_final.hook_scale",) if n in model.hook_dict]
    _, cache = model.run_with_cache(
        tokens, names_filter=[*z_names, *scale_names], return_cache_object=False
    )
    scale = cache[scale_names[0]].float() if scale_names else torch.ones(*tokens.shape, 1)
    W_U = model.W_U.float()
    W_U = W_U - W_U.mean(dim=-1, keepdim=True)  # centred: a uniform shift counts as 0
    context = W_U[:, tokens].permute(1, 0, 2)  # [batch, d_model, k]
    sources = torch.ones(n_pos, n_pos, dtype=torch.bool, device=tokens.device).tril()
    sources[:, 0] = False
    sources = sources.float()
    effects = torch.zeros(n_layers, model.cfg.n_heads)
    for layer, name in enumerate(z_names):
        result = torch.einsum("bqhe,hed->bhqd", cache[name].float(), model.W_O[layer].float())
        dla = torch.einsum("bhqd,bdk->bhqk", result / scale[:, None], context)
        per_query = (dla * sources).sum(-1)[..., 1:] / sources.sum(-1)[1:]  # [b, h, q >= 1]
        effects[layer] = per_query.mean(dim=(0, 2)).cpu()
    return effects


@dataclass
class CopySuppressionSurvey:
    """The three kinds of evidence, `[n_layers, n_heads]` each (module doc)."""

    in_context_direct_effect: Float[Tensor, "n_layers n_heads"]
    ov_suppression_fraction: Float[Tensor, "n_layers n_heads"]
    attention_to_predicted: Float[Tensor, "n_layers n_heads"]

    def ranked(self, top: int = 10) -> list[tuple[int, int]]:
        """Heads by most negative in-context direct effect."""
        flat = self.in_context_direct_effect.flatten().argsort()[:top]
        n_heads = self.in_context_direct_effect.shape[1]
        return [(int(i) // n_heads, int(i) % n_heads) for i in flat]

    def row(self, head: tuple[int, int]) -> dict[str, float]:
        """One head's three numbers as plain floats."""
        return {
            "in_context_direct_effect": float(self.in_context_direct_effect[head]),
            "ov_suppression_fraction": float(self.ov_suppression_fraction[head]),
            "attention_to_predicted": float(self.attention_to_predicted[head]),
        }


@torch.no_grad()
def attention_to_predicted(
    model, tokens: Int[Tensor, "batch pos"], heads: list[tuple[int, int]]
) -> Float[Tensor, "n_layers n_heads"]:
    """`analysis.heads.copy_suppression_scores`'s attention criterion for the given
    heads only (the rest NaN), reading the logit lens of just their layers: the mean
    attention from each query to earlier occurrences (positions 1..q-1) of the token the
    residual stream entering the layer predicts, over queries that have one."""
    tokens = tokens if tokens.dim() == 2 else tokens[None]
    layers = sorted({layer for layer, _ in heads})
    names = [f"blocks.{lay}.{n}" for lay in layers for n in ("hook_resid_pre", "attn.hook_pattern")]
    _, cache = model.run_with_cache(tokens, names_filter=names, return_cache_object=False)
    n = tokens.shape[1]
    earlier = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril(-1)
    earlier[:, 0] = False
    scores = torch.full((model.cfg.n_layers, model.cfg.n_heads), float("nan"))
    for layer in layers:
        lens = model.ln_final(cache[f"blocks.{layer}.hook_resid_pre"]) @ model.W_U + model.b_U
        occurs = (tokens[:, None, :] == lens.argmax(-1)[:, :, None]) & earlier  # [b, q, k]
        has_one = occurs.any(-1)  # [b, q]
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"].float()  # [b, head, q, k]
        mass = (pattern * occurs[:, None]).sum(-1)  # [b, head, q]
        per_head = (mass * has_one[:, None]).sum((0, 2)) / has_one.sum()
        for lay, head in heads:
            if lay == layer:
                scores[lay, head] = per_head[head].cpu()
    return scores


def survey_copy_suppression(
    model, tokens: Int[Tensor, "batch pos"], top: int = 10, n_tokens: int = 1024, seed: int = 0
) -> CopySuppressionSurvey:
    """The in-context direct effect of every head on `tokens` (natural text, where
    predicted tokens recur), and the OV and attention evidence for the `top` heads with
    the most negative one (the rest NaN): the OV circuit over `n_tokens` vocabulary
    tokens costs a d_vocab-wide product per head."""
    effect = in_context_direct_effect(model, tokens)
    n_heads = effect.shape[1]
    chosen = [(int(i) // n_heads, int(i) % n_heads) for i in effect.flatten().argsort()[:top]]
    return CopySuppressionSurvey(
        in_context_direct_effect=effect,
        ov_suppression_fraction=ov_suppression_fraction(model, n_tokens, seed, heads=chosen),
        attention_to_predicted=attention_to_predicted(model, tokens, chosen),
    )
