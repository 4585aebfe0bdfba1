"""Small tensor helpers with TransformerLens's names and meanings
(`transformer_lens.utilities.tensors`, `attribute_utils`, `parameter_swap`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.errors import InputError


def to_numpy(tensor: Any) -> np.ndarray:
    """A numpy array from a tensor (detached, on CPU; bfloat16 becomes float32, which
    numpy lacks), a list or tuple, an array, or a Python scalar or string."""
    if isinstance(tensor, np.ndarray):
        return tensor
    if isinstance(tensor, list | tuple):
        return np.array(tensor)
    if isinstance(tensor, Tensor):
        tensor = tensor.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.to(torch.float32)
        return tensor.numpy()
    if isinstance(tensor, int | float | bool | str):
        return np.array(tensor)
    raise ValueError(f"Input to to_numpy has invalid type: {type(tensor)}")


def get_corner(tensor: Any, n: int = 3) -> Any:
    """The top-left `n x n x ...` corner of a tensor (any object indexable by slices)."""
    return tensor[tuple(slice(n) for _ in range(tensor.ndim))]


def remove_batch_dim(tensor: Float[Tensor, "1 ..."]) -> Float[Tensor, "..."]:
    """Drop the first dimension if it has size 1; otherwise return the tensor unchanged."""
    return tensor.squeeze(0) if tensor.shape[0] == 1 else tensor


def transpose(tensor: Float[Tensor, "... a b"]) -> Float[Tensor, "... b a"]:
    """Swap the last two dimensions."""
    return tensor.transpose(-1, -2)


def is_square(x: Tensor) -> bool:
    """Whether `x` is a 2-D square matrix."""
    return x.ndim == 2 and x.shape[0] == x.shape[1]


def is_lower_triangular(x: Tensor) -> bool:
    """Whether `x` is a square, lower-triangular matrix."""
    return is_square(x) and x.equal(x.tril())


def check_structure(t1: Tensor, t2: Tensor, *, verbose: bool = False) -> None:
    """Print whether two same-shape matrices order their neighbouring rows and columns
    the same way (`t[i] >= t[i + 1]` elementwise), as TransformerLens's debugging helper:
    "PASSED", or the first kind of mismatch with its indices."""
    assert t1.ndim == 2
    assert t1.shape == t2.shape
    mismatches = {}
    for axis, name in ((0, "rows"), (1, "columns")):
        if verbose:
            print(f"Checking {name}")
        a, b = (t1, t2) if axis == 0 else (t1.T, t2.T)
        found = []
        for i in range(a.shape[0] - 1):
            r1, r2 = a[i].ge(a[i + 1]), b[i].ge(b[i + 1])
            if any(r1 != r2):
                found.append(i)
                if verbose:
                    print(f"\trows {i}:{i + 1}")
                    print(f"\tt1: {r1.tolist()}")
                    print(f"\tt2: {r2.tolist()}")
        mismatches[name] = found
    if not mismatches["rows"] and not mismatches["columns"]:
        print("PASSED")
    elif mismatches["rows"]:
        print(f"row mismatch: {mismatches['rows']}")
    else:
        print(f"column mismatch: {mismatches['columns']}")


def get_offset_position_ids(
    past_kv_pos_offset: int, attention_mask: Int[Tensor, "batch offset_pos"]
) -> Int[Tensor, "batch pos"]:
    """Position ids counting from each row's first attended token (leading pads get 0),
    for the positions after `past_kv_pos_offset`."""
    shifted = attention_mask.cumsum(dim=1) - 1
    return shifted.masked_fill(shifted < 0, 0)[:, past_kv_pos_offset:]


def get_cumsum_along_dim(tensor: Tensor, dim: int, reverse: bool = False) -> Tensor:
    """Cumulative sum along `dim`; `reverse=True` sums from the end."""
    if reverse:
        return tensor.flip(dims=(dim,)).cumsum(dim=dim).flip(dims=(dim,))
    return tensor.cumsum(dim=dim)


def repeat_along_head_dimension(
    tensor: Float[Tensor, "batch pos d_model"], n_heads: int, clone_tensor: bool = True
) -> Float[Tensor, "batch pos n_heads d_model"]:
    """The residual stream copied once per head (a fresh copy unless `clone_tensor=False`,
    which returns an expanded view sharing storage)."""
    repeated = tensor.unsqueeze(2).expand(-1, -1, n_heads, -1)
    return repeated.clone() if clone_tensor else repeated


def filter_dict_by_prefix(dictionary: dict, prefix: str) -> dict:
    """The entries whose key starts with `prefix` + "." (the dot is added if missing),
    with that prefix stripped from the keys."""
    search = prefix if prefix.endswith(".") else prefix + "."
    return {k[len(search) :]: v for k, v in dictionary.items() if k.startswith(search)}


def get_nested_attr(obj: Any, attr_str: str) -> Any:
    """`obj.a.b.c` for `attr_str="a.b.c"`."""
    for attr in attr_str.split("."):
        obj = getattr(obj, attr)
    return obj


def set_nested_attr(obj: Any, attr_str: str, value: Any) -> None:
    """Set `obj.a.b.c = value` for `attr_str="a.b.c"`."""
    *path, last = attr_str.split(".")
    for attr in path:
        obj = getattr(obj, attr)
    setattr(obj, last, value)


@contextmanager
def temporarily_swap_parameter(parameter: Any, new_value: Any) -> Iterator[torch.nn.Parameter]:
    """Inside the block, `parameter` holds `new_value` (in place); its old data comes
    back when the block ends, even on an exception."""
    if not isinstance(parameter, torch.nn.Parameter) or not isinstance(new_value, Tensor):
        raise InputError(
            "temporarily_swap_parameter takes an nn.Parameter and a tensor, got "
            f"{type(parameter).__name__} and {type(new_value).__name__}."
        )
    if new_value.shape != parameter.shape or new_value.dtype != parameter.dtype:
        raise InputError(
            f"new_value ({tuple(new_value.shape)}, {new_value.dtype}) must match the "
            f"parameter ({tuple(parameter.shape)}, {parameter.dtype})."
        )
    saved = parameter.detach().clone()
    try:
        with torch.no_grad():
            parameter.copy_(new_value)
        yield parameter
    finally:
        with torch.no_grad():
            parameter.copy_(saved)
