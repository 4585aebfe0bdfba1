"""Language-model losses, sampling and logit tables with TransformerLens's names and
meanings (`transformer_lens.utilities.lm_utils`, `logits_utils`)."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lookingglass.errors import InputError


def lm_cross_entropy_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | Bool[Tensor, "batch pos"] | None = None,
    per_token: bool = False,
) -> Float[Tensor, ""] | Float[Tensor, "batch pos_minus_1"]:
    """Next-token cross-entropy: position p predicts token p+1.

    With an attention mask, positions whose input or target is padding are left out (0
    in the per-token output, and not counted in the mean). Same definition as
    TransformerLens's; the log-softmax is taken in float32 whatever the logits' dtype.
    """
    if attention_mask is not None and attention_mask.shape != tokens.shape:
        raise InputError(
            "attention_mask must have the same shape as tokens, "
            f"got {tuple(attention_mask.shape)} and {tuple(tokens.shape)}"
        )
    log_probs = logits.float().log_softmax(dim=-1)
    predicted = log_probs[..., :-1, :].gather(-1, tokens[..., 1:, None].to(logits.device))[..., 0]
    if attention_mask is not None:
        keep = (attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()).to(logits.device)
        predicted = predicted.masked_fill(~keep, 0.0)
        n_tokens = keep.sum()
    else:
        n_tokens = predicted.numel()
    if per_token:
        return -predicted
    return -predicted.sum() / n_tokens


def lm_accuracy(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    per_token: bool = False,
) -> Float[Tensor, ""] | Bool[Tensor, "batch pos_minus_1"]:
    """Top-1 next-token accuracy: the fraction of positions whose argmax is the next
    token, or (per_token) a bool per position `[batch, pos - 1]`."""
    correct = logits.argmax(dim=-1)[:, :-1] == tokens[:, 1:].to(logits.device)
    return correct if per_token else correct.sum() / correct.numel()


def _apply_repetition_penalty(
    logits: Float[Tensor, "batch d_vocab"], tokens: Int[Tensor, "batch pos"], penalty: float
) -> Float[Tensor, "batch d_vocab"]:
    """Hugging Face's repetition penalty: for every token already in the row, positive
    logits are divided by `penalty` and negative ones multiplied by it."""
    logits = logits.clone()
    for row in range(logits.shape[0]):
        seen = tokens[row].unique()
        score = logits[row, seen]
        logits[row, seen] = torch.where(score > 0, score / penalty, score * penalty)
    return logits


def sample_logits(
    final_logits: Float[Tensor, "batch d_vocab"],
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
    repetition_penalty: float = 1.0,
    tokens: Int[Tensor, "batch pos"] | None = None,
) -> Int[Tensor, " batch"]:
    """One sampled token per row, as TransformerLens's `utils.sample_logits`.

    Order: repetition penalty (needs `tokens`), then (temperature 0: argmax and stop)
    division by `temperature`, frequency penalty (`freq_penalty` times each token's count
    in `tokens`), then top-k (clamped to the vocabulary) or else top-p filtering, then a
    categorical sample in float32.
    """
    if repetition_penalty != 1.0 and tokens is not None:
        final_logits = _apply_repetition_penalty(final_logits, tokens, repetition_penalty)
    if temperature == 0.0:
        return final_logits.argmax(dim=-1)
    final_logits = final_logits / temperature
    if freq_penalty > 0:
        if tokens is None or tokens.ndim != 2:
            raise InputError("A frequency penalty needs the tokens so far, as [batch, pos] ids.")
        counts = torch.stack(
            [torch.bincount(row, minlength=final_logits.shape[-1]) for row in tokens]
        )
        final_logits = final_logits - freq_penalty * counts
    if top_k is not None:
        if top_k <= 0:
            raise InputError(f"top_k has to be greater than 0, got {top_k}.")
        kth = final_logits.topk(min(top_k, final_logits.shape[-1]), dim=-1).values[..., -1:]
        final_logits = final_logits.masked_fill(final_logits < kth, -float("inf"))
    elif top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise InputError(f"top_p has to be in (0, 1], got {top_p}.")
        sorted_logits, order = torch.sort(final_logits, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative > top_p
        remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()  # keep the token crossing p
        remove_sorted[..., 0] = False
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        final_logits = final_logits.masked_fill(remove, -float("inf"))
    final_logits = final_logits.to(torch.float32)
    return torch.distributions.categorical.Categorical(logits=final_logits).sample()


def logits_to_df(
    logits: Float[Tensor, " d_vocab"], tokenizer: Any = None, top_k: int | None = None
) -> Any:
    """A pandas DataFrame of one position's logits, most probable first: columns
    `token_index`, `token_string` (with a tokenizer), `logit`, `log_prob`,
    `probability`; `top_k` keeps only the first rows."""
    import pandas as pd

    log_probs = torch.log_softmax(logits.float(), dim=-1)
    probs = log_probs.exp()
    order = torch.argsort(probs, descending=True)
    if top_k is not None:
        order = order[:top_k]
    indices = order.cpu().tolist()
    data: dict[str, list] = {"token_index": indices}
    if tokenizer is not None:
        data["token_string"] = [tokenizer.decode([i]) for i in indices]
    data["logit"] = logits[order].detach().cpu().tolist()
    data["log_prob"] = log_probs[order].detach().cpu().tolist()
    data["probability"] = probs[order].detach().cpu().tolist()
    return pd.DataFrame(data)
