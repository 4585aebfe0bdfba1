"""Head detectors: TransformerLens 3.9's `detect_head` numbers on the same weights, and
scores that find heads we built by hand (and not in a random model).

The hand-built models have no norms, one-hot embeddings and weights written so each head
provably attends one way (attention logit gaps of 30), so the expected scores follow
from the construction, not from running a detector.
"""

from __future__ import annotations

import pytest
import torch

from lookingglass import HookedTransformer, InputError, ModelConfig
from lookingglass.analysis import (
    HEAD_NAMES,
    copy_suppression_scores,
    detect_head,
    induction_scores,
    previous_token_scores,
    repeated_random_tokens,
)
from tests._analysis_helpers import tl_twin
from tests._helpers import assert_close, make_model, one_cpu_thread, save_and_reload_tokenizer

TL_ATOL = 1e-4
GAP = 30.0  # attention logit gap of the hand-built heads
PROMPTS = [
    "When Mary and John went to the store, John gave a drink to Mary. When Mary and John went",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


# ------------------------------------------------------------------ parity with TL
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tokenizer = save_and_reload_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    model = make_model(seed=21, n_layers=2, tokenizer=tokenizer)
    return model, tl_twin(model, tokenizer)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_detect_head_matches_transformer_lens(models, name):
    from transformer_lens.head_detector import detect_head as tl_detect_head

    model, twin = models
    for error_measure in ("mul", "abs"):
        for exclude_bos, exclude_current_token in [(False, False), (True, False), (True, True)]:
            options = dict(
                exclude_bos=exclude_bos,
                exclude_current_token=exclude_current_token,
                error_measure=error_measure,
            )
            ours = detect_head(model, PROMPTS[0], name, **options)
            theirs = tl_detect_head(twin, PROMPTS[0], name, **options)
            assert_close(ours, theirs, TL_ATOL, f"{name} {options}")
    both = detect_head(model, PROMPTS, name, heads=[(0, 1), (1, 3)])
    assert_close(both, tl_detect_head(twin, PROMPTS, name, heads=[(0, 1), (1, 3)]), TL_ATOL, "list")
    assert (both == -1).sum() == 2 * 4 - 2


def test_detect_head_custom_pattern_cache_and_errors(models):
    from transformer_lens.head_detector import detect_head as tl_detect_head

    model, twin = models
    tokens = model.to_tokens(PROMPTS[1])
    n = tokens.shape[1]
    pattern = torch.zeros(n, n)
    pattern[:, 0] = 1.0  # a "BOS head"
    heads = {1: [0, 2]}
    ours = detect_head(model, PROMPTS[1], pattern, heads=heads)
    assert_close(ours, tl_detect_head(twin, PROMPTS[1], pattern, heads=heads), TL_ATOL, "custom")
    _, cache = model.run_with_cache(tokens)
    assert_close(
        detect_head(model, tokens[0], pattern, cache=cache),
        detect_head(model, tokens, pattern),
        1e-6,
        "with a cache",
    )
    with pytest.raises(InputError):
        detect_head(model, PROMPTS[1], torch.ones(n, n))  # not lower triangular
    with pytest.raises((InputError, TypeError)):  # TypeError: jaxtyping checks the Literal
        detect_head(model, PROMPTS[1], "bos_head")
    with pytest.raises(InputError):
        detect_head(model, PROMPTS, pattern)
    with pytest.raises((InputError, TypeError)):  # TypeError: jaxtyping checks the Literal
        detect_head(model, PROMPTS[1], "induction_head", error_measure="max")


# ------------------------------------------------------------- hand-built models
def _blank(d_vocab: int, n_ctx: int, d_model: int, d_head: int, n_layers: int, n_heads: int):
    cfg = ModelConfig(
        n_layers=n_layers, d_model=d_model, n_ctx=n_ctx, d_head=d_head, n_heads=n_heads,
        d_vocab=d_vocab, attn_only=True, normalization_type=None,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    return model.eval()


@torch.no_grad()
def induction_model(d_vocab: int = 100, n_ctx: int = 32) -> HookedTransformer:
    """Layer 0 head 0 attends to the previous position and copies its token into a
    "previous token" subspace; layer 1 head 0 attends to keys whose previous token is the
    query's token (the position after an earlier copy): a textbook induction circuit.

    Residual layout: [token one-hot (V) | position one-hot (n_ctx) | previous token (V)].
    """
    V, N = d_vocab, n_ctx
    T, P, PREV = 0, V, V + N
    d_head = max(V, N)
    model = _blank(V, N, 2 * V + N, d_head, n_layers=2, n_heads=2)
    c = GAP * model.cfg.attn_scale
    model.embed.W_E[torch.arange(V), T + torch.arange(V)] = 1.0
    model.pos_embed.W_pos[torch.arange(N), P + torch.arange(N)] = 1.0
    model.unembed.W_U[T + torch.arange(V), torch.arange(V)] = 1.0
    prev, induction = model.blocks[0].attn, model.blocks[1].attn
    prev.W_Q[0, P + torch.arange(N), torch.arange(N)] = c  # query at p: c e_p
    prev.W_K[0, P + torch.arange(N - 1), torch.arange(1, N)] = 1.0  # key at k: e_{k+1}
    prev.W_V[0, T + torch.arange(V), torch.arange(V)] = 1.0
    prev.W_O[0, torch.arange(V), PREV + torch.arange(V)] = 1.0
    induction.W_Q[0, T + torch.arange(V), torch.arange(V)] = c  # the query's token
    induction.W_K[0, PREV + torch.arange(V), torch.arange(V)] = 1.0  # the key's previous token
    induction.W_V[0, T + torch.arange(V), torch.arange(V)] = 1.0
    induction.W_O[0, torch.arange(V), T + torch.arange(V)] = 1.0
    return model  # head 1 of each layer is all zeros: uniform attention


@torch.no_grad()
def copy_suppression_model(d_vocab: int = 60, n_ctx: int = 32) -> HookedTransformer:
    """One layer, three heads, reading [token one-hot | position one-hot]:
    head 0 attends to earlier copies of its own token (not itself) and writes minus the
    token (W_V W_O = -I): copy suppression. Head 1 attends the same way but copies
    (+I). Head 2 suppresses (-I) but attends to the previous position."""
    V, N = d_vocab, n_ctx
    tok, pos = torch.arange(V), torch.arange(N)
    model = _blank(V, N, V + N, V + N, n_layers=1, n_heads=3)
    c = GAP * model.cfg.attn_scale
    model.embed.W_E[tok, tok] = 1.0
    model.pos_embed.W_pos[pos, V + pos] = 1.0
    model.unembed.W_U[tok, tok] = 1.0  # the stream predicts its own token
    attn = model.blocks[0].attn
    for head in (0, 1):
        attn.W_Q[head, tok, tok] = c  # same token: +c
        attn.W_K[head, tok, tok] = 1.0
        attn.W_Q[head, V + pos, V + pos] = -c  # same position: -c (cancels self-attention)
        attn.W_K[head, V + pos, V + pos] = 1.0
    attn.W_Q[2, V + pos, V + pos] = c
    attn.W_K[2, V + pos[:-1], V + pos[1:]] = 1.0
    for head, sign in [(0, -1.0), (1, 1.0), (2, -1.0)]:
        attn.W_V[head, tok, tok] = 1.0
        attn.W_O[head, tok, tok] = sign
    return model


def test_induction_and_previous_token_heads_are_found():
    model = induction_model()
    scores = induction_scores(model, seq_len=12, n_seq=8, seed=0)
    # Not exactly 1: the first query of each repeat ties with key 0 (position 0 copies its
    # own token as "previous"), and tokens repeated by chance within a half split the
    # attention between their copies' successors (0.91 with this seed).
    assert scores[1, 0] > 0.85, scores
    assert scores[0].max() < 0.3 and scores[1, 1] < 0.3
    prev = previous_token_scores(model, seq_len=12, n_seq=8)
    assert prev[0, 0] > 0.99 and prev[0, 1] < 0.3 and prev[1].max() < 0.5
    # detect_head's "mul" score divides by all attention, 24 rows here: position 0 can only
    # attend to itself, and first-half queries have no induction target.
    tokens = repeated_random_tokens(model, 12, 1, seed=3)[0]
    assert detect_head(model, tokens, "previous_token_head")[0, 0] == pytest.approx(
        23 / 24, abs=1e-4
    )
    induction = detect_head(model, tokens, "induction_head")
    assert induction[1, 0] > 11.5 / 24 and induction[0].max() < 0.1
    random_model = make_model(seed=22, n_layers=2, attn_only=True)
    random_scores = induction_scores(random_model, seq_len=12, n_seq=8)
    assert random_scores.max() < 0.3, random_scores
    assert previous_token_scores(random_model, seq_len=12, n_seq=8).max() < 0.5


def test_repeated_random_tokens(models):
    model, _ = models
    tokens = repeated_random_tokens(model, 5, n_seq=3, seed=1)
    assert tokens.shape == (3, 11) and (tokens[:, 0] == model.to_tokens("")[0, 0]).all()
    assert torch.equal(tokens[:, 1:6], tokens[:, 6:])
    assert torch.equal(tokens, repeated_random_tokens(model, 5, n_seq=3, seed=1))
    assert repeated_random_tokens(model, 5, prepend_bos=False).shape == (1, 10)
    with pytest.raises(InputError):
        repeated_random_tokens(model, 40)  # 81 tokens > n_ctx


def test_copy_suppression_candidates():
    model = copy_suppression_model()
    tokens = repeated_random_tokens(model, 10, n_seq=4, seed=0)
    scores = copy_suppression_scores(model, tokens)
    assert_close(scores.ov_copying[0], torch.tensor([-1.0, 1.0, -1.0]), 1e-5, "OV copying")
    assert scores.attention_to_predicted[0, 0] > 0.99
    assert scores.attention_to_predicted[0, 1] > 0.99
    assert scores.attention_to_predicted[0, 2] < 0.3
    assert scores.candidates == [(0, 0)]
    pooled = copy_suppression_scores(model, [tokens[:1], tokens[1:]])  # prompts one by one
    assert_close(pooled.attention_to_predicted, scores.attention_to_predicted, 1e-6, "pooled")
    random_model = make_model(seed=23, n_layers=2, attn_only=True, normalization_type="LNPre")
    random_scores = copy_suppression_scores(
        random_model, repeated_random_tokens(random_model, 10, 4)
    )
    assert random_scores.candidates == []
    assert random_scores.ov_copying.abs().max() < 0.5
