"""`FactoredMatrix`: a product `A @ B` kept as its two factors.

Interpretability reads low-rank products (QK = W_Q W_K^T, OV = W_V W_O, and the full
circuits W_E OV W_U) that would be `d_model x d_model` or `d_vocab x d_vocab` per head
if formed; the factors are `d_model x d_head`. Everything here works on the factors,
broadcasts over leading (layer, head) dimensions, and forms the product only when asked
(`AB`). The API is TransformerLens's `FactoredMatrix`, number for number: the SVD is
computed by the same sequence of small SVDs, so singular vectors (whose signs are
arbitrary) come out the same.

Conventions, as in TransformerLens: `svd()` returns `(U, S, V)` with
`A @ B == U @ diag(S) @ V^T`; `V` is `[..., rdim, mdim]`.
"""

from __future__ import annotations

import warnings
from functools import cached_property

import torch
from jaxtyping import Complex, Float
from torch import Tensor

from lookingglass.errors import InputError


class LeadingDimsMismatchError(InputError, RuntimeError):
    """The leading dimensions of A and B do not broadcast. Also a `RuntimeError`, which is
    what TransformerLens (torch's broadcasting) raises for the same input."""


class FactoredMatrix:
    """The matrix `A @ B`, `A [..., ldim, mdim]`, `B [..., mdim, rdim]`, never formed unless asked.

    Leading dimensions of A and B broadcast against each other (e.g. `[n_layers, n_heads]`).
    """

    def __init__(
        self, A: Float[Tensor, "*leading_a ldim mdim"], B: Float[Tensor, "*leading_b mdim rdim"]
    ) -> None:
        if A.shape[-1] != B.shape[-2]:
            raise InputError(
                f"FactoredMatrix factors must match on the inner dimension: A is "
                f"{tuple(A.shape)}, B is {tuple(B.shape)}."
            )
        self.ldim, self.mdim, self.rdim = A.shape[-2], A.shape[-1], B.shape[-1]
        self.has_leading_dims = A.ndim > 2 or B.ndim > 2
        try:
            leading = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError as error:
            raise LeadingDimsMismatchError(
                f"Shape mismatch: the leading dimensions of A {tuple(A.shape)} and B "
                f"{tuple(B.shape)} do not broadcast; give them equal or size-1 dimensions."
            ) from error
        self.shape = leading + (self.ldim, self.rdim)
        # Views, not copies: broadcasting shares memory with the inputs.
        self.A = A.broadcast_to(leading + (self.ldim, self.mdim))
        self.B = B.broadcast_to(leading + (self.mdim, self.rdim))

    # ------------------------------------------------------------ products
    def __matmul__(self, other: Tensor | FactoredMatrix) -> FactoredMatrix | Tensor:
        """`self @ other`: a FactoredMatrix for a matrix, a tensor for a vector."""
        if isinstance(other, FactoredMatrix):
            return (self @ other.A) @ other.B
        if other.ndim < 2:
            return (self.A @ (self.B @ other.unsqueeze(-1))).squeeze(-1)
        if other.shape[-2] != self.rdim:
            raise InputError(f"Cannot multiply {self!r} by a tensor of shape {tuple(other.shape)}.")
        # Keep the smaller inner dimension (TransformerLens's choice, kept for equal shapes).
        if self.rdim > self.mdim:
            return FactoredMatrix(self.A, self.B @ other)
        return FactoredMatrix(self.AB, other)

    def __rmatmul__(self, other: Tensor | FactoredMatrix) -> FactoredMatrix | Tensor:
        """`other @ self`: a FactoredMatrix for a matrix, a tensor for a vector."""
        if isinstance(other, FactoredMatrix):
            return other.A @ (other.B @ self)
        if other.shape[-1] != self.ldim:
            raise InputError(f"Cannot multiply a tensor of shape {tuple(other.shape)} by {self!r}.")
        if other.ndim < 2:
            return ((other.unsqueeze(-2) @ self.A) @ self.B).squeeze(-2)
        if self.ldim > self.mdim:
            return FactoredMatrix(other @ self.A, self.B)
        return FactoredMatrix(other, self.AB)

    def __mul__(self, scalar: float | Tensor) -> FactoredMatrix:
        """Scalar multiple (scales A)."""
        if isinstance(scalar, Tensor) and scalar.numel() != 1:
            raise InputError(
                f"`*` takes a scalar, got a tensor of shape {tuple(scalar.shape)}; use @ for "
                "matrix products."
            )
        return FactoredMatrix(self.A * scalar, self.B)

    def __rmul__(self, scalar: float | Tensor) -> FactoredMatrix:
        return self * scalar

    @property
    def AB(self) -> Float[Tensor, "... ldim rdim"]:
        """The full product `A @ B` (formed: can be large)."""
        return self.A @ self.B

    @property
    def BA(self) -> Float[Tensor, "... mdim mdim"]:
        """The reversed product `B @ A`; only defined when ldim == rdim."""
        if self.ldim != self.rdim:
            raise InputError(
                f"BA needs a square matrix (ldim == rdim), this is {tuple(self.shape)}."
            )
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        """The transpose, `B^T A^T`."""
        return FactoredMatrix(self.B.transpose(-2, -1), self.A.transpose(-2, -1))

    @property
    def pair(self) -> tuple[Tensor, Tensor]:
        """The factors `(A, B)`."""
        return self.A, self.B

    # ----------------------------------------------------------------- SVD
    @cached_property
    def _svd(self) -> tuple[Tensor, Tensor, Tensor]:
        # A = Ua Sa Va^T, B = Ub Sb Vb^T, so A B = Ua (Sa Va^T Ub Sb) Vb^T: one SVD of the
        # small mdim x mdim middle gives the SVD of the product.
        Ua, Sa, Vha = torch.linalg.svd(self.A, full_matrices=False)
        Ub, Sb, Vhb = torch.linalg.svd(self.B, full_matrices=False)
        middle = Sa[..., :, None] * Vha @ Ub * Sb[..., None, :]
        Um, Sm, Vhm = torch.linalg.svd(middle, full_matrices=False)
        return Ua @ Um, Sm, Vhb.transpose(-2, -1) @ Vhm.transpose(-2, -1)

    def svd(
        self,
    ) -> tuple[
        Float[Tensor, "... ldim mdim"], Float[Tensor, "... mdim"], Float[Tensor, "... rdim mdim"]
    ]:
        """`(U, S, V)` with `A @ B == U @ diag(S) @ V^T`, computed from the factors (cached)."""
        return self._svd

    @property
    def U(self) -> Float[Tensor, "... ldim mdim"]:
        """Left singular vectors, as columns."""
        return self._svd[0]

    @property
    def S(self) -> Float[Tensor, "... mdim"]:
        """Singular values, descending."""
        return self._svd[1]

    @property
    def V(self) -> Float[Tensor, "... rdim mdim"]:
        """Right singular vectors, as columns."""
        return self._svd[2]

    @property
    def Vh(self) -> Float[Tensor, "... rdim mdim"]:
        """Deprecated alias of `V` (not its transpose), kept because TransformerLens's `Vh`
        has always returned V; warns."""
        warnings.warn(
            "FactoredMatrix.Vh returns V (right singular vectors as columns), as in "
            "TransformerLens; use .V, or .V.transpose(-2, -1) for the conjugate transpose.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._svd[2]

    @property
    def eigenvalues(self) -> Complex[Tensor, "... mdim"]:
        """The (up to mdim) eigenvalues of A B, computed as those of the small B A: if
        B A v = k v then A B (A v) = k (A v). The other eigenvalues of A B are zero."""
        BA = self.BA
        if BA.dtype in (torch.float16, torch.bfloat16):
            BA = BA.float()  # eig has no half-precision kernel
        return torch.linalg.eig(BA).eigenvalues

    def norm(self) -> Float[Tensor, "..."]:
        """Frobenius norm, from the singular values."""
        return self.S.pow(2).sum(-1).sqrt()

    def make_even(self) -> FactoredMatrix:
        """The same matrix factored as `(U sqrt(S), sqrt(S) V^T)`: each half carries half of
        the singular values and has orthogonal columns / rows."""
        root = self.S.sqrt()
        return FactoredMatrix(
            self.U * root[..., None, :], root[..., :, None] * self.V.transpose(-2, -1)
        )

    def collapse_l(self) -> Float[Tensor, "... mdim rdim"]:
        """`S V^T`: the matrix with its left orthogonal factor U removed."""
        return self.S[..., :, None] * self.V.transpose(-2, -1)

    def collapse_r(self) -> Float[Tensor, "... ldim mdim"]:
        """`U S`: the matrix with its right orthogonal factor V^T removed."""
        return self.U * self.S[..., None, :]

    # ------------------------------------------------------------- indexing
    def __getitem__(self, idx) -> FactoredMatrix:
        """Index the leading dimensions; an index one or two longer also selects rows / columns
        of the product, as in TransformerLens (ints keep their dimension there)."""
        idx = idx if isinstance(idx, tuple) else (idx,)
        length = len([i for i in idx if i is not None])
        n_leading = len(self.shape) - 2
        if length <= n_leading:
            return FactoredMatrix(self.A[idx], self.B[idx])
        if length == n_leading + 1:
            idx = _keep_dim(idx, -1)
            return FactoredMatrix(self.A[idx], self.B[idx[:-1]])
        if length == n_leading + 2:
            idx = _keep_dim(_keep_dim(idx, -1), -2)
            return FactoredMatrix(self.A[idx[:-1]], self.B[idx[:-2] + (slice(None), idx[-1])])
        raise InputError(
            f"Index {idx} is too long for a FactoredMatrix of shape {tuple(self.shape)}."
        )

    def unsqueeze(self, k: int) -> FactoredMatrix:
        """Insert a leading dimension of size 1 at `k` (k counts leading dimensions)."""
        return FactoredMatrix(self.A.unsqueeze(k), self.B.unsqueeze(k))

    def get_corner(self, k: int = 3) -> Tensor:
        """The top-left `k x k` corner of the product, and the first k of each leading dim."""
        corner = self.A[..., :k, :] @ self.B[..., :, :k]
        return corner[tuple(slice(k) for _ in range(corner.ndim))]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"FactoredMatrix: Shape({self.shape}), Hidden Dim({self.mdim})"


def _keep_dim(idx: tuple, position: int) -> tuple:
    """Turn an int at `position` into a length-1 slice, so indexing keeps the dimension."""
    idx = list(idx)
    value = idx[position]
    if isinstance(value, int):
        idx[position] = slice(value, value + 1 if value != -1 else None)
    return tuple(idx)


def composition_scores(
    left: FactoredMatrix, right: FactoredMatrix, broadcast_dims: bool = True
) -> Float[Tensor, "..."]:
    """Composition scores `||L R||_F / (||L||_F ||R||_F)` of a writing circuit `left` (an
    OV) into a reading circuit `right` (a QK, QK^T or OV), as TransformerLens's
    `utils.composition_scores` ("A Mathematical Framework", section on composition).

    With `broadcast_dims`, every leading index of `left` is paired with every leading
    index of `right`: `[*left_leading, *right_leading]`. Otherwise the leading dims
    broadcast as in a matmul. The score is in [0, 1]; random matrices score about
    `1 / sqrt(d_model)` times a rank factor, so compare against a baseline.
    """
    if broadcast_dims:
        r_leading, l_leading = right.ndim - 2, left.ndim - 2
        for i in range(l_leading):
            right = right.unsqueeze(i)
        for i in range(r_leading):
            left = left.unsqueeze(i + l_leading)
    if left.rdim != right.ldim:
        raise InputError(
            f"Composition needs left.rdim == right.ldim, got {tuple(left.shape)} and "
            f"{tuple(right.shape)}."
        )
    # The Frobenius norm ignores orthogonal factors: drop U of left and V of right.
    new_left, new_right = left.collapse_l(), right.collapse_r()
    left_norms = new_left.norm(dim=(-2, -1))
    right_norms = new_right.norm(dim=(-2, -1))
    return (new_left @ new_right).norm(dim=(-2, -1)) / right_norms / left_norms
