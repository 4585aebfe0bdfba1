"""Activation patching with TransformerLens 3.9's `patching` names, arguments and shapes.

Run the model on corrupted tokens, replace one activation (a layer x position, a head,
...) by its value in the clean run, and measure `patching_metric(logits)`; repeat for
every index. The results equal TransformerLens's (within float tolerance), but the
patched variants run batched (see `_variants`): many per forward pass, each starting at
the block it patches, and, for patches at one position, computing only that position
and later ones. `batch_size=` bounds how many variants share a forward pass.

Any TransformerLens metric works unchanged: it is called once per variant on that
variant's logits `[batch, pos, d_vocab]`. Wrap it with `declare_metric(fn, batched=True)`
if it takes `[n_variants, batch, pos, d_vocab]` and returns `[n_variants]`, or with
`positions=[-1]` if it reads only the last position's logits, to skip work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass import utils
from lookingglass.errors import InputError
from lookingglass.interventions._variants import (
    BaseRun,
    DeclaredMetric,
    Edit,
    Variant,
    check_clean_cache,
    declare_metric,
    run_variants,
)

AxisNames = Literal["layer", "pos", "head_index", "head", "src_pos", "dest_pos"]
PatchSetter = Callable[[Tensor, Sequence[int], Tensor], Tensor]


# ------------------------------------------------------------------ patch setters
def layer_pos_patch_setter(corrupted_activation, index, clean_activation):
    """Patch `[:, pos]` for index `(layer, pos)`; activations `[batch, pos, ...]`."""
    assert len(index) == 2
    layer, pos = index
    corrupted_activation[:, pos, ...] = clean_activation[:, pos, ...]
    return corrupted_activation


def layer_pos_head_vector_patch_setter(corrupted_activation, index, clean_activation):
    """Patch `[:, pos, head]` for index `(layer, pos, head)`; `[batch, pos, head, ...]`."""
    assert len(index) == 3
    layer, pos, head_index = index
    corrupted_activation[:, pos, head_index] = clean_activation[:, pos, head_index]
    return corrupted_activation


def layer_head_vector_patch_setter(corrupted_activation, index, clean_activation):
    """Patch `[:, :, head]` for index `(layer, head)`; `[batch, pos, head, ...]`."""
    assert len(index) == 2
    layer, head_index = index
    corrupted_activation[:, :, head_index] = clean_activation[:, :, head_index]
    return corrupted_activation


def layer_head_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """Patch `[:, head]` for index `(layer, head)`; patterns `[batch, head, dest, src]`."""
    assert len(index) == 2
    layer, head_index = index
    corrupted_activation[:, head_index, :, :] = clean_activation[:, head_index, :, :]
    return corrupted_activation


def layer_head_pos_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """Patch `[:, head, dest]` for index `(layer, head, dest_pos)`; patterns."""
    assert len(index) == 3
    layer, head_index, dest_pos = index
    corrupted_activation[:, head_index, dest_pos, :] = clean_activation[:, head_index, dest_pos, :]
    return corrupted_activation


def layer_head_dest_src_pos_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """Patch `[:, head, dest, src]` for index `(layer, head, dest_pos, src_pos)`; patterns."""
    assert len(index) == 4
    layer, head_index, dest_pos, src_pos = index
    corrupted_activation[:, head_index, dest_pos, src_pos] = clean_activation[
        :, head_index, dest_pos, src_pos
    ]
    return corrupted_activation


# For setters that patch one query position: (the index entry holding that position, the
# activation dimension of query positions). Such a patch leaves earlier positions alone.
_PATCHED_POSITION = {
    layer_pos_patch_setter: (1, 1),
    layer_pos_head_vector_patch_setter: (1, 1),
    layer_head_pos_pattern_patch_setter: (2, 2),
    layer_head_dest_src_pos_pattern_patch_setter: (2, 2),
}


_KNOWN_SETTERS = (
    *_PATCHED_POSITION,
    layer_head_vector_patch_setter,
    layer_head_pattern_patch_setter,
)


# ------------------------------------------------------------------- generic patch
def make_df_from_ranges(column_max_ranges: Sequence[int], column_names: Sequence[str]):
    """A pandas DataFrame of every index tuple in the ranges, last column fastest."""
    import pandas as pd

    rows = list(itertools.product(*[range(n) for n in column_max_ranges]))
    return pd.DataFrame(rows, columns=column_names)


def generic_activation_patch(
    model,
    corrupted_tokens: Int[Tensor, "batch pos"],
    clean_cache,
    patching_metric: Callable[[Float[Tensor, "batch pos d_vocab"]], Any] | DeclaredMetric,
    patch_setter: PatchSetter,
    activation_name: str,
    index_axis_names: Sequence[AxisNames] | None = None,
    index_df=None,
    return_index_df: bool = False,
    batch_size: int | None = None,
) -> Tensor | tuple[Tensor, Any]:
    """Patch one activation of the corrupted run from the clean cache, for every index.

    Args:
        model: a `HookedTransformer`.
        corrupted_tokens: `[batch, pos]` tokens of the run that is patched.
        clean_cache: activations of the clean run (anything indexable by hook name).
        patching_metric: `fn(logits [batch, pos, d_vocab]) -> scalar`, or a
            `declare_metric(...)` wrapper.
        patch_setter: `fn(corrupted_activation, index, clean_activation)` that writes the
            patch in place and returns the activation (the `*_patch_setter`s here).
        activation_name: short name (`"resid_pre"`, `"z"`, `"pattern"`, ...); with
            `index[0]` as layer it names the hook (`utils.get_act_name`).
        index_axis_names: axes to iterate over fully (`"layer"` first; `"pos"`,
            `"head"`/`"head_index"`, `"dest_pos"`, `"src_pos"`).
        index_df: instead, a DataFrame whose rows are the indices; the output is then flat.
        return_index_df: also return the DataFrame of indices (needs pandas).
        batch_size: patched variants per forward pass (default: a budget of token rows).

    Returns:
        The metric per index, float32, shaped by the axes (`[n_layers, pos, ...]`) or
        `[len(index_df)]`; with `return_index_df`, `(output, index_df)`.
    """
    if index_df is None:
        assert index_axis_names is not None
        ranges = [
            _axis_range(model, corrupted_tokens, clean_cache, activation_name, axis)
            for axis in index_axis_names
        ]
        indices = [list(index) for index in itertools.product(*[range(n) for n in ranges])]
        out_shape = tuple(ranges)
    else:
        assert index_axis_names is None
        indices = [[int(value) for value in row] for row in index_df.itertuples(index=False)]
        out_shape = (len(indices),)
    check_clean_cache(
        model,
        corrupted_tokens,
        clean_cache,
        {utils.get_act_name(activation_name, index[0]) for index in indices},
    )
    variants = [
        _patch_variant(
            patch_setter, activation_name, index, clean_cache, corrupted_tokens.shape[-1]
        )
        for index in indices
    ]
    base = BaseRun.from_tokens(model, corrupted_tokens)
    values = run_variants(model, base, variants, patching_metric, batch_size)
    output = values.reshape(out_shape).to(model.W_U.device)
    if return_index_df:
        if index_df is None:
            index_df = make_df_from_ranges(out_shape, list(index_axis_names))
        return output, index_df
    return output


def _axis_range(model, corrupted_tokens, clean_cache, activation_name: str, axis: str) -> int:
    if axis == "layer":
        return model.cfg.n_layers
    if axis in ("pos", "src_pos", "dest_pos"):
        return corrupted_tokens.shape[-1]
    # Heads: read the cached activation, so grouped-query keys/values count their own heads.
    activation = clean_cache[utils.get_act_name(activation_name, 0)]
    return activation.shape[1 if activation_name in ("pattern", "attn_scores") else 2]


def _patch_variant(
    setter: PatchSetter, activation_name: str, index: list[int], clean_cache, n_pos: int
) -> Variant:
    layer = index[0]
    name = utils.get_act_name(activation_name, layer)
    clean = clean_cache[name]
    if setter in _KNOWN_SETTERS:
        try:  # on an empty batch: checks the index against the activation's shape, for free
            setter(clean[:0].clone(), index, clean[:0])
        except IndexError as error:
            raise InputError(
                f"Patch index {list(index)} is out of range for {name} of shape "
                f"{tuple(clean.shape)} ({error})."
            ) from error
    if setter not in _PATCHED_POSITION:
        # A setter we do not know may touch any position: compute them all.
        return Variant((Edit(name, layer, lambda rows, p0: setter(rows, index, clean)),), 0)
    field, dim = _PATCHED_POSITION[setter]
    index = list(index)
    index[field] %= n_pos
    first = index[field]

    def edit(rows: Tensor, p0: int) -> Tensor:
        shifted = list(index)
        shifted[field] -= p0
        return setter(rows, shifted, clean.narrow(dim, p0, clean.shape[dim] - p0))

    return Variant((Edit(name, layer, edit),), first)


# --------------------------------------------------------- the specialized patches
_LP, _LPH, _LH = ("layer", "pos"), ("layer", "pos", "head"), ("layer", "head")
_PATTERN_BY_POS = ("layer", "head_index", "dest_pos")
# TransformerLens's name: (patch setter, activation, index axes)
_SWEEPS = {
    "get_act_patch_resid_pre": (layer_pos_patch_setter, "resid_pre", _LP),
    "get_act_patch_resid_mid": (layer_pos_patch_setter, "resid_mid", _LP),
    "get_act_patch_attn_out": (layer_pos_patch_setter, "attn_out", _LP),
    "get_act_patch_mlp_out": (layer_pos_patch_setter, "mlp_out", _LP),
    "get_act_patch_attn_head_out_by_pos": (layer_pos_head_vector_patch_setter, "z", _LPH),
    "get_act_patch_attn_head_q_by_pos": (layer_pos_head_vector_patch_setter, "q", _LPH),
    "get_act_patch_attn_head_k_by_pos": (layer_pos_head_vector_patch_setter, "k", _LPH),
    "get_act_patch_attn_head_v_by_pos": (layer_pos_head_vector_patch_setter, "v", _LPH),
    "get_act_patch_attn_head_pattern_by_pos": (
        layer_head_pos_pattern_patch_setter,
        "pattern",
        _PATTERN_BY_POS,
    ),
    "get_act_patch_attn_head_pattern_dest_src_pos": (
        layer_head_dest_src_pos_pattern_patch_setter,
        "pattern",
        (*_PATTERN_BY_POS, "src_pos"),
    ),
    "get_act_patch_attn_head_out_all_pos": (layer_head_vector_patch_setter, "z", _LH),
    "get_act_patch_attn_head_q_all_pos": (layer_head_vector_patch_setter, "q", _LH),
    "get_act_patch_attn_head_k_all_pos": (layer_head_vector_patch_setter, "k", _LH),
    "get_act_patch_attn_head_v_all_pos": (layer_head_vector_patch_setter, "v", _LH),
    "get_act_patch_attn_head_pattern_all_pos": (
        layer_head_pattern_patch_setter,
        "pattern",
        ("layer", "head_index"),
    ),
}


def _specialized(name: str):
    """TransformerLens's `partial(generic_activation_patch, ...)` for one `_SWEEPS` row."""
    setter, activation_name, axes = _SWEEPS[name]

    def patch(
        model,
        corrupted_tokens,
        clean_cache,
        patching_metric,
        index_df=None,
        return_index_df: bool = False,
        batch_size: int | None = None,
    ):
        return generic_activation_patch(
            model,
            corrupted_tokens,
            clean_cache,
            patching_metric,
            setter,
            activation_name,
            None if index_df is not None else axes,
            index_df,
            return_index_df,
            batch_size,
        )

    shape = ", ".join(
        {"layer": "n_layers", "head": "n_heads", "head_index": "n_heads"}.get(a, a) for a in axes
    )
    patch.__name__ = patch.__qualname__ = name
    patch.__doc__ = f"""Patch `{activation_name}` of the corrupted run from the clean cache, one
    ({", ".join(axes)}) at a time, with `{setter.__name__}`; the metric of each patch,
    `[{shape}]` (key/value heads: n_key_value_heads). See `generic_activation_patch`.

    Args:
        model: a `HookedTransformer`.
        corrupted_tokens: `[batch, pos]` tokens of the corrupted run.
        clean_cache: the clean run's activations.
        patching_metric: `fn(logits) -> scalar` (or a `declare_metric` wrapper).
        batch_size: patched variants per forward pass (default: a row budget).
    """
    return patch


get_act_patch_resid_pre = _specialized("get_act_patch_resid_pre")
get_act_patch_resid_mid = _specialized("get_act_patch_resid_mid")
get_act_patch_attn_out = _specialized("get_act_patch_attn_out")
get_act_patch_mlp_out = _specialized("get_act_patch_mlp_out")
get_act_patch_attn_head_out_by_pos = _specialized("get_act_patch_attn_head_out_by_pos")
get_act_patch_attn_head_q_by_pos = _specialized("get_act_patch_attn_head_q_by_pos")
get_act_patch_attn_head_k_by_pos = _specialized("get_act_patch_attn_head_k_by_pos")
get_act_patch_attn_head_v_by_pos = _specialized("get_act_patch_attn_head_v_by_pos")
get_act_patch_attn_head_pattern_by_pos = _specialized("get_act_patch_attn_head_pattern_by_pos")
get_act_patch_attn_head_pattern_dest_src_pos = _specialized(
    "get_act_patch_attn_head_pattern_dest_src_pos"
)
get_act_patch_attn_head_out_all_pos = _specialized("get_act_patch_attn_head_out_all_pos")
get_act_patch_attn_head_q_all_pos = _specialized("get_act_patch_attn_head_q_all_pos")
get_act_patch_attn_head_k_all_pos = _specialized("get_act_patch_attn_head_k_all_pos")
get_act_patch_attn_head_v_all_pos = _specialized("get_act_patch_attn_head_v_all_pos")
get_act_patch_attn_head_pattern_all_pos = _specialized("get_act_patch_attn_head_pattern_all_pos")


# ------------------------------------------------------------------ every-patches
def _sweeps(model, corrupted_tokens, clean_cache, metric, batch_size, names) -> list[Tensor]:
    """Several specialized sweeps run as one batch of variants (one shared base run)."""
    n_pos = corrupted_tokens.shape[-1]
    variants, shapes = [], []
    activations = {_SWEEPS[name][1] for name in names}
    check_clean_cache(
        model,
        corrupted_tokens,
        clean_cache,
        {utils.get_act_name(a, layer) for a in activations for layer in range(model.cfg.n_layers)},
    )
    for name in names:
        setter, activation_name, axes = _SWEEPS[name]
        ranges = [
            _axis_range(model, corrupted_tokens, clean_cache, activation_name, axis)
            for axis in axes
        ]
        variants += [
            _patch_variant(setter, activation_name, list(index), clean_cache, n_pos)
            for index in itertools.product(*[range(n) for n in ranges])
        ]
        shapes.append(tuple(ranges))
    base = BaseRun.from_tokens(model, corrupted_tokens)
    values = run_variants(model, base, variants, metric, batch_size).to(model.W_U.device)
    sizes = [torch.Size(shape).numel() for shape in shapes]
    return [part.reshape(shape) for part, shape in zip(values.split(sizes), shapes, strict=True)]


def _pad_heads(results: list[Tensor]) -> Tensor:
    """Stack, padding grouped-query key/value results to n_heads as TransformerLens does."""
    n_heads = results[0].shape[-1]
    return torch.stack([F.pad(r, (0, n_heads - r.shape[-1])) for r in results], dim=0)


def get_act_patch_block_every(
    model, corrupted_tokens, clean_cache, metric, batch_size: int | None = None
) -> Float[Tensor, "3 n_layers pos"]:
    """Patch resid_pre, attn_out and mlp_out by layer and position, stacked
    `[3, n_layers, pos]`, all in one batched sweep."""
    names = [f"get_act_patch_{a}" for a in ("resid_pre", "attn_out", "mlp_out")]
    return torch.stack(_sweeps(model, corrupted_tokens, clean_cache, metric, batch_size, names))


def get_act_patch_attn_head_all_pos_every(
    model, corrupted_tokens, clean_cache, metric, batch_size: int | None = None
) -> Float[Tensor, "5 n_layers n_heads"]:
    """Patch every head's output, query, key, value and pattern at all positions,
    stacked `[5, n_layers, n_heads]`, all in one batched sweep."""
    names = [f"get_act_patch_attn_head_{a}_all_pos" for a in ("out", "q", "k", "v", "pattern")]
    return _pad_heads(_sweeps(model, corrupted_tokens, clean_cache, metric, batch_size, names))


def get_act_patch_attn_head_by_pos_every(
    model, corrupted_tokens, clean_cache, metric, batch_size: int | None = None
) -> Float[Tensor, "5 n_layers pos n_heads"]:
    """Patch every head's output, query, key, value and pattern row by position,
    stacked `[5, n_layers, pos, n_heads]` (the pattern result transposed to match)."""
    names = [f"get_act_patch_attn_head_{a}_by_pos" for a in ("out", "q", "k", "v", "pattern")]
    *vectors, pattern = _sweeps(model, corrupted_tokens, clean_cache, metric, batch_size, names)
    return _pad_heads([*vectors, pattern.transpose(1, 2)])


__all__ = [
    "AxisNames",
    "declare_metric",
    "generic_activation_patch",
    "make_df_from_ranges",
    *_SWEEPS,
    "get_act_patch_attn_head_all_pos_every",
    "get_act_patch_attn_head_by_pos_every",
    "get_act_patch_block_every",
    "layer_head_dest_src_pos_pattern_patch_setter",
    "layer_head_pattern_patch_setter",
    "layer_head_pos_pattern_patch_setter",
    "layer_head_vector_patch_setter",
    "layer_pos_head_vector_patch_setter",
    "layer_pos_patch_setter",
]
