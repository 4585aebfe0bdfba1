"""Argument checks at the model's public entry points (`forward`, `to_tokens`,
`to_string`, `generate`, `run_with_cache`).

Each function takes one argument as the caller gave it, raises `InputError` naming the
argument, the value given and what is allowed, and returns the argument in the form the
model uses (token ids `[batch, pos]`, an integer attention mask, ...). The checks are a
few comparisons and at most one reduction per tensor, so they cost nothing next to a
forward pass. What TransformerLens 3.9 accepts and computes meaningfully is accepted
(negative layers in range, Python slice semantics, `temperature=0` for greedy decoding);
what it answers silently or with an unrelated error (a mask of 2s, layer 7 of a 2-layer
model, `top_p=1.5`) is refused here.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.errors import InputError

# Integer dtypes embedding lookups accept; others (uint8 is read as a boolean mask by
# torch's indexing, int16 is refused by it) are refused with a hint.
_TOKEN_DTYPES = (torch.int64, torch.int32)
PADDING_SIDES = ("left", "right")


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{value!r} ({type(value).__name__})"


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """`value` as an int (bools refused), at least `minimum` when given."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer, got {_describe(value)}.")
    try:
        number = operator.index(value)
    except TypeError:
        raise InputError(f"{name} must be an integer, got {_describe(value)}.") from None
    if minimum is not None and number < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {number}.")
    return number


def optional_bool(name: str, value: Any) -> bool | None:
    """`value` if it is True, False or None (the model's default)."""
    if value is not None and not isinstance(value, bool):
        raise InputError(
            f"{name} must be True, False or None (the model's default), got {_describe(value)}."
        )
    return value


def padding_side(value: Any) -> str | None:
    """`value` if it is "left", "right" or None (the tokenizer's default)."""
    if value is not None and value not in PADDING_SIDES:
        raise InputError(
            f"padding_side must be 'left', 'right' or None (the tokenizer's default), "
            f"got {_describe(value)}."
        )
    return value


def token_tensor(value: Any, name: str = "tokens") -> Int[Tensor, "batch pos"]:
    """Token ids `[pos]` or `[batch, pos]` of an integer dtype, as `[batch, pos]`."""
    if not isinstance(value, Tensor):
        raise InputError(
            f"{name} must be a string, a list of strings or a tensor of token ids, got "
            f"{type(value).__name__}."
        )
    if value.dtype not in _TOKEN_DTYPES:
        hint = (
            " To feed a residual stream, pass start_at_layer=." if value.is_floating_point() else ""
        )
        raise InputError(
            f"{name} must hold integer token ids (torch.long or torch.int32), got "
            f"{_describe(value)}. Convert with .long().{hint}"
        )
    if value.dim() == 1:
        return value[None]
    if value.dim() != 2:
        raise InputError(
            f"{name} must be [pos] or [batch, pos], got {_describe(value)}. A list of "
            "prompts is a [batch, pos] tensor (or a list of strings)."
        )
    return value


def token_range(tokens: Tensor, d_vocab: int, name: str = "tokens") -> None:
    """Every id in `[0, d_vocab)` (one min and one max)."""
    if tokens.numel() == 0:
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= d_vocab:
        bad = low if low < 0 else high
        raise InputError(
            f"Token id {bad} in {name} is outside the vocabulary: ids must be in "
            f"[0, {d_vocab}) (d_vocab={d_vocab})."
        )


def attention_mask(mask: Any, shape: tuple[int, ...], what: str = "the tokens") -> Tensor:
    """A `[batch, pos]` mask of 0s and 1s (any numeric or bool dtype) as torch.long."""
    if not isinstance(mask, Tensor):
        raise InputError(
            f"attention_mask must be a tensor of 0s and 1s, got {type(mask).__name__}."
        )
    if tuple(mask.shape) != tuple(shape):
        raise InputError(
            f"attention_mask must have the shape of {what}, {tuple(shape)} ([batch, pos]), "
            f"got {tuple(mask.shape)}."
        )
    if mask.dtype == torch.bool or mask.numel() == 0:
        return mask.long()
    if not mask.is_floating_point():  # one reduction; the element-wise test only on failure
        low, high = torch.aminmax(mask)
        ok = 0 <= int(low) and int(high) <= 1
    else:
        ok = False
    if not ok:
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            value = mask[bad][0].item()
            raise InputError(
                f"attention_mask must hold only 0 (padding) and 1 (real token), got {value}."
            )
    return mask.long()


def layer_range(
    start_at_layer: Any, stop_at_layer: Any, n_layers: int
) -> tuple[int | None, int | None]:
    """`start_at_layer` and `stop_at_layer` in `[-n_layers, n_layers]` (negative ones count
    from the end, as Python slices), the start not after the stop."""
    bounds = {}
    for name, value in (("start_at_layer", start_at_layer), ("stop_at_layer", stop_at_layer)):
        if value is None:
            continue
        layer = integer(name, value)
        if not -n_layers <= layer <= n_layers:
            raise InputError(
                f"{name} must be in [-{n_layers}, {n_layers}] for a model with n_layers="
                f"{n_layers} (negative counts from the end), got {layer}."
            )
        bounds[name] = layer % n_layers if layer < 0 else layer
    start, stop = bounds.get("start_at_layer", 0), bounds.get("stop_at_layer", n_layers)
    if start > stop:
        raise InputError(
            f"start_at_layer={start_at_layer} comes after stop_at_layer={stop_at_layer}: no "
            "block would run."
        )
    return start_at_layer, stop_at_layer


def residual(
    value: Any, d_model: int, n_ctx: int, n_past: int = 0, cached_batch: int | None = None
) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream given with `start_at_layer`: float `[batch, pos, d_model]`
    that fits the context with the `n_past` cached positions (of `cached_batch` rows)."""
    if not isinstance(value, Tensor) or not value.is_floating_point():
        got = _describe(value) if isinstance(value, Tensor) else type(value).__name__
        raise InputError(
            "With start_at_layer, input is the residual stream [batch, pos, d_model] entering "
            f"that layer (a float tensor), got {got}."
        )
    if value.dim() != 3 or value.shape[-1] != d_model or value.shape[1] == 0:
        raise InputError(
            f"With start_at_layer, input must be [batch, pos, d_model] with d_model={d_model} "
            f"and pos >= 1, got shape {tuple(value.shape)}."
        )
    if n_past + value.shape[1] > n_ctx:
        raise InputError(
            f"The residual stream has {value.shape[1]} positions (plus {n_past} cached), more "
            f"than the model's context n_ctx={n_ctx}."
        )
    if cached_batch is not None and cached_batch != value.shape[0]:
        raise InputError(
            f"past_kv_cache holds batch size {cached_batch}, the residual stream {value.shape[0]}."
        )
    return value


def finite_number(name: str, value: Any, minimum: float | None = None) -> float:
    """A finite real number, at least `minimum` when given."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if not (isinstance(value, Tensor) and value.numel() == 1):
            raise InputError(f"{name} must be a number, got {_describe(value)}.")
    number = float(value)
    if not math.isfinite(number) or (minimum is not None and number < minimum):
        allowed = "a finite number" if minimum is None else f"a finite number >= {minimum}"
        raise InputError(f"{name} must be {allowed}, got {number}.")
    return number


def sampling(temperature: Any, top_k: Any, top_p: Any, freq_penalty: Any) -> None:
    """Sampling arguments: `temperature` >= 0 (0 is greedy), `top_k` >= 1, `top_p` in
    (0, 1], `freq_penalty` finite (TransformerLens applies only positive ones)."""
    finite_number("temperature", temperature, minimum=0.0)
    finite_number("freq_penalty", freq_penalty)
    if top_k is not None:
        integer("top_k", top_k, minimum=1)
    if top_p is not None:
        p = finite_number("top_p", top_p)
        if not 0.0 < p <= 1.0:
            raise InputError(f"top_p must be in (0, 1] (the probability mass kept), got {p}.")


def token_ids(name: str, value: Any, d_vocab: int) -> list[int]:
    """An id or a list of ids, each in `[0, d_vocab)`."""
    items = list(value) if isinstance(value, list | tuple | Tensor) else [value]
    if not items:
        raise InputError(f"{name} must name at least one token id, got an empty list.")
    ids = [integer(name, int(v) if isinstance(v, Tensor) else v) for v in items]
    bad = [i for i in ids if not 0 <= i < d_vocab]
    if bad:
        raise InputError(f"{name} {bad[0]} is outside the vocabulary [0, {d_vocab}).")
    return ids


def choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """`value` if it is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise InputError(f"{name} must be one of {list(allowed)}, got {_describe(value)}.")
    return value


def kv_cache(cache: Any, cfg: Any) -> None:
    """A `TransformerLensKeyValueCache` made for a model with this config: one entry per
    layer, keys `[batch, pos, n_kv_heads, d_head]`."""
    from lookingglass.model.kv_cache import TransformerLensKeyValueCache

    if cache is None:
        return
    if not isinstance(cache, TransformerLensKeyValueCache):
        raise InputError(
            "past_kv_cache must be a TransformerLensKeyValueCache (make one with "
            f"TransformerLensKeyValueCache.init_cache(model.cfg)), got {type(cache).__name__}."
        )
    head_shape = (cfg.n_kv_heads, cfg.d_head)
    if len(cache.entries) != cfg.n_layers or tuple(cache[0].past_keys.shape[2:]) != head_shape:
        raise InputError(
            f"past_kv_cache was made for another model: it has {len(cache.entries)} layers of "
            f"keys shaped {tuple(cache[0].past_keys.shape[2:]) if cache.entries else ()} per "
            f"position, this model {cfg.n_layers} layers of {head_shape} (n_kv_heads, d_head)."
        )


def forward_options(
    cfg: Any,
    start_at_layer: Any,
    stop_at_layer: Any,
    past_kv_cache: Any,
    bos: Any,
    side: Any,
    return_type: Any,
) -> None:
    """`forward`'s arguments other than the input and the mask (checked where their
    shapes are known); `bos` and `side` are `prepend_bos` and `padding_side`."""
    layer_range(start_at_layer, stop_at_layer, cfg.n_layers)
    kv_cache(past_kv_cache, cfg)
    optional_bool("prepend_bos", bos)
    padding_side(side)
    if return_type is not None:
        choice("return_type", return_type, ("logits", "loss", "both"))
