"""`FactoredMatrix`: a product `A @ B` kept as its two factors.

Interpretability reads low-rank products (QK = W_Q W_K^T, OV = W_V W_O) that would be
`d_model x d_model` per head if formed; the factors are `d_model x d_head`. Everything
here works on the factors and broadcasts over leading (layer, head) dimensions.
"""

from __future__ import annotations

from functools import cached_property

import torch
from jaxtyping import Float
from torch import Tensor


class FactoredMatrix:
    """The matrix `A @ B`, `A [..., ldim, mdim]`, `B [..., mdim, rdim]`, never formed unless asked."""

    def __init__(self, A: Float[Tensor, "... ldim mdim"], B: Float[Tensor, "... mdim rdim"]) -> None:
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(f"Inner dimensions differ: A is {tuple(A.shape)}, B is {tuple(B.shape)}.")
        self.A, self.B = A, B
        self.ldim, self.mdim, self.rdim = A.shape[-2], A.shape[-1], B.shape[-1]
        self.has_leading_dims = A.dim() > 2 or B.dim() > 2
        self.shape = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (self.ldim, self.rdim)

    def __matmul__(self, other):
        if isinstance(other, FactoredMatrix):
            return (self @ other.A) @ other.B
        if other.dim() == 1:
            return self.A @ (self.B @ other)
        return FactoredMatrix(self.A, self.B @ other)

    def __rmatmul__(self, other):
        if other.dim() == 1:
            return (other @ self.A) @ self.B
        return FactoredMatrix(other @ self.A, self.B)

    def __mul__(self, scalar: float) -> FactoredMatrix:
        return FactoredMatrix(self.A * scalar, self.B)

    __rmul__ = __mul__

    @property
    def AB(self) -> Tensor:
        """The full product `A @ B`."""
        return self.A @ self.B

    @property
    def BA(self) -> Tensor:
        """The reversed product `B @ A` (square `mdim x mdim` when ldim == rdim)."""
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        """The transpose, `B^T A^T`."""
        return FactoredMatrix(self.B.transpose(-2, -1), self.A.transpose(-2, -1))

    @cached_property
    def _svd(self) -> tuple[Tensor, Tensor, Tensor]:
        # SVD of A B from the small factors: A = Ua Sa Vha, then (Sa Vha B) = Uc Sc Vhc.
        Ua, Sa, Vha = torch.linalg.svd(self.A, full_matrices=False)
        Uc, Sc, Vhc = torch.linalg.svd(Sa[..., :, None] * Vha @ self.B, full_matrices=False)
        return Ua @ Uc, Sc, Vhc

    def svd(self) -> tuple[Tensor, Tensor, Tensor]:
        """`U [..., ldim, mdim]`, `S [..., mdim]`, `Vh [..., mdim, rdim]` with A B = U diag(S) Vh."""
        U, S, Vh = self._svd
        return U, S, Vh

    @property
    def U(self) -> Tensor:
        return self._svd[0]

    @property
    def S(self) -> Tensor:
        return self._svd[1]

    @property
    def Vh(self) -> Tensor:
        return self._svd[2]

    @property
    def eigenvalues(self) -> Tensor:
        """Nonzero eigenvalues of A B, computed as those of the small B A."""
        return torch.linalg.eig(self.BA).eigenvalues

    def norm(self) -> Tensor:
        """Frobenius norm, from the singular values."""
        return self.S.pow(2).sum(-1).sqrt()

    def get_corner(self, k: int = 3) -> Tensor:
        """The top-left `k x k` block of the product."""
        return self.A[..., :k, :] @ self.B[..., :, :k]

    def __getitem__(self, idx) -> FactoredMatrix:
        """Index the leading (layer, head) dimensions."""
        if len(self.shape) == 2:
            raise IndexError("This FactoredMatrix has no leading dimensions to index.")
        A = self.A.expand(*self.shape[:-2], self.ldim, self.mdim)
        B = self.B.expand(*self.shape[:-2], self.mdim, self.rdim)
        return FactoredMatrix(A[idx], B[idx])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={tuple(self.shape)}, hidden dim={self.mdim})"
