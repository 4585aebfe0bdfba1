"""`Slice`: TransformerLens's one-dimension slice (`transformer_lens.utilities.slice`)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.utils.tensors import to_numpy

SliceInput = int | tuple | slice | list | Tensor | np.ndarray | None


class Slice:
    """A slice along one dimension, TransformerLens's `utils.Slice`.

    `None`: everything (identity). An int: that index (the dimension is dropped). A
    tuple: `slice(*tuple)`, so `(k,)` is `:k` and `(m, k)` is `m:k`. A slice: itself. A
    list, tensor or array: those indices, or a boolean mask (the dimension is kept).
    """

    def __init__(self, input_slice: SliceInput | Slice = None) -> None:
        if isinstance(input_slice, Slice):
            self.slice, self.mode = input_slice.slice, input_slice.mode
        elif isinstance(input_slice, tuple):
            self.slice, self.mode = slice(*input_slice), "slice"
        elif isinstance(input_slice, int):
            self.slice, self.mode = input_slice, "int"
        elif isinstance(input_slice, slice):
            self.slice, self.mode = input_slice, "slice"
        elif isinstance(input_slice, list | Tensor | np.ndarray):
            self.slice, self.mode = to_numpy(input_slice), "array"  # indices or a bool mask
        elif input_slice is None:
            self.slice, self.mode = slice(None), "identity"
        else:
            raise InputError(
                f"A slice is None, an int, a tuple, a slice, or a list/tensor/array of indices; "
                f"got {type(input_slice).__name__}."
            )

    def apply(self, tensor: Tensor, dim: int = 0) -> Tensor:
        """`tensor` sliced along `dim` (negative dims count from the end)."""
        index: list = [slice(None)] * tensor.ndim
        index[dim] = self.slice
        return tensor[tuple(index)]

    def indices(self, max_ctx: int | None = None) -> np.ndarray:
        """The indices this slice selects from an axis of length `max_ctx`."""
        if self.mode == "int":
            return np.array([self.slice], dtype=np.int64)
        if max_ctx is None:
            raise ValueError("max_ctx is needed for a slice that is not an integer.")
        return np.arange(max_ctx, dtype=np.int64)[self.slice]

    @classmethod
    def unwrap(cls, slice_input: SliceInput | Slice) -> Slice:
        """A Slice; an int becomes a one-element list, so the dimension is kept."""
        if isinstance(slice_input, Slice):
            return slice_input
        return cls([slice_input] if isinstance(slice_input, int) else slice_input)

    def __repr__(self) -> str:
        return f"Slice: {self.slice} Mode: {self.mode} "
