"""Correlation attention is causal, per sequence and trainable: the three properties in
which it differs from Arrakis's Leviathan (docs/correlation_attention.md), whose
correlation runs over the whole batch x head x position x feature array, without a mask,
on detached numpy copies."""

from __future__ import annotations

import torch

from lookingglass import HookedTransformer, ModelConfig


def _model() -> HookedTransformer:
    cfg = ModelConfig(
        n_layers=1, d_model=32, d_head=8, n_ctx=16, d_vocab=20, attn_only=True, seed=0,
        attention_score="correlation", correlation_max_lag=3,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    with torch.no_grad():
        model.blocks[0].attn.key_mixer.lag_weights.normal_(
            generator=torch.Generator().manual_seed(1)
        )
    return model


def _tokens() -> torch.Tensor:
    return torch.randint(0, 20, (3, 16), generator=torch.Generator().manual_seed(2))


@torch.no_grad()
def test_later_tokens_do_not_change_earlier_predictions():
    model, tokens = _model(), _tokens()
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 20
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(after[:, :10], before[:, :10], atol=1e-6, rtol=0)
    assert not torch.allclose(after[:, 10:], before[:, 10:])


@torch.no_grad()
def test_each_sequence_is_scored_on_its_own():
    model, tokens = _model(), _tokens()
    batch = model(tokens)
    for i in range(len(tokens)):
        torch.testing.assert_close(batch[i], model(tokens[i : i + 1])[0], atol=1e-5, rtol=0)


def test_queries_keys_and_lag_weights_get_gradients():
    model, tokens = _model(), _tokens()
    model(tokens, return_type="loss").backward()
    attn = model.blocks[0].attn
    for name, param in (("W_Q", attn.W_Q), ("W_K", attn.W_K), ("lag", attn.key_mixer.lag_weights)):
        assert param.grad is not None and param.grad.abs().sum() > 0, name
