"""Weight processing: the same model, in a more interpretable parametrization.

TransformerLens's five steps, as pure functions on a state dict in our (= its) layout:
`fold_layer_norm`, `center_writing_weights`, `center_unembed`, `fold_value_biases`,
`refactor_factored_attn_matrices`, and `process_weights` running them in its order.
The math is TransformerLens 3.x's, checked against it in `tests/unit/test_processing.py`.

Each function replaces tensors in the dict one at a time and returns the dict. By default
it never writes into a tensor it was given (they may be a model's parameters, or views of
one checkpoint buffer), so peak memory grows by about one tensor. `from_pretrained` owns
its freshly loaded (memory-mapped, copy-on-write) tensors and passes `in_place=True`:
the large weights are then updated where they lie, and loading with processing needs
no second copy of them (`in_place.exclusive` first gives each key memory of its own).
Where TransformerLens skips a step that does not apply and only warns, these raise
`ConfigError`: a requested change that silently does nothing is how interpretability
results go wrong.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.errors import CheckpointError, ConfigError
from lookingglass.loading.in_place import exclusive

StateDict = dict[str, Tensor]
LAYER_NORMS = ("LN", "LNPre")


def fold_layer_norm(
    sd: StateDict,
    cfg: ModelConfig,
    fold_biases: bool = True,
    center_weights: bool = True,
    *,
    in_place: bool = False,
) -> StateDict:
    """Fold each norm's weight `w` and bias `b` into the layers that read its output.

    A reader computes `(n * w + b) @ W + b_W`, which equals `n @ (w[:, None] * W) +
    (b_W + b @ W)`: the reader's weight and bias absorb the norm's, and the norm keys
    are removed from `sd` (the model must then use `LNPre` / `RMSPre`; `process_weights`
    returns that config). With `center_weights`, each reader's weight is also centered
    along `d_model`, which changes nothing because a LayerNorm's output has zero mean.

    Args:
        sd: state dict with norm weights (`normalization_type` "LN" or "RMS").
        fold_biases: fold the LayerNorm biases (RMSNorm has none).
        center_weights: center the readers' weights (LayerNorm only).
        in_place: write into `sd`'s weight tensors (each must own its memory).

    Only norms *before* a sublayer and the final norm are folded; a norm after a sublayer
    (`norm_placement` "pre_and_post", "post") keeps its weight (see `make_post_norm`).
    A mixture of experts' router and every expert read the MLP's norm.

    Raises:
        ConfigError: centering after an RMSNorm (whose output is not centered), not
            folding a LayerNorm's biases (they would be lost), or a LayerNorm before a
            mixture of experts (its router has no bias).
    """
    norm = cfg.normalization_type
    if norm in ("LNPre", "RMSPre"):
        return sd  # already folded: nothing left to fold
    _check_applicable(cfg, "fold_ln")
    if norm == "RMS" and center_weights:
        raise ConfigError(
            "fold_layer_norm(center_weights=True) needs LayerNorm; RMSNorm does not center "
            "its output, so centering the weights that read it would change the model."
        )
    if norm == "LN" and not fold_biases:
        raise ConfigError(
            "fold_layer_norm(fold_biases=False) would drop the LayerNorm biases: the folded "
            "norm (LNPre) has none. Fold them, or keep the LayerNorms (fold_ln=False)."
        )
    # Norms after a sublayer (`ln1_post`, `ln2_post`) stay: their output is added to the
    # residual stream, where no weight can absorb theirs. "post" models have no pre-norms.
    has_pre_norms = cfg.norm_placement != "post"
    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}."
        attn_readers = [
            (_attn_key(sd, block, f"W_{x}"), _attn_key(sd, block, f"b_{x}"), 1, True) for x in "QKV"
        ]
        if has_pre_norms:
            _fold_norm(sd, block + "ln1", attn_readers, center_weights, in_place)
        if not cfg.attn_only and has_pre_norms:
            readers = _mlp_readers(sd, block, cfg)
            _fold_norm(sd, block + "ln2", readers, center_weights, in_place)
    readers = [("unembed.W_U", "unembed.b_U", 0, True)]
    _fold_norm(sd, "ln_final", readers, center_weights, in_place)
    return sd


def _mlp_readers(sd: StateDict, block: str, cfg: ModelConfig) -> list[tuple[str, str, int, bool]]:
    """Every weight that reads the MLP's norm: `W_in` (and `W_gate` of a gated MLP); for a
    mixture of experts, the router `W_gate` and each expert's `W_in` and `W_gate`."""
    mlp = f"{block}mlp."
    experts = (
        [mlp] if cfg.num_experts is None else [f"{mlp}experts.{e}." for e in range(cfg.num_experts)]
    )
    readers = [(f"{mlp}W_gate", f"{mlp}b_gate", 0, False)] if cfg.num_experts else []
    for expert in experts:
        if f"{expert}W_gate" in sd:  # gated MLPs read the norm twice, biased before the product
            readers.append((f"{expert}W_in", f"{expert}b_pre_linear", 0, True))
            readers.append((f"{expert}W_gate", f"{expert}b_gate", 0, False))
        else:
            readers.append((f"{expert}W_in", f"{expert}b_in", 0, True))
    return readers


def _fold_norm(
    sd: StateDict,
    norm: str,
    readers: list[tuple[str, str, int, bool]],
    center_weights: bool,
    in_place: bool,
) -> None:
    """Fold `norm`'s `w` / `b` into each reader `(weight, bias, d_model axis, centerable)`."""
    w, b = _take(sd, f"{norm}.w", "fold_ln"), sd.pop(f"{norm}.b", None)
    for W_key, b_key, axis, centerable in readers:
        W = _get(sd, W_key, "fold_ln")
        shape = [1] * W.ndim
        shape[axis] = -1
        if b is not None:
            bias = sd.get(b_key)
            folded = _fold_bias(W, b.view(shape), axis)
            sd[b_key] = folded if bias is None else bias + folded
        W = W.mul_(w.view(shape)) if in_place else W * w.view(shape)
        if center_weights and centerable:
            W -= W.mean(axis, keepdim=True)  # W is ours now (fresh, or owned in place)
        sd[W_key] = W


def _fold_bias(W: Tensor, b: Tensor, axis: int, chunk: int = 2**22) -> Tensor:
    """`(W * b).sum(axis)`, TransformerLens's arithmetic, in slices of about `chunk`
    elements along another dimension, so that a large `W` (the unembedding) needs no
    temporary of its own size."""
    other = W.ndim - 1 if axis != W.ndim - 1 else 0
    step = max(1, chunk * W.shape[other] // max(W.numel(), 1))
    parts = [(W_part * b).sum(axis) for W_part in W.split(step, dim=other)]
    return torch.cat(parts, dim=other if other < axis else other - 1)


def center_writing_weights(sd: StateDict, cfg: ModelConfig, *, in_place: bool = False) -> StateDict:
    """Center every weight that writes to the residual stream along `d_model`.

    `W_E`, `W_pos`, each `W_O` / `b_O` and `W_out` / `b_out` lose their mean over
    `d_model`. Every reader of the residual stream is a LayerNorm, which removes that
    mean anyway, so the model's output is unchanged.

    Raises:
        ConfigError: when the model's norm is not a LayerNorm (the claim above fails).
    """
    _check_applicable(cfg, "center_writing_weights")
    writers = ["embed.W_E", "pos_embed.W_pos"]
    for layer in range(cfg.n_layers):
        writers += [f"blocks.{layer}.attn.W_O", f"blocks.{layer}.attn.b_O"]
        if not cfg.attn_only:
            writers += [f"blocks.{layer}.mlp.W_out", f"blocks.{layer}.mlp.b_out"]
    for key in writers:
        if key in sd:  # a model without learned positions or output biases has less to center
            sd[key] = _minus_mean(sd[key], in_place)
    return sd


def _minus_mean(W: Tensor, in_place: bool) -> Tensor:
    """`W` less its mean along the last dimension (written into `W` when `in_place`)."""
    mean = W.mean(-1, keepdim=True)
    return W.sub_(mean) if in_place else W - mean


def center_unembed(
    sd: StateDict, cfg: ModelConfig | None = None, *, in_place: bool = False
) -> StateDict:
    """Center `W_U` and `b_U` along the vocabulary: logits shift by a per-position
    constant, so log-probabilities (and the loss) are unchanged.

    Raises:
        ConfigError: with `cfg` given, when its logits are soft-capped (the shift would
            then change the probabilities).
    """
    if cfg is not None:
        _check_applicable(cfg, "center_unembed")
    for key in ("unembed.W_U", "unembed.b_U"):
        sd[key] = _minus_mean(_get(sd, key, "center_unembed"), in_place)
    return sd


def fold_value_biases(sd: StateDict, cfg: ModelConfig) -> StateDict:
    """Move each layer's value biases into its output bias.

    Attention patterns sum to 1, so head h always adds `b_V[h] @ W_O[h]` to the output;
    `b_O += sum_h b_V[h] @ W_O[h]` and `b_V = 0` compute the same thing.
    """
    step = "fold_value_biases"
    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}."
        b_V_key, W_O_key, b_O_key = (_attn_key(sd, block, n) for n in ("b_V", "W_O", "b_O"))
        b_V, W_O, b_O = (_get(sd, key, step) for key in (b_V_key, W_O_key, b_O_key))
        # Grouped-query attention: each value head serves a group of query heads.
        per_head_b_V = b_V.repeat_interleave(W_O.shape[0] // b_V.shape[0], dim=0)
        sd[b_O_key] = b_O + (per_head_b_V[:, :, None] * W_O).sum([0, 1])
        sd[b_V_key] = torch.zeros_like(b_V)
    return sd


def refactor_factored_attn_matrices(sd: StateDict, cfg: ModelConfig) -> StateDict:
    """Re-factor each head's QK and OV circuits into their "even" SVD factorizations.

    `W_Q W_K^T` (with the biases appended as an extra input row) becomes
    `(U sqrt(S)) (V sqrt(S))^T`, and `W_V W_O` becomes `(U S) V^T`, so `W_O` is a
    rotation; `b_V` is folded into `b_O`. The circuits, hence the model, are unchanged.

    Raises:
        ConfigError: for rotary positions (QK then depends on position), QK norms, or
            grouped-query attention.
    """
    _check_applicable(cfg, "refactor_factored_attn_matrices")
    step = "refactor_factored_attn_matrices"
    for layer in range(cfg.n_layers):
        attn = f"blocks.{layer}.attn."
        get = {name: _get(sd, attn + name, step) for name in ("W_Q", "b_Q", "W_K", "b_K")}
        W_Q_eff = torch.cat([get["W_Q"], get["b_Q"][:, None, :]], dim=1)
        W_K_eff = torch.cat([get["W_K"], get["b_K"][:, None, :]], dim=1)
        U, S, V = _svd_of_product(W_Q_eff, W_K_eff.transpose(-1, -2))
        W_Q_even = U * S.sqrt()[..., None, :]
        W_K_even = (S.sqrt()[..., :, None] * V.transpose(-1, -2)).transpose(-1, -2)
        sd[attn + "W_Q"], sd[attn + "b_Q"] = W_Q_even[:, :-1, :], W_Q_even[:, -1, :]
        sd[attn + "W_K"], sd[attn + "b_K"] = W_K_even[:, :-1, :], W_K_even[:, -1, :]

        W_V, W_O, b_V = (_get(sd, attn + name, step) for name in ("W_V", "W_O", "b_V"))
        sd[attn + "b_O"] = _get(sd, attn + "b_O", step) + (b_V[:, :, None] * W_O).sum(1).sum(0)
        sd[attn + "b_V"] = torch.zeros_like(b_V)
        U, S, V = _svd_of_product(W_V, W_O)
        sd[attn + "W_V"], sd[attn + "W_O"] = U @ S.diag_embed(), V.transpose(-1, -2)
    return sd


def _svd_of_product(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`U, S, V` with `A @ B == U @ diag(S) @ V^T`, without forming `A @ B`.

    TransformerLens's `FactoredMatrix.svd` algorithm, step for step, so that the
    singular vectors (whose signs are arbitrary) come out the same as its.
    """
    Ua, Sa, Vha = torch.linalg.svd(A, full_matrices=False)
    Ub, Sb, Vhb = torch.linalg.svd(B, full_matrices=False)
    middle = Sa[..., :, None] * Vha @ Ub * Sb[..., None, :]
    Um, Sm, Vhm = torch.linalg.svd(middle, full_matrices=False)
    return Ua @ Um, Sm, Vhb.transpose(-1, -2) @ Vhm.transpose(-1, -2)


def process_weights(
    sd: StateDict,
    cfg: ModelConfig,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    refactor_factored_attn_matrices: bool = False,
    *,
    in_place: bool = False,
) -> tuple[StateDict, ModelConfig]:
    """Apply the requested steps in TransformerLens's order; return `(sd, new_cfg)`.

    `fold_ln` turns "LN" into "LNPre" ("RMS" into "RMSPre", folding only the weights)
    in the returned config; a config already "LNPre"/"RMSPre" is already folded.
    Reduced-precision tensors are processed in float32 and cast back, as
    TransformerLens does. Every request is checked before any tensor changes.
    `in_place=True` writes into `sd`'s tensors (after giving any that share memory a
    copy of their own); the default leaves every given tensor as it was.

    Raises:
        ConfigError: for a step that cannot apply to this model.
    """
    norm = cfg.normalization_type
    if fold_ln and norm is None:
        raise ConfigError("fold_ln=True, but the model has no norms to fold: pass fold_ln=False.")
    requested = {
        "fold_ln": fold_ln and norm in ("LN", "RMS"),
        "center_writing_weights": center_writing_weights,
        "center_unembed": center_unembed,
        "refactor_factored_attn_matrices": refactor_factored_attn_matrices,
    }
    for step, on in requested.items():
        if on:
            _check_applicable(cfg, step)

    dtypes = {k: v.dtype for k, v in sd.items() if v.is_floating_point() and v.element_size() < 4}
    for key in dtypes:
        sd[key] = sd[key].float()
    if in_place:
        exclusive(sd)
    if fold_ln and norm in ("LN", "RMS"):
        is_ln = norm == "LN"
        _fold_layer_norm(sd, cfg, fold_biases=is_ln, center_weights=is_ln, in_place=in_place)
        cfg = cfg.replace(normalization_type=f"{norm}Pre")
    if center_writing_weights:
        _center_writing_weights(sd, cfg, in_place=in_place)
    if center_unembed:
        _center_unembed(sd, cfg, in_place=in_place)
    if fold_value_biases:
        _fold_value_biases(sd, cfg)
        if center_writing_weights:  # the folded b_O is a writing weight too
            for layer in range(cfg.n_layers):
                b_O = sd[f"blocks.{layer}.attn.b_O"]
                sd[f"blocks.{layer}.attn.b_O"] = b_O - b_O.mean()
    if refactor_factored_attn_matrices:
        _refactor(sd, cfg)
    for key, dtype in dtypes.items():
        if key in sd:  # folded norms are gone
            sd[key] = sd[key].to(dtype)
    return sd, cfg


# process_weights' flags carry these functions' names (TransformerLens's signature) and
# shadow them in its body; it calls them through these aliases.
_fold_layer_norm = fold_layer_norm
_center_writing_weights = center_writing_weights
_center_unembed = center_unembed
_fold_value_biases = fold_value_biases
_refactor = refactor_factored_attn_matrices


def step_applies(cfg: ModelConfig, step: str) -> bool:
    """Whether processing step `step` (a `process_weights` flag name) is valid for this
    model; `from_pretrained` turns a step on by default only where it is."""
    try:
        _check_applicable(cfg, step)
    except ConfigError:
        return False
    return True


def _check_applicable(cfg: ModelConfig, step: str) -> None:
    """Raise `ConfigError` when `step` would change this model, or is not implemented for it."""
    pre_norm = cfg.norm_placement == "pre"
    grouped = cfg.n_key_value_heads not in (None, cfg.n_heads)
    shortformer = cfg.positional_embedding_type == "shortformer"
    rms_after_layer_norms = cfg.final_rms and cfg.normalization_type in LAYER_NORMS
    reasons = {
        "fold_ln": [
            (
                cfg.num_experts is not None and cfg.normalization_type == "LN",
                "a mixture of experts' router has no bias to take a LayerNorm's",
            ),
            (shortformer, "shortformer positions are added after ln1, outside its weight"),
            (cfg.is_layer_norm_activation(), "folding the MLP's own LayerNorm is not implemented"),
            (rms_after_layer_norms, "the final RMSNorm (final_rms) cannot take centering"),
        ],
        "center_writing_weights": [
            (
                cfg.normalization_type not in LAYER_NORMS,
                f"it needs LayerNorm (normalization_type 'LN' or 'LNPre'), got "
                f"{cfg.normalization_type!r}: without a centering norm it changes the model",
            ),
            (not pre_norm, "with norms after sublayers, outputs are not read by a centering norm"),
            (
                cfg.num_experts is not None,
                "centering mixture-of-experts outputs is not implemented",
            ),
            (shortformer, "shortformer positions are read after ln1, not centered by it"),
            (rms_after_layer_norms, "the final RMSNorm (final_rms) does not center"),
        ],
        "center_unembed": [
            (cfg.output_logits_soft_cap > 0, "soft-capped logits make the shift change the output"),
        ],
        "refactor_factored_attn_matrices": [
            (
                cfg.positional_embedding_type == "rotary",
                "with rotary embeddings QK depends on position",
            ),
            (cfg.use_qk_norm, "a norm between W_Q/W_K and the scores makes QK non-bilinear"),
            (grouped, "it is not implemented for grouped-query attention"),
            (cfg.clip_qkv is not None, "clipping q/k/v is not invariant under it"),
        ],
    }
    for bad, reason in reasons[step]:
        if bad:
            raise ConfigError(f"{step} cannot apply to this model: {reason}. Pass {step}=False.")


def _attn_key(sd: StateDict, block: str, name: str) -> str:
    """`blocks.{i}.attn.{name}`, or `attn._{name}` for grouped-query attention's K and V."""
    key = f"{block}attn.{name}"
    grouped = f"{block}attn._{name}"
    return grouped if key not in sd and grouped in sd else key


def _get(sd: StateDict, key: str, step: str) -> Tensor:
    if key not in sd:
        raise CheckpointError(
            f"Weight processing ({step}) needs {key!r}, which the state dict lacks."
        )
    return sd[key]


def _take(sd: StateDict, key: str, step: str) -> Tensor:
    return sd.pop(key) if key in sd else _get(sd, key, step)
