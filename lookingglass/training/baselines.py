"""Count-based baselines to put beside a trained model's held-out loss.

A small transformer's held-out loss means little on its own: a bigram table, which
needs no training at all, may beat it. `bigram_baseline` fits an interpolated bigram
model on training rows and scores held-out rows with the same tokens, so the two
numbers are directly comparable (the same tokenizer, the same predictions: token t
from the tokens before it, t = 1 .. seq_len - 1 of every row).

Smoothing is Witten-Bell interpolation with a unigram model, which has no free
parameter to tune on the held-out data:

    p(b | a) = (c(a, b) + n(a) * p_1(b)) / (c(a) + n(a))

where `c(a, b)` counts the pair in the training rows, `c(a)` the pairs starting with
`a`, `n(a)` the distinct tokens seen after `a`, and `p_1(b) = (c(b) + 1) / (N + V)` the
add-one unigram probability of `b` as a predicted token (N predicted tokens, V the
vocabulary). A context never seen in training falls back to `p_1`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError


@dataclass(frozen=True)
class BaselineLosses:
    """Held-out losses (nats per predicted token) of the count-based baselines.

    Attributes:
        unigram: add-one unigram model of the predicted tokens.
        bigram: Witten-Bell interpolated bigram model (see the module doc).
        n_train_pairs, n_heldout_pairs: predictions counted in each split.
    """

    unigram: float
    bigram: float
    n_train_pairs: int
    n_heldout_pairs: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-serializable fields, losses rounded to 4 decimals."""
        return {
            "unigram": round(self.unigram, 4),
            "bigram": round(self.bigram, 4),
            "n_train_pairs": self.n_train_pairs,
            "n_heldout_pairs": self.n_heldout_pairs,
        }


def _pairs(rows: Int[Tensor, "n_rows seq_len"], d_vocab: int, what: str) -> tuple[Tensor, Tensor]:
    if rows.ndim != 2 or rows.shape[1] < 2 or rows.numel() == 0:
        raise InputError(f"{what} rows must be a non-empty [n_rows, seq_len >= 2] tensor.")
    if int(rows.min()) < 0 or int(rows.max()) >= d_vocab:
        raise InputError(f"{what} rows hold token ids outside [0, d_vocab={d_vocab}).")
    return rows[:, :-1].reshape(-1).long(), rows[:, 1:].reshape(-1).long()


def bigram_baseline(
    train_rows: Int[Tensor, "n_train seq_len"],
    heldout_rows: Int[Tensor, "n_heldout seq_len"],
    d_vocab: int,
) -> BaselineLosses:
    """Fit unigram and Witten-Bell bigram models on `train_rows`; score `heldout_rows`.

    Counts are kept sparse (one entry per distinct pair), so a 4,096-token vocabulary
    costs no 4096 x 4096 table.

    Args:
        train_rows: token rows the counts come from (pairs never cross rows).
        heldout_rows: token rows to score.
        d_vocab: vocabulary size V.

    Returns:
        `BaselineLosses`, mean negative log-likelihood in nats per predicted token.

    Raises:
        InputError: empty or 1-token rows, or token ids outside the vocabulary.
    """
    context, target = _pairs(train_rows, d_vocab, "training")
    held_context, held_target = _pairs(heldout_rows, d_vocab, "held-out")
    n = len(target)
    unigram = (torch.bincount(target, minlength=d_vocab).double() + 1) / (n + d_vocab)

    pair_ids, pair_counts = torch.unique(context * d_vocab + target, return_counts=True)
    context_count = torch.bincount(context, minlength=d_vocab).double()
    distinct_next = torch.bincount(pair_ids // d_vocab, minlength=d_vocab).double()

    held_ids = held_context * d_vocab + held_target
    where = torch.searchsorted(pair_ids, held_ids).clamp(max=len(pair_ids) - 1)
    seen = pair_ids[where] == held_ids
    c_ab = torch.where(seen, pair_counts[where].double(), torch.zeros((), dtype=torch.float64))
    c_a, n_a = context_count[held_context], distinct_next[held_context]
    p_b = unigram[held_target]
    # c(a) = 0 means n(a) = 0 too: the formula is 0/0 there, and the model is p_1.
    bigram = torch.where(c_a > 0, (c_ab + n_a * p_b) / (c_a + n_a).clamp(min=1), p_b)
    return BaselineLosses(
        unigram=-float(torch.log(p_b).mean()),
        bigram=-float(torch.log(bigram).mean()),
        n_train_pairs=n,
        n_heldout_pairs=len(held_target),
    )
