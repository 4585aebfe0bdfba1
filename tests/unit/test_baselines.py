"""`bigram_baseline` against a plain-Python Witten-Bell bigram written from the textbook
definition, and on a case small enough to do by hand."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import pytest
import torch

from lookingglass.errors import InputError
from lookingglass.training.baselines import bigram_baseline


def witten_bell_by_hand(train: list[list[int]], heldout: list[list[int]], d_vocab: int):
    pair, context, unigram = Counter(), Counter(), Counter()
    follows: dict[int, set[int]] = defaultdict(set)
    for row in train:
        for a, b in zip(row[:-1], row[1:], strict=True):
            pair[a, b] += 1
            context[a] += 1
            unigram[b] += 1
            follows[a].add(b)
    n = sum(unigram.values())
    uni_nll, bi_nll, count = 0.0, 0.0, 0
    for row in heldout:
        for a, b in zip(row[:-1], row[1:], strict=True):
            p1 = (unigram[b] + 1) / (n + d_vocab)
            types = len(follows[a])
            p2 = (pair[a, b] + types * p1) / (context[a] + types) if context[a] else p1
            uni_nll -= math.log(p1)
            bi_nll -= math.log(p2)
            count += 1
    return uni_nll / count, bi_nll / count


def test_matches_a_plain_python_witten_bell_bigram():
    generator = torch.Generator().manual_seed(0)
    # A Markov chain over tokens 0-18 (next = 3 * previous + a skewed step, mod 19), so
    # the previous token carries information; token 19 never occurs in training (an
    # unseen context and an unseen target in the held-out rows).
    steps = torch.multinomial(
        torch.tensor([0.6, 0.25, 0.1, 0.05]), 450 * 12, replacement=True, generator=generator
    )
    tokens = torch.zeros(450 * 12, dtype=torch.long)
    for i in range(1, len(tokens)):
        tokens[i] = (3 * tokens[i - 1] + steps[i]) % 19
    train, heldout = tokens[: 400 * 12].reshape(400, 12), tokens[400 * 12 :].reshape(50, 12)
    heldout[3, 4] = 19
    got = bigram_baseline(train, heldout, d_vocab=20)
    unigram, bigram = witten_bell_by_hand(train.tolist(), heldout.tolist(), 20)
    assert got.unigram == pytest.approx(unigram, rel=1e-12)
    assert got.bigram == pytest.approx(bigram, rel=1e-12)
    assert got.n_train_pairs == 400 * 11 and got.n_heldout_pairs == 50 * 11
    assert got.bigram < got.unigram  # the context helps on data with this much of it


def test_a_case_done_by_hand():
    # Training pairs: (0,1) (1,0) (0,1) (1,2): c(0)=2 with one type, c(1)=2 with two.
    # Unigram over the predicted tokens 1,0,1,2 with add-one, V=3: 2/7, 3/7, 2/7.
    got = bigram_baseline(torch.tensor([[0, 1, 0, 1, 2]]), torch.tensor([[0, 1, 2]]), 3)
    p01 = (2 + 1 * 3 / 7) / (2 + 1)
    p12 = (1 + 2 * 2 / 7) / (2 + 2)
    assert got.bigram == pytest.approx(-(math.log(p01) + math.log(p12)) / 2, rel=1e-12)
    assert got.unigram == pytest.approx(-(math.log(3 / 7) + math.log(2 / 7)) / 2, rel=1e-12)


def test_rejects_tokens_outside_the_vocabulary():
    with pytest.raises(InputError, match="outside"):
        bigram_baseline(torch.tensor([[0, 5]]), torch.tensor([[0, 1]]), 3)
    with pytest.raises(InputError, match="seq_len >= 2"):
        bigram_baseline(torch.tensor([[0]]), torch.tensor([[0, 1]]), 3)
