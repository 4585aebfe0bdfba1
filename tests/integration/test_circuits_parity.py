"""Circuits from the weights: full OV / QK circuits, composition and copying scores and the
SVD interpreter, against TransformerLens 3.9 on the same weights and against the formed
dense matrices."""

from __future__ import annotations

import pytest
import torch

from lookingglass import FactoredMatrix, InputError, utils
from lookingglass.analysis import (
    SVDInterpreter,
    all_composition_scores,
    copying_score,
    full_ov_circuit,
    full_qk_circuit,
    get_comp_score,
    ov_copying_scores,
)
from tests._analysis_helpers import tl_twin
from tests._helpers import assert_close, make_model, make_tokenizer, one_cpu_thread

TL_ATOL = 1e-4
ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def models():
    model = make_model(seed=11, n_layers=3, d_mlp=64, tokenizer=make_tokenizer())
    return model, tl_twin(model)


def _dense_ov(model) -> torch.Tensor:
    return model.W_E @ model.W_V @ model.W_O @ model.W_U


def test_qk_ov_and_full_circuits(models):
    model, twin = models
    for ours, theirs, what in [(model.QK, twin.QK, "QK"), (model.OV, twin.OV, "OV")]:
        assert ours.shape == theirs.shape == (3, 4, 64, 64)
        assert_close(ours.AB, theirs.AB, TL_ATOL, what)
        for a, b, part in zip(ours.svd(), theirs.svd(), "USV", strict=True):
            assert_close(a, b, TL_ATOL, f"{what} {part}")
    ov = full_ov_circuit(model)
    assert isinstance(ov, FactoredMatrix) and ov.mdim == model.cfg.d_head
    assert ov.shape == (3, 4, model.cfg.d_vocab, model.cfg.d_vocab_out)
    assert_close(ov.AB, _dense_ov(model), ATOL, "full OV")
    assert_close(ov.AB, (twin.W_E @ twin.OV @ twin.W_U).AB, TL_ATOL, "full OV (TL)")
    qk = full_qk_circuit(model)
    dense_qk = model.W_E @ model.W_Q @ model.W_K.transpose(-2, -1) @ model.W_E.T
    assert qk.mdim == model.cfg.d_head
    assert_close(qk.AB, dense_qk, ATOL, "full QK")
    assert_close(qk.AB, (twin.W_E @ twin.QK @ twin.W_E.T).AB, TL_ATOL, "full QK (TL)")
    positional = full_qk_circuit(model, model.W_pos, model.W_pos)
    assert positional.shape[-2:] == (model.cfg.n_ctx, model.cfg.n_ctx)


def test_composition_scores_match_transformer_lens(models):
    model, twin = models
    for mode in "QKV":
        ours = all_composition_scores(model, mode)
        assert ours.shape == (3, 4, 3, 4)
        assert_close(ours, twin.all_composition_scores(mode), TL_ATOL, f"{mode}-composition")
        layers = torch.arange(3)
        earlier_or_same = layers[:, None] >= layers[None, :]
        assert (ours.permute(0, 2, 1, 3)[earlier_or_same] == 0).all()
    with pytest.raises(InputError):
        model.all_composition_scores("X")
    from transformer_lens.utilities import composition_scores as tl_composition_scores

    assert_close(
        utils.composition_scores(model.OV[0], model.QK[1]),
        tl_composition_scores(twin.OV[0], twin.QK[1]),
        TL_ATOL,
        "utils.composition_scores",
    )


def test_get_comp_score_is_the_framework_formula(models):
    model, _ = models
    W_A, W_B = model.OV[0, 1], model.QK[2, 3]
    dense_a, dense_b = W_A.AB, W_B.AB
    expected = (dense_a @ dense_b).norm() / (dense_a.norm() * dense_b.norm())
    assert_close(get_comp_score(dense_a, dense_b), expected, 1e-5, "dense")
    assert_close(get_comp_score(W_A, W_B), expected, 1e-5, "factored")
    assert_close(get_comp_score(W_A, dense_b), expected, 1e-5, "mixed")
    scores = all_composition_scores(model, "Q")
    assert_close(scores[0, 1, 2, 3], expected, 1e-5, "an entry of all_composition_scores")
    k_score = get_comp_score(dense_a, dense_b.T)
    assert_close(all_composition_scores(model, "K")[0, 1, 2, 3], k_score, 1e-5, "K entry")
    batched = get_comp_score(model.OV[0].AB, model.OV[1].AB)  # head-wise pairs
    assert batched.shape == (4,)


def test_copying_score():
    generator = torch.Generator().manual_seed(12)
    basis, _ = torch.linalg.qr(torch.randn(20, 5, generator=generator))
    copy = FactoredMatrix(basis, basis.T)  # a projection: every nonzero eigenvalue is 1
    assert copying_score(copy).item() == pytest.approx(1.0, abs=1e-5)
    assert copying_score(copy * -2.0).item() == pytest.approx(-1.0, abs=1e-5)
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # eigenvalues +-i: neither
    assert copying_score(rotation).item() == pytest.approx(0.0, abs=1e-6)
    mixed = torch.diag(torch.tensor([3.0, 1.0, -1.0]))
    assert copying_score(mixed).item() == pytest.approx(3.0 / 5.0, abs=1e-6)
    square = FactoredMatrix(torch.randn(2, 9, 4, generator=generator), torch.randn(2, 4, 9))
    assert_close(copying_score(square), copying_score(square.AB), 1e-4, "factored vs dense")


def test_ov_copying_scores(models):
    model, _ = models
    scores = ov_copying_scores(model)
    assert scores.shape == (3, 4) and (scores.abs() <= 1).all()
    assert_close(scores, copying_score(_dense_ov(model)), 1e-4, "vs dense eigenvalues")


@pytest.mark.parametrize("vector_type, head", [("OV", 2), ("w_in", None), ("w_out", None)])
def test_svd_interpreter_matches_transformer_lens(models, vector_type, head):
    from transformer_lens import SVDInterpreter as TLSVDInterpreter

    model, twin = models
    ours = SVDInterpreter(model).get_singular_vectors(vector_type, 1, 5, head)
    theirs = TLSVDInterpreter(twin).get_singular_vectors(vector_type, 1, 5, head)
    assert ours.shape == (model.cfg.d_vocab, 1, 5)
    assert_close(ours, theirs, TL_ATOL, vector_type)
    top = SVDInterpreter(model).top_tokens(vector_type, 1, 5, head, k=3)
    assert top.indices.shape == (5, 3) and len(top.str_tokens) == 5
    assert_close(top.values, ours[:, 0].T.topk(3).values, 0, "top tokens")
    bottom = SVDInterpreter(model).top_tokens(vector_type, 1, 5, head, k=3, largest=False)
    assert_close(bottom.values, ours[:, 0].T.topk(3, largest=False).values, 0, "bottom tokens")


def test_svd_interpreter_folded_norm_and_errors(models):
    model, _ = models
    folded = make_model(seed=11, n_layers=3, d_mlp=64, normalization_type="LNPre")
    interpreter = SVDInterpreter(folded)
    w_in = folded.blocks[0].mlp.W_in.T
    expected = torch.linalg.svd(w_in)[2][:2] @ folded.W_U
    assert_close(interpreter.get_singular_vectors("w_in", 0, 2)[:, 0].T, expected, ATOL, "w_in")
    with pytest.raises(InputError):
        SVDInterpreter(model).get_singular_vectors("OV", 0)
    with pytest.raises((InputError, TypeError)):  # TypeError: jaxtyping checks the Literal
        SVDInterpreter(model).get_singular_vectors("QK", 0, head_index=0)
    with pytest.raises(InputError):
        SVDInterpreter(model).get_singular_vectors("OV", 3, head_index=0)
    attn_only = make_model(seed=1, n_layers=1, attn_only=True)
    with pytest.raises(InputError):
        SVDInterpreter(attn_only).get_singular_vectors("w_out", 0)
