"""The Schematics page's head steps on a Llama-style model (rotary positions, grouped
keys and values, RMSNorm, a gated MLP): every step is recomputed from the weights,
including the score from the rotated q and k, and the winning key's q*k product adds up
to the score the model cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.explorer import schematics
from tests._explorer_helpers import tiny_tokenizer

PROMPT = "And God said, Let there be light: and there was light."


@pytest.fixture(scope="module")
def llama_like():
    tokenizer = tiny_tokenizer()
    cfg = ModelConfig(
        n_layers=2,
        d_model=64,
        n_heads=4,
        d_head=16,
        n_key_value_heads=2,
        d_mlp=128,
        d_vocab=len(tokenizer),
        n_ctx=128,
        act_fn="silu",
        gated_mlp=True,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        seed=1,
    )
    model = HookedTransformer(cfg, tokenizer).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # wider than the initialization, so attention is not uniform
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("W_"):
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return model


def test_head_steps_on_a_rotary_grouped_model(llama_like):
    model = llama_like
    steps = schematics.head_steps(model, PROMPT, 1, 3, 7)
    assert set(steps.checks) == {
        "q = x W_Q + b_Q",
        "k = x W_K + b_K",
        "v = x W_V + b_V",
        "scores = q k / scale",
        "pattern = softmax(scores)",
        "z = pattern v",
    }
    assert max(steps.checks.values()) < 1e-4
    assert any("rotary" in n for n in steps.notes) and any("GQA" in n for n in steps.notes)
    _, cache = model.run_with_cache(model.to_tokens(PROMPT))
    cached_scores = cache["attn_scores", 1][0, 3, 7, :8].numpy()
    assert steps.winner == int(cache["pattern", 1][0, 3, 7, :8].argmax())
    assert steps.product.sum() / steps.attn_scale == pytest.approx(
        float(cached_scores[steps.winner]), abs=1e-4
    )
    # head 3 reads key/value head 1 (two query heads per key/value head)
    np.testing.assert_allclose(steps.k_scored, cache["rot_k", 1][0, :8, 1].numpy(), atol=1e-6)
    assert steps.x.shape == (8, model.cfg.d_model) and steps.v.shape == (8, model.cfg.d_head)
