"""Synthetic token sequences for finding and for growing induction heads.

`repeated_random_tokens` is the standard probe (Olsson et al. 2022; the ARENA tutorials):
random tokens followed by an exact repeat, on which an induction head attends from each
repeated token to the token after its first occurrence, and loss on the second half
drops far below the first half's.

`induction_training_data` is training data on which induction is the way to lower the
loss: random tokens in which random earlier segments recur later. Both generators draw
from a `torch.Generator` seeded with `seed`, so the same arguments give the same tensor
on every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError


def _allowed_tokens(d_vocab: int, bos_token: int | None, reserved: Sequence[int]) -> Tensor:
    """Token ids that random draws may use: the vocabulary minus BOS and `reserved`."""
    if d_vocab < 1:
        raise InputError(f"d_vocab must be >= 1, got {d_vocab}")
    excluded = set(reserved) | ({bos_token} if bos_token is not None else set())
    allowed = torch.tensor([t for t in range(d_vocab) if t not in excluded], dtype=torch.long)
    if len(allowed) == 0:
        raise InputError(
            f"no token ids left to draw from: d_vocab={d_vocab}, excluded {sorted(excluded)}"
        )
    return allowed


def _with_bos(
    tokens: Int[Tensor, "n_seq pos"], bos_token: int | None
) -> Int[Tensor, "n_seq out_pos"]:
    if bos_token is None:
        return tokens
    return torch.cat([torch.full((len(tokens), 1), bos_token, dtype=torch.long), tokens], dim=1)


def repeated_random_tokens(
    n_seq: int,
    half_len: int,
    d_vocab: int,
    seed: int = 0,
    bos_token: int | None = None,
    reserved: Sequence[int] = (),
) -> Int[Tensor, "n_seq seq_len"]:
    """Random tokens followed by an exact copy: `[BOS] r_1 ... r_h r_1 ... r_h`.

    Each `r_i` is drawn independently and uniformly from `range(d_vocab)` minus
    `bos_token` and `reserved` (so special tokens never appear by chance).

    Args:
        n_seq: number of sequences.
        half_len: length `h` of the random half.
        d_vocab: vocabulary size.
        seed: seed of the generator; same seed, same tokens.
        bos_token: if given, each sequence starts with it.
        reserved: token ids never drawn (e.g. EOS, padding).

    Returns:
        LongTensor [n_seq, (1 if bos_token is not None else 0) + 2 * half_len].
    """
    if n_seq < 1 or half_len < 1:
        raise InputError(f"n_seq and half_len must be >= 1, got n_seq={n_seq}, half_len={half_len}")
    allowed = _allowed_tokens(d_vocab, bos_token, reserved)
    generator = torch.Generator().manual_seed(seed)
    first_half = allowed[torch.randint(len(allowed), (n_seq, half_len), generator=generator)]
    return _with_bos(torch.cat([first_half, first_half], dim=1), bos_token)


def induction_training_data(
    n_seq: int,
    seq_len: int,
    d_vocab: int,
    seed: int = 0,
    bos_token: int | None = None,
    reserved: Sequence[int] = (),
    min_segment_len: int = 4,
    max_segment_len: int = 16,
    n_repeats: int | None = None,
) -> Int[Tensor, "n_seq seq_len"]:
    """Random sequences in which random earlier segments recur at random later offsets.

    Generative process, per sequence, with `T = seq_len - 1` if `bos_token` is given
    (BOS then takes position 0) and `T = seq_len` otherwise:

    1. Draw `T` tokens i.i.d. uniformly from `range(d_vocab)` minus `bos_token` and
       `reserved`.
    2. Draw `K` copy events independently (`K = n_repeats`, by default
       `max(1, T // (min_segment_len + max_segment_len))`, so copies cover about half the
       positions). Each event draws a length `L` uniformly from
       `[min_segment_len, max_segment_len]`, then a destination start `d` uniformly from
       `[L, T - L]`, then a source start `s` uniformly from `[0, d - L]`, so the source
       ends before the destination begins.
    3. Apply the events in increasing order of `d` (ties in draw order): copy the current
       `tokens[s : s + L]` over `tokens[d : d + L]`. A source may contain an earlier copy
       (repeats of repeats), and a later event may overwrite the tail of an earlier one.

    Inside a copy, the next token is predictable by finding the previous occurrence of
    the current token and reading what followed it: a previous-token head that writes
    "token before me" plus an induction head that matches on it. The first token of a
    copy stays unpredictable, and the random tokens carry nothing else to learn beyond
    their uniform frequencies, so the loss falls below that of a uniform guess only
    through copying.

    Args:
        n_seq: number of sequences.
        seq_len: length of each output row (BOS included when given).
        d_vocab: vocabulary size.
        seed: seed of the generator; same arguments, same tokens.
        bos_token: if given, each sequence starts with it.
        reserved: token ids never drawn.
        min_segment_len, max_segment_len: range of copied segment lengths.
        n_repeats: copy events per sequence (default: see above).

    Returns:
        LongTensor [n_seq, seq_len].
    """
    n_content = seq_len - (bos_token is not None)
    if n_seq < 1:
        raise InputError(f"n_seq must be >= 1, got {n_seq}")
    if not 1 <= min_segment_len <= max_segment_len:
        raise InputError(
            "need 1 <= min_segment_len <= max_segment_len, "
            f"got {min_segment_len} and {max_segment_len}"
        )
    if n_content < 2 * max_segment_len:
        raise InputError(
            f"seq_len={seq_len} is too short for segments of up to {max_segment_len} tokens "
            f"and their repeats; use seq_len >= {2 * max_segment_len + (bos_token is not None)} "
            "or a smaller max_segment_len"
        )
    if n_repeats is None:
        n_repeats = max(1, n_content // (min_segment_len + max_segment_len))
    allowed = _allowed_tokens(d_vocab, bos_token, reserved)
    generator = torch.Generator().manual_seed(seed)

    # max_segment_len scratch columns at the end: every copy writes max_segment_len
    # positions (those past L write back what is there), so each write stays in bounds
    # and no index is written twice in one scatter.
    tokens = allowed[
        torch.randint(len(allowed), (n_seq, n_content + max_segment_len), generator=generator)
    ]
    shape = (n_seq, n_repeats)
    lengths = torch.randint(min_segment_len, max_segment_len + 1, shape, generator=generator)
    uniform = torch.rand((2, *shape), generator=generator, dtype=torch.float64)
    dst = lengths + (uniform[0] * (n_content - 2 * lengths + 1)).long()
    src = (uniform[1] * (dst - lengths + 1)).long()
    order = torch.argsort(dst, dim=1, stable=True)
    lengths, dst, src = (x.gather(1, order) for x in (lengths, dst, src))

    offsets = torch.arange(max_segment_len)
    for k in range(n_repeats):
        src_idx = src[:, k : k + 1] + offsets
        dst_idx = dst[:, k : k + 1] + offsets
        in_segment = offsets < lengths[:, k : k + 1]
        copied = torch.where(in_segment, tokens.gather(1, src_idx), tokens.gather(1, dst_idx))
        tokens.scatter_(1, dst_idx, copied)
    return _with_bos(tokens[:, :n_content], bos_token)
