"""The analysis half of `ActivationCache`: the residual stream taken apart.

The residual stream entering layer L is a sum of everything written before it:

    resid_pre[L] = embed + pos_embed + sum_{l < L} (attn_out[l] + mlp_out[l])
    attn_out[l]  = sum_h result[l, h] + b_O[l]          result = z[h] @ W_O[h]
    mlp_out[l]   = sum_n post[l, n] * W_out[l, n] + b_out[l]

These methods return such sums as stacks `[component, *batch_and_pos, d_model]`, with
TransformerLens's names, signatures and numbers: `accumulated_resid` (the partial sums,
for the logit lens), `decompose_resid` (per sublayer), `stack_head_results` (per head),
`stack_neuron_results` (per neuron), `get_full_resid_decomposition` (all of it), and
`apply_ln_to_stack` / `logit_attrs` for direct logit attribution: a norm's scale is
shared by every component at a position, so dividing each component by the cached scale
(after centering, for LayerNorm) makes the components sum to the normalized stream.

Differences from TransformerLens, on purpose:
- `get_full_resid_decomposition(mlp_input=True, apply_ln=True, project_output_onto=p)`
  scales the neuron rows with the MLP's norm (ln2) like every other row
  (TransformerLens scales them with ln1).
- `get_full_resid_decomposition` works on attention-only models, `stack_neuron_results`
  with an int `neuron_slice` (TransformerLens raises on both).
- `stack_head_results` computes head results from `hook_z` and `W_O` without adding them
  to the cache when `hook_result` was not cached; `compute_head_results()` adds them.
- `accumulated_resid(apply_ln=True)` normalizes each entry with the final norm's
  formula and weights, without running `ln_final`'s hook points.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.utils import Slice, SliceInput

_NORMS = ("LN", "LNPre", "RMS", "RMSPre")
_CENTERED_NORMS = ("LN", "LNPre")
Stack = Float[Tensor, "component *batch_and_pos_dims d_model"]
StackOut = Float[Tensor, "component *batch_and_pos_dims_out d_model"]
Projection = Float[Tensor, " d_model"] | Float[Tensor, "d_model n_out"]
Tokens = str | int | Int[Tensor, ""] | Int[Tensor, " batch"] | Int[Tensor, "batch pos"]


class CacheAnalysis:
    """Mixin for `ActivationCache` (which provides `__getitem__`, `cache_dict`, `model`,
    `has_batch_dim`, `has_embed`, `has_pos_embed`)."""

    # ------------------------------------------------------------------ helpers
    def _layer(self, layer: int | None) -> int:
        """None and -1 mean n_layers (the unembed's input)."""
        n_layers = self.model.cfg.n_layers
        if layer is None or layer == -1:
            return n_layers
        if not 0 <= layer <= n_layers:
            raise InputError(f"layer must be in [0, {n_layers}] (or -1 / None), got {layer}.")
        return layer

    def _resid_into(self, layer: int) -> Float[Tensor, "*batch_and_pos_dims d_model"]:
        """The residual stream entering `layer` (layer n_layers: the last resid_post)."""
        if layer == self.model.cfg.n_layers:
            return self["resid_post", layer - 1]
        return self["resid_pre", layer]

    def _remainder_total(self, layer: int) -> Float[Tensor, "*batch_and_pos_dims d_model"]:
        """What `incl_remainder` decomposes, as TransformerLens: `resid_post` of layer
        `layer - 1` (for `layer=0` that index is -1, the last layer's output)."""
        return self["resid_post", layer - 1]

    def _ln_scale(
        self, layer: int, mlp_input: bool, pos_slice: Slice, batch_slice: Slice
    ) -> Tensor:
        """The cached scale of the norm read at `layer`'s input, `[*batch_and_pos_dims, 1]`."""
        if layer == self.model.cfg.n_layers:
            key = "ln_final.hook_scale"
        else:
            key = f"blocks.{layer}.ln{2 if mlp_input else 1}.hook_scale"
        if key not in self.cache_dict:
            raise KeyError(
                f"Applying the norm needs '{key}' in the cache. Cache it (run_with_cache "
                "without a names_filter that drops it)."
            )
        scale = pos_slice.apply(self.cache_dict[key], dim=-2)
        return batch_slice.apply(scale, dim=0) if self.has_batch_dim else scale

    def _scale_or_one(self, layer: int, mlp_input: bool, pos_slice: Slice) -> Tensor | float:
        if self.model.cfg.normalization_type not in _NORMS:
            return 1.0
        return self._ln_scale(layer, mlp_input, pos_slice, Slice(None))

    def _ln_projection(self, project: Float[Tensor, "d_model n_out"]) -> Tensor:
        """A projection p with `x @ p == centre(x) @ project`: cached-scale LayerNorm followed
        by a projection is linear, so the centering moves onto the projection."""
        if self.model.cfg.normalization_type in _CENTERED_NORMS:
            return project - project.mean(dim=0, keepdim=True)
        return project

    def _final_norm(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The final norm's formula with fresh statistics for `x` (weights from ln_final)."""
        ln_final, cfg = self.model.ln_final, self.model.cfg
        dtype, x = x.dtype, x.float()
        if cfg.normalization_type in _CENTERED_NORMS:
            x = x - x.mean(dim=-1, keepdim=True)
        x = x / (x.pow(2).mean(dim=-1, keepdim=True) + cfg.eps).sqrt()
        if hasattr(ln_final, "w"):
            x = x * ln_final.w.float()
        if hasattr(ln_final, "b"):
            x = x + ln_final.b.float()
        return x.to(dtype)

    # --------------------------------------------------------------- LN scaling
    def apply_ln_to_stack(
        self,
        residual_stack: Stack,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: SliceInput | Slice = None,
        batch_slice: SliceInput | Slice = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> StackOut:
        """Treat each component of a stack as part of the input to a norm and scale it as
        that norm scales the whole stream: centre it (LayerNorm) and divide by the cached
        scale. The norm's weight and bias are not applied (fold them first: `fold_ln`).

        Args:
            residual_stack: `[component, *batch_and_pos_dims, d_model]`, already pos-sliced.
            layer: the layer whose input norm to use; n_layers, -1 or None: ln_final.
            mlp_input: use the layer's ln2 (the MLP's input) instead of ln1.
            pos_slice: the positions `residual_stack` holds (applied to the cached scale).
            batch_slice: batch rows to keep (applied to the stack and the scale).
            has_batch_dim: whether `residual_stack` has a batch dimension.
            recompute_ln: for the final norm, normalize each component with its own
                statistics and ln_final's weights (the logit lens) instead.

        Returns:
            The scaled stack; unchanged if the model has no norms.
        """
        if self.model.cfg.normalization_type not in _NORMS:
            return residual_stack
        pos_slice, batch_slice = Slice(pos_slice), Slice(batch_slice)
        layer = self._layer(layer)
        if has_batch_dim:
            residual_stack = batch_slice.apply(residual_stack, dim=1)
        if recompute_ln and layer == self.model.cfg.n_layers:
            return self._final_norm(residual_stack)
        if self.model.cfg.normalization_type in _CENTERED_NORMS:
            residual_stack = residual_stack - residual_stack.mean(dim=-1, keepdim=True)
        return residual_stack / self._ln_scale(layer, mlp_input, pos_slice, batch_slice)

    def logit_attrs(
        self,
        residual_stack: Stack,
        tokens: Tokens,
        incorrect_tokens: Tokens | None = None,
        pos_slice: SliceInput | Slice = None,
        batch_slice: SliceInput | Slice = None,
        has_batch_dim: bool = True,
    ) -> Float[Tensor, " component *batch_and_pos_dims_out"]:
        """Direct logit attribution: each component's contribution to the logit of `tokens`
        (or to the logit difference `tokens - incorrect_tokens`), after the final norm's
        cached scaling. With folded norms and b_U = 0 the attributions of a full
        decomposition sum to the logit (difference).

        Args:
            residual_stack: `[component, *batch_and_pos_dims, d_model]`.
            tokens: a token (string, int or scalar tensor), or a tensor of tokens that
                broadcasts against the stack's batch and position dims.
            incorrect_tokens: same shape as `tokens`; attribute the difference.
            pos_slice, batch_slice, has_batch_dim: as in `apply_ln_to_stack`.
        """
        directions = self.model.tokens_to_residual_directions(tokens)
        if incorrect_tokens is not None:
            if _token_shape(tokens) != _token_shape(incorrect_tokens):
                raise InputError(
                    f"tokens and incorrect_tokens must have the same shape, got "
                    f"{tuple(_token_shape(tokens))} and {tuple(_token_shape(incorrect_tokens))}."
                )
            directions = directions - self.model.tokens_to_residual_directions(incorrect_tokens)
        scaled = self.apply_ln_to_stack(
            residual_stack, -1, False, pos_slice, batch_slice, has_batch_dim
        )
        return (scaled * directions).sum(dim=-1)

    # ------------------------------------------------------- whole sublayers
    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: SliceInput | Slice = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ) -> Stack | tuple[Stack, list[str]]:
        """The residual stream as it accumulates: resid_pre of each layer up to `layer`
        (labels "0_pre", ...), "final_post" (the unembed's input) when layer is n_layers.

        Args:
            layer: the last layer whose input to include (n_layers, -1, None: all).
            incl_mid: also resid_mid of each earlier layer ("{l}_mid").
            apply_ln: apply the norm of `layer`'s input with cached scales; for the final
                layer, each entry is normalized with its own statistics (the logit lens).
            pos_slice: positions to keep.
            mlp_input: also resid_mid of `layer` (the MLP's input).
            return_labels: also return the labels.
        """
        pos_slice = Slice(pos_slice)
        layer = self._layer(layer)
        n_layers = self.model.cfg.n_layers
        components, labels = [], []
        for l in range(layer + 1):
            if l == n_layers:
                components.append(self["resid_post", n_layers - 1])
                labels.append("final_post")
                continue
            components.append(self["resid_pre", l])
            labels.append(f"{l}_pre")
            if (incl_mid and l < layer) or (mlp_input and l == layer):
                components.append(self["resid_mid", l])
                labels.append(f"{l}_mid")
        stack = torch.stack([pos_slice.apply(c, dim=-2) for c in components])
        if apply_ln:
            logit_lens = layer == n_layers  # fresh statistics per entry
            stack = self.apply_ln_to_stack(
                stack, layer, mlp_input, pos_slice, None, self.has_batch_dim, logit_lens
            )
        return (stack, labels) if return_labels else stack

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: Literal["all", "mlp", "attn"] = "all",
        apply_ln: bool = False,
        pos_slice: SliceInput | Slice = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> Stack | tuple[Stack, list[str]]:
        """The residual stream entering `layer` as a stack of what wrote it: "embed",
        "pos_embed", then "{l}_attn_out" and "{l}_mlp_out" for each earlier layer. The
        stack sums to the stream (with incl_embeds and mode "all").

        Args:
            layer: the layer whose input to decompose (n_layers, -1, None: the unembed's).
            mlp_input: decompose the MLP's input: also that layer's attn_out.
            mode: "all", "attn" (attention outputs only) or "mlp" (MLP outputs only).
            apply_ln: scale with the cached scale of the norm that reads this stream.
            pos_slice: positions to keep.
            incl_embeds: include embed and pos_embed.
            return_labels: also return the labels.
        """
        pos_slice = Slice(pos_slice)
        layer = self._layer(layer)
        incl_attn = mode != "mlp"
        incl_mlp = mode != "attn" and not self.model.cfg.attn_only
        components, labels = [], []
        for name in ("embed", "pos_embed") if incl_embeds else ():
            if f"hook_{name}" in self.cache_dict:
                components.append(self[f"hook_{name}"])
                labels.append(name)
        for l in range(layer):
            if incl_attn:
                components.append(self["attn_out", l])
                labels.append(f"{l}_attn_out")
            if incl_mlp:
                components.append(self["mlp_out", l])
                labels.append(f"{l}_mlp_out")
        if mlp_input and incl_attn:
            components.append(self["attn_out", layer])
            labels.append(f"{layer}_attn_out")
        if not components:
            raise InputError(f"Nothing to decompose at layer {layer} with these options.")
        stack = torch.stack([pos_slice.apply(c, dim=-2) for c in components])
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice, mlp_input=mlp_input)
        return (stack, labels) if return_labels else stack

    def stack_activation(
        self, activation_name: str, layer: int = -1, sublayer_type: str | None = None
    ) -> Float[Tensor, "layers_covered ..."]:
        """`activation_name` of every layer before `layer` (-1 / None: all), stacked on dim 0."""
        layer = self._layer(layer)
        return torch.stack([self[activation_name, l, sublayer_type] for l in range(layer)])

    # ---------------------------------------------------------------- heads
    def _head_results(self, layer: int) -> Float[Tensor, "*batch_and_pos_dims n_heads d_model"]:
        key = f"blocks.{layer}.attn.hook_result"
        if key in self.cache_dict:
            return self.cache_dict[key]
        z = self["z", layer]
        return torch.einsum("...he,hed->...hd", z, self.model.blocks[layer].attn.W_O)

    def compute_head_results(self) -> None:
        """Add `blocks.{l}.attn.hook_result` (each head's write to the residual stream,
        `z @ W_O`, `[*batch_and_pos, n_heads, d_model]`) to the cache where missing.
        attn_out is their sum over heads plus b_O."""
        for layer in range(self.model.cfg.n_layers):
            self.cache_dict[f"blocks.{layer}.attn.hook_result"] = self._head_results(layer)

    def stack_head_results(
        self,
        layer: int = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: SliceInput | Slice = None,
        apply_ln: bool = False,
    ) -> Stack | tuple[Stack, list[str]]:
        """Every head's result (its write to the residual stream) in the layers before
        `layer`, stacked layer-major: labels "L{l}H{h}". Uses `hook_result` if cached,
        else `hook_z @ W_O`.

        Args:
            layer: heads of layers strictly before this (n_layers, -1, None: all).
            return_labels: also return the labels.
            incl_remainder: append "remainder", resid_post of `layer - 1` minus the heads
                (as TransformerLens: for layer 0, the last layer's output).
            pos_slice: positions to keep.
            apply_ln: scale with the cached scale of `layer`'s input norm.
        """
        pos_slice = Slice(pos_slice)
        layer = self._layer(layer)
        labels = [f"L{l}H{h}" for l in range(layer) for h in range(self.model.cfg.n_heads)]
        per_layer = [pos_slice.apply(self._head_results(l), dim=-3) for l in range(layer)]
        if per_layer:
            stack = torch.cat(per_layer, dim=-2).movedim(-2, 0)
        else:
            resid = pos_slice.apply(self._resid_into(0), dim=-2)
            stack = resid.new_zeros((0, *resid.shape))
        if incl_remainder:
            resid = pos_slice.apply(self._remainder_total(layer), dim=-2)
            stack = torch.cat([stack, (resid - stack.sum(dim=0))[None]])
            labels.append("remainder")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    # -------------------------------------------------------------- neurons
    def get_neuron_results(
        self,
        layer: int,
        neuron_slice: SliceInput | Slice = None,
        pos_slice: SliceInput | Slice = None,
        project_output_onto: Projection | None = None,
    ) -> Float[Tensor, "..."]:
        """Each neuron's write to the residual stream in `layer`, `post * W_out[n]`,
        `[*batch_and_pos_dims, d_mlp, d_model]` (not cached: cheap to compute, expensive to
        store). With `project_output_onto` the projection is applied to W_out first, so
        that is never formed: `[..., d_mlp, n_out]`, or `[..., d_mlp]` for a 1-D one. An
        int `neuron_slice` or `pos_slice` drops its dimension."""
        neuron_slice, pos_slice = Slice(neuron_slice), Slice(pos_slice)
        # Positions first: an int pos_slice drops a dim, leaving neurons last.
        post = neuron_slice.apply(pos_slice.apply(self["post", layer], dim=-2), dim=-1)
        W_out = neuron_slice.apply(self.model.blocks[layer].mlp.W_out, dim=0)
        if project_output_onto is None:
            return post[..., None] * W_out
        projected = W_out @ project_output_onto
        return post * projected if projected.ndim == 1 else post[..., None] * projected

    def _neuron_stack(
        self, layer: int, pos_slice: Slice, neuron_slice: Slice, project: Tensor | None
    ) -> Float[Tensor, "component *batch_and_pos_dims d_out"]:
        per_layer = [
            self.get_neuron_results(l, neuron_slice, pos_slice, project) for l in range(layer)
        ]
        if per_layer:
            return torch.cat(per_layer, dim=-2).movedim(-2, 0)
        resid = pos_slice.apply(self._resid_into(0), dim=-2)
        d_out = resid.shape[-1] if project is None else project.shape[-1]
        return resid.new_zeros((0, *resid.shape[:-1], d_out))

    def stack_neuron_results(
        self,
        layer: int,
        pos_slice: SliceInput | Slice = None,
        neuron_slice: SliceInput | Slice = None,
        return_labels: bool = False,
        incl_remainder: bool = False,
        apply_ln: bool = False,
        project_output_onto: Projection | None = None,
    ) -> Tensor | tuple[Tensor, list[str]]:
        """Every neuron's write to the residual stream in the layers before `layer`,
        stacked layer-major: labels "L{l}N{n}". Memory: `[layer * d_mlp, *batch_and_pos,
        d_model]`; pass `project_output_onto` (`[d_model]` or `[d_model, n_out]`) to get
        projections instead without forming that.

        Args:
            layer: neurons of layers strictly before this (n_layers, -1, None: all).
            pos_slice, neuron_slice: positions and neurons to keep.
            return_labels: also return the labels.
            incl_remainder: append "remainder", resid_post of `layer - 1` minus the
                neurons (as TransformerLens: for layer 0, the last layer's output).
            apply_ln: scale with the cached scale of `layer`'s attention norm (ln1).
            project_output_onto: project each row (a 1-D projection drops the last dim).
        """
        layer = self._layer(layer)
        # An int neuron_slice keeps its dimension here (one row per layer).
        pos_slice, neuron_slice = Slice(pos_slice), Slice.unwrap(neuron_slice)
        project, squeeze = _as_2d(project_output_onto)
        neuron_ids = neuron_slice.apply(torch.arange(self.model.cfg.d_mlp), dim=0).reshape(-1)
        labels = [f"L{l}N{n}" for l in range(layer) for n in neuron_ids.tolist()]
        ln_project = apply_ln and project is not None
        if ln_project:
            project = self._ln_projection(project)
            scale = self._scale_or_one(layer, False, pos_slice)
        stack = self._neuron_stack(layer, pos_slice, neuron_slice, project)
        if ln_project:
            stack = stack / scale
        if incl_remainder:
            total = pos_slice.apply(self._remainder_total(layer), dim=-2)
            if project is not None:
                total = total @ project
            if ln_project:
                total = total / scale
            stack = torch.cat([stack, (total - stack.sum(dim=0))[None]])
            labels.append("remainder")
        if apply_ln and not ln_project:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice)
        if squeeze:
            stack = stack.squeeze(-1)
        return (stack, labels) if return_labels else stack

    # ------------------------------------------------------ full decomposition
    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice: SliceInput | Slice = None,
        return_labels: bool = False,
        project_output_onto: Projection | None = None,
    ) -> Tensor | tuple[Tensor, list[str]]:
        """The stream entering `layer` as every head ("L{l}H{h}"), every neuron
        ("L{l}N{n}", or "{l}_mlp_out" per layer without `expand_neurons`), "embed",
        "pos_embed" and "bias" (the accumulated output biases), in that order; the rows
        sum to the stream.

        Args:
            layer: the layer whose input to decompose (n_layers, -1, None: the unembed's).
            mlp_input: decompose the MLP's input (adds that layer's heads and b_O).
            expand_neurons: one row per neuron (else one per MLP layer).
            apply_ln: scale with the cached scale of the norm that reads this stream.
            pos_slice: positions to keep.
            return_labels: also return the labels.
            project_output_onto: `[d_model]` or `[d_model, n_out]`: return each row's
                projection, applied before expanding neurons (and after apply_ln's scaling).
        """
        layer = self._layer(layer)
        pos_slice = Slice(pos_slice)
        project, squeeze = _as_2d(project_output_onto)
        ln_project = apply_ln and project is not None
        if ln_project:
            project = self._ln_projection(project)
            scale = self._scale_or_one(layer, mlp_input, pos_slice)

        def finish(rows: Tensor) -> Tensor:
            if project is None:
                return rows
            return (rows @ project) / scale if ln_project else rows @ project

        heads, labels = self.stack_head_results(
            layer + int(mlp_input), pos_slice=pos_slice, return_labels=True
        )
        batch_and_pos = heads.shape[1:-1]
        components = [finish(heads)]
        if not self.model.cfg.attn_only and layer > 0:
            if expand_neurons:
                neurons = self._neuron_stack(layer, pos_slice, Slice(None), project)
                components.append(neurons / scale if ln_project else neurons)
                labels += [f"L{l}N{n}" for l in range(layer) for n in range(self.model.cfg.d_mlp)]
            else:
                mlp, mlp_labels = self.decompose_resid(
                    layer, mlp_input, "mlp", False, pos_slice, incl_embeds=False, return_labels=True
                )
                components.append(finish(mlp))
                labels += mlp_labels
        for name in ("embed", "pos_embed"):
            if f"hook_{name}" in self.cache_dict:
                components.append(finish(pos_slice.apply(self[f"hook_{name}"], dim=-2)[None]))
                labels.append(name)
        bias = self.model.accumulated_bias(layer, mlp_input, include_mlp_biases=expand_neurons)
        components.append(finish(bias.expand(1, *batch_and_pos, bias.shape[-1])))
        labels.append("bias")
        stack = torch.cat(components)
        if apply_ln and not ln_project:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice, mlp_input=mlp_input)
        if squeeze:
            stack = stack.squeeze(-1)
        return (stack, labels) if return_labels else stack


def _as_2d(project: Tensor | None) -> tuple[Tensor | None, bool]:
    """A `[d_model]` projection as `[d_model, 1]`, and whether to squeeze it back."""
    if project is not None and project.ndim == 1:
        return project[:, None], True
    return project, False


def _token_shape(tokens: Tokens) -> torch.Size:
    return tokens.shape if isinstance(tokens, Tensor) else torch.Size([])
