"""The logit lens: read the residual stream after each layer as if it were the last.

    logits[layer] = ln_final(accumulated_resid[layer]) @ W_U + b_U

Each entry of `cache.accumulated_resid()` is normalized with the final norm (its own
statistics, the final norm's weights) and unembedded, so the last entry ("final_post")
is exactly the model's output. From those logits `logit_lens` keeps only small
summaries, layer by layer, so a `[layer, batch, pos, d_vocab]` tensor is never stored:
the top-k tokens and their probabilities, the entropy, the KL divergence from the final
distribution, and the probability and rank of target tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.utils import Slice, SliceInput


@dataclass
class LogitLensResult:
    """What the logit lens sees at each layer (`labels[i]` names layer index i).

    All tensors are `[layer, batch, pos, ...]` (batch is 1 for a cache without a batch
    dimension). Probabilities are softmaxes of the lens logits; entropies and KL in nats.
    `kl_to_final` is KL(final || layer) = sum_v p_final(v) (log p_final(v) - log p_layer(v)),
    0 at the last layer. `target_ranks` is the number of tokens the lens ranks strictly
    above the target (0 = top); the target fields are None without targets.
    """

    labels: list[str]
    top_tokens: Int[Tensor, "layer batch pos k"]
    top_probs: Float[Tensor, "layer batch pos k"]
    entropy: Float[Tensor, "layer batch pos"]
    kl_to_final: Float[Tensor, "layer batch pos"]
    target_probs: Float[Tensor, "layer batch pos"] | None = None
    target_ranks: Int[Tensor, "layer batch pos"] | None = None

    def table(self, model=None, batch: int = 0, pos: int = -1) -> str:
        """A plain-text table of one position: a row per layer with the top tokens (as
        strings if `model` has a tokenizer) and the target's probability and rank."""
        rows = []
        for i, label in enumerate(self.labels):
            ids = self.top_tokens[i, batch, pos].tolist()
            probs = self.top_probs[i, batch, pos].tolist()
            names = [_token_name(model, t) for t in ids]
            cells = "  ".join(f"{n!r} {p:.1%}" for n, p in zip(names, probs, strict=True))
            target = ""
            if self.target_probs is not None and self.target_ranks is not None:
                p, r = (
                    self.target_probs[i, batch, pos].item(),
                    self.target_ranks[i, batch, pos].item(),
                )
                target = f"  | target {p:.1%} rank {r}"
            rows.append(f"{label:>12}  H={self.entropy[i, batch, pos].item():.2f}  {cells}{target}")
        return "\n".join(rows)


@torch.no_grad()
def logit_lens(
    model,
    cache,
    target_tokens: int | str | Int[Tensor, " batch"] | Int[Tensor, "batch pos"] | None = None,
    top_k: int = 5,
    incl_mid: bool = False,
    pos_slice: SliceInput | Slice = None,
) -> LogitLensResult:
    """Apply the logit lens to every layer of a cached run.

    Args:
        model: the `HookedTransformer` the cache came from.
        cache: an `ActivationCache` holding resid_pre of every layer and the last
            resid_post (and resid_mid with `incl_mid`).
        target_tokens: a token (id or single-token string) to track at every position, a
            `[batch]` tensor (one per row), or a `[batch, pos]` tensor (one per position,
            after `pos_slice`), e.g. `tokens[:, 1:]` with `pos_slice=slice(0, -1)` for
            the next token.
        top_k: how many top tokens to keep.
        incl_mid: also read resid_mid of each layer (after attention, before the MLP).
        pos_slice: positions to read (an int keeps a length-1 position dim).

    Returns:
        A `LogitLensResult`; its labels are "0_pre", ("0_mid",) ..., "final_post".
    """
    resid, labels = cache.accumulated_resid(
        incl_mid=incl_mid, apply_ln=True, pos_slice=Slice.unwrap(pos_slice), return_labels=True
    )
    if not cache.has_batch_dim:
        resid = resid[:, None]
    batch, n_pos = resid.shape[1:3]
    targets = None if target_tokens is None else _targets(model, target_tokens, batch, n_pos)
    final_log_probs = _log_probs(model, resid[-1])
    summaries = [_summarize(_log_probs(model, r), final_log_probs, targets, top_k) for r in resid]
    columns = [torch.stack(column) for column in zip(*summaries, strict=True)]
    top_probs, top_tokens, entropy, kl = columns[:4]
    target_probs, target_ranks = (columns[4], columns[5]) if targets is not None else (None, None)
    return LogitLensResult(labels, top_tokens, top_probs, entropy, kl, target_probs, target_ranks)


def _log_probs(
    model, normalized: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "batch pos d_vocab"]:
    logits = normalized @ model.W_U + model.b_U
    return logits.float().log_softmax(dim=-1)


def _summarize(
    log_probs: Tensor, final_log_probs: Tensor, targets: Tensor | None, top_k: int
) -> tuple:
    probs = log_probs.exp()
    top_probs, top_tokens = probs.topk(top_k, dim=-1)
    entropy = -(probs * log_probs).sum(dim=-1)
    kl = (final_log_probs.exp() * (final_log_probs - log_probs)).sum(dim=-1)
    if targets is None:
        return top_probs, top_tokens, entropy, kl
    target_log_probs = log_probs.gather(-1, targets[..., None])
    ranks = (log_probs > target_log_probs).sum(dim=-1)
    return top_probs, top_tokens, entropy, kl, target_log_probs[..., 0].exp(), ranks


def _targets(model, target_tokens, batch: int, n_pos: int) -> Int[Tensor, "batch pos"]:
    device = model.W_U.device
    if isinstance(target_tokens, str):
        target_tokens = model.to_single_token(target_tokens)
    targets = torch.as_tensor(target_tokens, device=device, dtype=torch.long)
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.ndim > 2:
        raise InputError(
            f"target_tokens must be a token, [batch] or [batch, pos]; got {tuple(targets.shape)}."
        )
    try:
        return targets.expand(batch, n_pos)
    except RuntimeError as error:
        raise InputError(
            f"target_tokens of shape {tuple(targets.shape)} do not fit the lens's "
            f"[batch={batch}, pos={n_pos}] (after pos_slice)."
        ) from error


def _token_name(model, token: int) -> str | int:
    if model is None or getattr(model, "tokenizer", None) is None:
        return token
    return model.to_single_str_token(token)
