"""The Circuits page's composition numbers (`analysis.composition`, `explorer.circuit_paths`)
against TransformerLens 3.9 on the same weights: per-head composition scores against
`all_composition_scores`, the random baseline against TransformerLens's
`composition_scores` of random matrices, the effective embedding against
TransformerLens's own forward pass on one-token inputs, and the QK / OV paths through an
earlier head against dense products of TransformerLens's weights."""

from __future__ import annotations

import pytest
import torch

from lookingglass.analysis.composition import (
    MODES,
    effective_embedding,
    head_composition,
    random_composition_baseline,
)
from lookingglass.errors import InputError
from lookingglass.explorer import circuit_paths, compute
from tests._analysis_helpers import TWIN_FIELDS
from tests._helpers import assert_close, make_model, make_tokenizer, one_cpu_thread

ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module", params=["gpt2-like", "llama-like"])
def models(request):
    """A LayerNorm model with learned positions, and a rotary RMSNorm model with grouped
    keys and values (as SmolLM2)."""
    extra = (
        {}
        if request.param == "gpt2-like"
        else dict(
            normalization_type="RMS",
            positional_embedding_type="rotary",
            rotary_dim=16,
            n_key_value_heads=2,
            act_fn="silu",
            gated_mlp=True,
        )
    )
    model = make_model(seed=5, n_layers=3, tokenizer=make_tokenizer(), **extra)
    model.requires_grad_(False)
    return model, _twin(model)


def _twin(model):
    """TransformerLens's model with `model`'s architecture (gated MLPs too) and weights."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    fields = {name: getattr(model.cfg, name) for name in (*TWIN_FIELDS, "gated_mlp")}
    twin = HookedTransformer(HookedTransformerConfig(**fields, device="cpu"))
    _, unexpected = twin.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected, unexpected
    return twin.eval().requires_grad_(False)


def test_head_composition_is_transformer_lens_all_composition_scores(models):
    model, twin = models
    for mode in MODES:
        reference = twin.all_composition_scores(mode)
        for layer, head in [(0, 1), (1, 2), (2, 3)]:
            scores = head_composition(model, layer, head)
            assert scores.from_earlier[mode].shape == (layer, 4)
            assert scores.into_later[mode].shape == (2 - layer, 4)
            assert_close(scores.from_earlier[mode], reference[:layer, :, layer, head], ATOL, mode)
            assert_close(
                scores.into_later[mode], reference[layer, head, layer + 1 :, :], ATOL, mode
            )
    with pytest.raises(InputError, match="out of range"):
        head_composition(model, 3, 0)


def test_random_baseline_agrees_with_transformer_lens_on_random_matrices(models):
    from transformer_lens import FactoredMatrix
    from transformer_lens.utilities import composition_scores

    model, _ = models
    ours = random_composition_baseline(model, n_samples=64)
    generator = torch.Generator().manual_seed(123)
    n, d, h = 256, model.cfg.d_model, model.cfg.d_head

    def factored() -> FactoredMatrix:
        return FactoredMatrix(
            torch.randn(n, d, h, generator=generator), torch.randn(n, h, d, generator=generator)
        )

    writer, reader = factored(), factored()
    theirs = {
        "Q": composition_scores(writer, reader, broadcast_dims=False),
        "K": composition_scores(writer, reader.T, broadcast_dims=False),
        "V": composition_scores(writer, factored(), broadcast_dims=False),
    }
    for mode in MODES:
        mean, std = float(theirs[mode].mean()), float(theirs[mode].std())
        error = (std**2 / n + ours.std[mode] ** 2 / ours.n_samples) ** 0.5
        assert abs(ours.mean[mode] - mean) < 4 * error, (mode, ours.mean[mode], mean)
        assert 0.7 < ours.mean[mode] * d**0.5 < 1.3  # about 1 / sqrt(d_model)


@torch.no_grad()
def test_effective_embedding_is_transformer_lens_on_single_tokens(models):
    model, twin = models
    tokens = torch.arange(model.cfg.d_vocab)[:, None]  # every token alone: it attends to itself
    _, cache = twin.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    resid_post = cache["blocks.0.hook_resid_post"][:, 0]
    if model.cfg.positional_embedding_type == "standard":
        resid_post = resid_post - twin.W_pos[0]  # the circuits read no positions
        block0 = effective_embedding(model, "block0")
        assert (block0 - resid_post).abs().max() > 1e-3  # the position does change block 0
    else:
        assert_close(effective_embedding(model, "block0", chunk=37), resid_post, ATOL, "block0")

    def no_attention(activation, hook):
        return torch.zeros_like(activation)

    with twin.hooks(fwd_hooks=[("blocks.0.hook_attn_out", no_attention)]):
        _, cache = twin.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    expected = cache["blocks.0.hook_resid_post"][:, 0]
    if model.cfg.positional_embedding_type == "standard":
        # W_pos[0] enters MLP0's input there: compare on the rotary model only
        assert effective_embedding(model, "mlp0").shape == expected.shape
    else:
        assert_close(effective_embedding(model, "mlp0"), expected, ATOL, "mlp0")


def test_effective_embedding_needs_mlps():
    model = make_model(seed=1, attn_only=True)
    with pytest.raises(InputError, match="no MLPs"):
        effective_embedding(model)


@torch.no_grad()
def test_paths_direct_and_through_an_earlier_head(models):
    model, twin = models
    direct = circuit_paths.path_view(model, 2, 1, " the", " and")
    reference = compute.circuit_view(model, 2, 1, " the", " and")
    assert [t.token_id for t in direct.top_keys] == [t.token_id for t in reference.top_keys]
    assert [t.token_id for t in direct.boosted] == [t.token_id for t in reference.boosted]
    assert direct.source_rank == reference.source_rank

    q, s = model.to_single_token(" the"), model.to_single_token(" and")
    E = twin.W_E
    OV_a = twin.W_V[0, 3] @ twin.W_O[0, 3]
    qk = E[q] @ twin.W_Q[2, 1] @ twin.W_K[2, 1].T @ (E @ OV_a).T
    ov = E[s] @ OV_a @ twin.W_V[2, 1] @ twin.W_O[2, 1] @ twin.W_U
    through = circuit_paths.path_view(model, 2, 1, " the", " and", through="L0H3", k=5)
    assert [t.token_id for t in through.top_keys] == qk.topk(5).indices.tolist()
    assert [t.token_id for t in through.boosted] == ov.topk(5).indices.tolist()
    assert [t.token_id for t in through.suppressed] == ov.topk(5, largest=False).indices.tolist()
    assert through.top_keys[0].value == pytest.approx(float(qk.max()), abs=ATOL)
    assert through.query_rank == int((qk > qk[q]).sum())
    assert through.source_logit == pytest.approx(float(ov[s]), abs=ATOL)
    with pytest.raises(InputError, match="not in an earlier layer"):
        circuit_paths.path_view(model, 1, 0, " the", " and", through="L1H2")


def test_composition_view_carries_the_baseline(models):
    model, _ = models
    view = circuit_paths.composition_view(model, 1, 0)
    assert view.head == "L1H0" and view.earlier["K"].shape == (1, 4)
    assert set(view.baseline_mean) == set(MODES)
