"""Make every tensor of a state dict safe to write into: no two keys share an element.

A converter returns views of the checkpoint's tensors (`W_Q`, `W_K`, `W_V` are slices
of GPT-2's fused `c_attn`; a tied `W_U` is `W_E` transposed). Writing into one view
is safe when no other key sees the same elements; `exclusive` finds the keys that do,
exactly (views of one buffer that interleave without touching, such as the column
slices of `c_attn`, stay shared), and gives them a copy of their own.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor


def exclusive(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """`sd` with a private copy for every tensor that shares an element with an earlier
    key's tensor, or refers to one element twice (an `expand`ed tensor). Returns `sd`,
    changed in place; tensors already exclusive are left as they are (no copy)."""
    by_storage: dict[tuple, list[str]] = defaultdict(list)
    for key, tensor in sd.items():
        if tensor.device.type == "meta" or tensor.numel() == 0:
            continue
        if _overlaps_itself(tensor):
            sd[key] = tensor = tensor.clone()
        storage = tensor.untyped_storage()
        by_storage[(tensor.device, storage.data_ptr(), storage.nbytes())].append(key)
    for (device, _, nbytes), keys in by_storage.items():
        kept: list[Tensor] = []
        seen = None  # one flag per byte of the buffer, made only if spans intersect
        for key in keys:
            tensor = sd[key]
            if any(_spans_meet(tensor, other) for other in kept):
                if seen is None:
                    seen = torch.zeros(nbytes, dtype=torch.bool, device=device)
                    for other in kept:
                        _bytes_of(seen, other).fill_(True)
                if bool(_bytes_of(seen, tensor).any()):
                    sd[key] = tensor.clone()
                    continue
            if seen is not None:
                _bytes_of(seen, tensor).fill_(True)
            kept.append(tensor)
    return sd


def _spans_meet(a: Tensor, b: Tensor) -> bool:
    """Whether the storage ranges `a` and `b` can touch intersect (cheap and
    conservative: interleaved views meet without sharing an element)."""
    (a0, a1), (b0, b1) = _span(a), _span(b)
    return a0 < b1 and b0 < a1


def _span(tensor: Tensor) -> tuple[int, int]:
    """First and one-past-last byte of the storage that `tensor` can touch."""
    size = tensor.element_size()
    last = sum((n - 1) * stride for n, stride in zip(tensor.shape, tensor.stride(), strict=True))
    first = tensor.storage_offset() * size
    return first, first + (last + 1) * size


def _bytes_of(buffer: Tensor, tensor: Tensor) -> Tensor:
    """The bytes of `buffer` (one entry per byte of the storage) that `tensor` covers, as
    a view `[*tensor.shape, itemsize]`."""
    size = tensor.element_size()
    return buffer.as_strided(
        (*tensor.shape, size),
        (*(stride * size for stride in tensor.stride()), 1),
        tensor.storage_offset() * size,
    )


def _overlaps_itself(tensor: Tensor) -> bool:
    """Whether two indices of `tensor` name the same element (a zero stride, or
    strides that collide); writing into such a tensor is refused by PyTorch."""
    return torch._debug_has_internal_overlap(tensor) == 1  # 2 means "too hard to tell"
