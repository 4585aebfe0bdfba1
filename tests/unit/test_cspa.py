"""Copy-suppression-preserving ablation on a hand-built model where the answer is known.

One layer, attention only, no norms; the residual stream is [token one-hot | position
one-hot] and W_U reads the token part, so the stream entering the layer "predicts" the
current token (the logit lens's top-1 at q is tokens[q]). Head 0 attends only to the
positions holding the current token (its earlier copies and itself) and writes minus
their unembedding: an exact copy suppressor, whose whole effect CSPA must keep. Head 1
attends to the previous position and copies its token (+unembedding): no copy
suppression, so CSPA must keep (almost) nothing of its effect.
"""

from __future__ import annotations

import pytest
import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.analysis.copy_suppression import survey_copy_suppression
from lookingglass.errors import InputError
from lookingglass.interventions import (
    ablate,
    copy_suppression_preserving_ablation,
    head_mean_result,
)

V, N, GAP = 12, 24, 30.0


@torch.no_grad()
def hand_built_model() -> HookedTransformer:
    cfg = ModelConfig(
        n_layers=1, d_model=V + N, n_ctx=N, d_head=V + N, n_heads=2, d_vocab=V,
        attn_only=True, normalization_type=None,
    )  # fmt: skip
    model = HookedTransformer(cfg).eval()
    for param in model.parameters():
        param.zero_()
    tok, pos = torch.arange(V), torch.arange(N)
    model.embed.W_E[tok, tok] = 1.0
    model.pos_embed.W_pos[pos, V + pos] = 1.0
    model.unembed.W_U[tok, tok] = 1.0
    attn, c = model.blocks[0].attn, GAP * cfg.attn_scale
    attn.W_Q[0, tok, tok] = c  # head 0: same token (self included) +GAP
    attn.W_K[0, tok, tok] = 1.0
    attn.W_V[0, tok, tok] = 1.0
    attn.W_O[0, tok, tok] = -2.0  # minus twice the attended token's unembedding
    attn.W_Q[1, V + pos, V + pos] = c  # head 1: previous position +GAP
    attn.W_K[1, V + pos[:-1], V + pos[1:]] = 1.0
    attn.W_V[1, tok, tok] = 1.0
    attn.W_O[1, tok, tok] = 2.0  # plus twice the previous token's unembedding
    return model


def tokens(seed: int, batch: int = 6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (batch, N), generator=generator)


def test_exact_copy_suppressor_is_fully_preserved():
    model = hand_built_model()
    data, test = tokens(0, 16), tokens(1)
    mean = head_mean_result(model, (0, 0), data)
    result = copy_suppression_preserving_ablation(model, test, (0, 0), mean, top_k=1)
    assert result.kl_mean_ablated.mean() > 0.05  # the head matters
    assert result.kl_cspa.abs().max() < 1e-5  # CSPA leaves its whole effect in place
    assert result.kl_fraction() == pytest.approx(1.0, abs=1e-4)
    assert result.loss_fraction() == pytest.approx(1.0, abs=1e-4)
    assert result.kept_attention.min() > 0.999


def test_other_head_is_not_preserved():
    model = hand_built_model()
    data, test = tokens(0, 16), tokens(1)
    mean = head_mean_result(model, (0, 1), data)
    result = copy_suppression_preserving_ablation(model, test, (0, 1), mean, top_k=1)
    assert result.kl_mean_ablated.mean() > 0.05
    # Only pairs whose previous token equals the current one (1 in 12 by chance) are
    # kept, and projecting +unembedding onto its negative part leaves nothing.
    assert abs(result.kl_fraction()) < 0.2


def test_keeping_nothing_is_mean_ablation():
    """top_k=0 keeps no pair: the run must equal the library's own mean ablation of the
    head (over positions too), and keeping everything unprojected must equal clean."""
    model = hand_built_model()
    data, test = tokens(0, 16), tokens(1)
    mean = head_mean_result(model, (0, 1), data)
    nothing = copy_suppression_preserving_ablation(model, test, (0, 1), mean, top_k=0, path="full")
    with ablate(model, heads=[(0, 1)], method="mean", data=data, per_position=False):
        reference = model(test, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(nothing.loss_cspa, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nothing.loss_mean_ablated, reference, atol=1e-5, rtol=1e-5)
    everything = copy_suppression_preserving_ablation(
        model, test, (0, 1), mean, project_ov=False, restrict_qk=False
    )
    assert everything.kl_cspa.abs().max() < 1e-5


def test_bad_head_says_what_is_wrong():
    model = hand_built_model()
    with pytest.raises(InputError, match="not in this model"):
        copy_suppression_preserving_ablation(model, tokens(1), (1, 0), torch.zeros(V + N))


def test_survey_finds_the_copy_suppressor():
    """The three kinds of evidence on the hand-built model: head 0 lowers in-context
    tokens, its OV circuit lowers each token's own logit most (every token: the known
    answer), and it attends to earlier copies of the predicted (current) token."""
    model = hand_built_model()
    survey = survey_copy_suppression(model, tokens(2), top=2, n_tokens=V)
    assert survey.ranked(1) == [(0, 0)]
    assert survey.in_context_direct_effect[0, 0] < 0 < survey.in_context_direct_effect[0, 1]
    assert survey.ov_suppression_fraction[0, 0] == 1.0
    assert survey.ov_suppression_fraction[0, 1] == 0.0  # it raises each token instead
    attention = survey.attention_to_predicted
    assert attention[0, 0] > 0.3 and attention[0, 1] < attention[0, 0]
