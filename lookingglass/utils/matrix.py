"""`FactoredMatrix` helpers with TransformerLens's names (`utilities.matrix`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lookingglass.utils.tensors import get_corner


def composition_scores(left: Any, right: Any, broadcast_dims: bool = True) -> Tensor:
    """Composition scores of two `FactoredMatrix` circuits,
    `||left @ right||_F / (||left||_F ||right||_F)`; see
    `lookingglass.factored_matrix.composition_scores`."""
    from lookingglass.factored_matrix import composition_scores as scores

    return scores(left, right, broadcast_dims)


def get_matrix_corner(matrix: Any, n: int = 3) -> Tensor:
    """The top-left `n x n` corner of a `FactoredMatrix`, as a dense tensor."""
    return get_corner(matrix[tuple(slice(n) for _ in range(matrix.ndim))]).AB
