"""`FactoredMatrix`: every operation equals the same operation on the formed product, the
product is never needed, and the numbers (singular vectors included) are TransformerLens's."""

from __future__ import annotations

import pytest
import torch

from lookingglass import FactoredMatrix, InputError
from tests._helpers import assert_close

ATOL = 1e-4


def _factors(*leading: int, ldim: int = 7, mdim: int = 3, rdim: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    A = torch.randn(*leading, ldim, mdim, generator=generator)
    B = torch.randn(*leading, mdim, rdim, generator=generator)
    return A, B


@pytest.fixture
def fm() -> FactoredMatrix:
    return FactoredMatrix(*_factors(2, 3))


def test_products_transpose_and_shape(fm):
    assert fm.shape == (2, 3, 7, 6) and fm.ndim == 4 and (fm.ldim, fm.mdim, fm.rdim) == (7, 3, 6)
    assert_close(fm.AB, fm.A @ fm.B, 0, "AB")
    assert_close(fm.T.AB, fm.AB.transpose(-2, -1), ATOL, "T")
    square = FactoredMatrix(*_factors(2, ldim=5, rdim=5))
    assert_close(square.BA, square.B @ square.A, 0, "BA")
    with pytest.raises(InputError):
        fm.BA  # noqa: B018  (7 x 6 is not square)


def test_leading_dims_broadcast_without_copies():
    A, _ = _factors(4, 1)
    _, B = _factors(3, seed=1)
    fm = FactoredMatrix(A, B)
    assert fm.shape == (4, 3, 7, 6)
    assert fm.A.data_ptr() == A.data_ptr()  # a broadcast view
    assert_close(fm.AB, A @ B, ATOL, "broadcast AB")
    # InputError; a TypeError first when jaxtyping checks the annotations at run time.
    with pytest.raises((InputError, TypeError)):
        FactoredMatrix(torch.randn(2, 5, 3), torch.randn(3, 4, 6))
    with pytest.raises((InputError, TypeError)):
        FactoredMatrix(torch.randn(5, 3), torch.randn(4, 6))


def test_matmul_with_tensors_vectors_and_factored(fm):
    generator = torch.Generator().manual_seed(3)
    right = torch.randn(6, 9, generator=generator)
    left = torch.randn(4, 7, generator=generator)
    assert isinstance(fm @ right, FactoredMatrix)
    assert_close((fm @ right).AB, fm.AB @ right, ATOL, "fm @ M")
    assert_close((left @ fm).AB, left @ fm.AB, ATOL, "M @ fm")
    vector_r, vector_l = torch.randn(6, generator=generator), torch.randn(7, generator=generator)
    assert_close(fm @ vector_r, fm.AB @ vector_r, ATOL, "fm @ v")
    assert_close(vector_l @ fm, vector_l @ fm.AB, ATOL, "v @ fm")
    other = FactoredMatrix(
        torch.randn(6, 2, generator=generator), torch.randn(2, 5, generator=generator)
    )
    assert_close((fm @ other).AB, fm.AB @ other.AB, ATOL, "fm @ fm")
    assert_close((other.T @ fm.T).AB, other.AB.T @ fm.AB.transpose(-2, -1), ATOL, "fm @ fm (r)")
    assert_close((2.5 * fm).AB, 2.5 * fm.AB, ATOL, "scalar")
    assert_close((fm * torch.tensor(-1.5)).AB, -1.5 * fm.AB, ATOL, "tensor scalar")
    with pytest.raises(InputError):
        fm @ torch.randn(5, 2)
    with pytest.raises(InputError):
        fm * torch.ones(2)


def test_svd_norm_eigenvalues_from_factors(fm):
    U, S, V = fm.svd()
    assert U.shape == (2, 3, 7, 3) and S.shape == (2, 3, 3) and V.shape == (2, 3, 6, 3)
    assert_close(U @ torch.diag_embed(S) @ V.transpose(-2, -1), fm.AB, ATOL, "U S V^T")
    assert_close(S, torch.linalg.svdvals(fm.AB)[..., :3], ATOL, "singular values")
    assert_close(U.transpose(-2, -1) @ U, torch.eye(3).expand(2, 3, 3, 3), ATOL, "U orthonormal")
    assert_close(fm.norm(), fm.AB.norm(dim=(-2, -1)), ATOL, "Frobenius norm")
    assert_close(fm.collapse_l(), torch.diag_embed(S) @ V.transpose(-2, -1), ATOL, "collapse_l")
    assert_close(fm.collapse_r(), U @ torch.diag_embed(S), ATOL, "collapse_r")
    even = fm.make_even()
    assert_close(even.AB, fm.AB, ATOL, "make_even")
    assert_close(even.A.norm(dim=-2), even.B.norm(dim=-1), ATOL, "make_even is even")
    with pytest.warns(DeprecationWarning):
        assert fm.Vh is fm.V  # TransformerLens's Vh has always been V
    square = FactoredMatrix(*_factors(2, ldim=8, mdim=3, rdim=8))
    ours = square.eigenvalues
    dense = torch.linalg.eigvals(square.AB)
    for i in range(2):  # the 3 nonzero eigenvalues of the 8 x 8 product, in any order
        largest = dense[i][dense[i].abs().argsort(descending=True)[:3]]
        assert_close(_sorted(ours[i]), _sorted(largest), ATOL, "eigenvalues")


def _sorted(eigenvalues: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(eigenvalues.real * 1e3 + eigenvalues.imag)
    return torch.view_as_real(eigenvalues[order])


def test_indexing_leading_and_matrix_dims(fm):
    assert_close(fm[1].AB, fm.AB[1], ATOL, "fm[1]")
    assert_close(fm[1, 2].AB, fm.AB[1, 2], ATOL, "fm[1, 2]")
    assert_close(fm[:, 0].AB, fm.AB[:, 0], ATOL, "fm[:, 0]")
    assert_close(fm[1, 2, 3].AB, fm.AB[1, 2, 3:4], ATOL, "row (kept as a dim)")
    assert_close(fm[1, 2, -1].AB, fm.AB[1, 2, -1:], ATOL, "last row")
    assert_close(fm[1, 2, 1:4, 2].AB, fm.AB[1, 2, 1:4, 2:3], ATOL, "block")
    assert_close(fm.get_corner(2), fm.AB[:2, :2, :2, :2], ATOL, "corner")
    assert_close(fm.unsqueeze(0).AB, fm.AB[None], ATOL, "unsqueeze")
    with pytest.raises(InputError):
        fm[0, 0, 0, 0, 0]


def test_numbers_match_transformer_lens(fm):
    tl = pytest.importorskip("transformer_lens.FactoredMatrix")
    theirs = tl.FactoredMatrix(fm.A, fm.B)
    for ours_t, theirs_t, what in zip(fm.svd(), theirs.svd(), "USV", strict=True):
        assert_close(ours_t, theirs_t, 1e-5, what)  # same algorithm: same signs
    for a, b in [(fm.make_even(), theirs.make_even()), (fm[1, :, 2], theirs[1, :, 2])]:
        assert_close(a.A, b.A, 1e-5, "A") and assert_close(a.B, b.B, 1e-5, "B")
    assert_close(fm.get_corner(), theirs.get_corner(), 1e-5, "corner")
    square = FactoredMatrix(*_factors(2, ldim=8, rdim=8))
    eig = tl.FactoredMatrix(square.A, square.B).eigenvalues
    assert_close(torch.view_as_real(square.eigenvalues), torch.view_as_real(eig), 1e-5, "eig")
    right = torch.randn(6, 9)
    assert (fm @ right).mdim == (theirs @ right).mdim
    assert (right.T @ fm.T).mdim == (right.T @ theirs.T).mdim
