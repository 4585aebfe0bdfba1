"""Small helpers with TransformerLens's names: activation names, losses, conversions."""

from __future__ import annotations

import re

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

_LAYER_TYPE_ALIAS = {"a": "attn", "m": "mlp", "b": "", "block": "", "blocks": "", "attention": "attn"}
_ACT_NAME_ALIAS = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "key": "k",
    "query": "q",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_mid": "mid",
    "mlp_post": "post",
}
_ATTN_ACTS = ("k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores", "mixed_k")
_MLP_ACTS = ("pre", "post", "mid", "pre_linear")


def get_act_name(name: str, layer: int | str | None = None, layer_type: str | None = None) -> str:
    """Full hook name from shorthand, as TransformerLens's `utils.get_act_name`.

    `get_act_name("pattern", 3)` -> "blocks.3.attn.hook_pattern";
    `get_act_name("resid_post", 0)` -> "blocks.0.hook_resid_post";
    `get_act_name("scale", 2, "ln1")` -> "blocks.2.ln1.hook_scale";
    `get_act_name("k6")` -> "blocks.6.attn.hook_k"; a full name is returned unchanged.
    """
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    match = re.match(r"([a-z_]+?)(\d+)([a-z]?.*)", name)
    if match is not None and layer is None:
        name, layer, layer_type = match.group(1), int(match.group(2)), match.group(3) or None
    name = _ACT_NAME_ALIAS.get(name, name)
    full = f"blocks.{layer}." if layer is not None else ""
    if name in _ATTN_ACTS:
        layer_type = "attn"
    elif name in _MLP_ACTS:
        layer_type = "mlp"
    elif layer_type in _LAYER_TYPE_ALIAS:
        layer_type = _LAYER_TYPE_ALIAS[layer_type]
    if layer_type:
        full += f"{layer_type}."
    full += f"hook_{name}"
    if name in ("scale", "normalized") and layer is None:
        full = f"ln_final.{full}"
    return full


def lm_cross_entropy_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    per_token: bool = False,
) -> Float[Tensor, ""] | Float[Tensor, "batch pos_minus_1"]:
    """Next-token cross-entropy: position p predicts token p+1.

    With an attention mask, positions whose input or target is padding are left out (set
    to 0 in the per-token output). Same definition as TransformerLens's.
    """
    log_probs = logits.float().log_softmax(dim=-1)
    predicted = log_probs[:, :-1].gather(-1, tokens[:, 1:, None].to(logits.device))[..., 0]
    if attention_mask is not None:
        keep = (attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()).to(logits.device)
        predicted = predicted * keep
        n_tokens = keep.sum()
    else:
        n_tokens = predicted.numel()
    if per_token:
        return -predicted
    return -predicted.sum() / n_tokens


def lm_accuracy(
    logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"], per_token: bool = False
) -> Float[Tensor, ""] | Float[Tensor, "batch pos_minus_1"]:
    """Fraction of positions whose argmax prediction is the next token."""
    correct = (logits[:, :-1].argmax(dim=-1) == tokens[:, 1:].to(logits.device)).float()
    return correct if per_token else correct.mean()


def to_numpy(tensor) -> np.ndarray:
    """A numpy array from a tensor (detached, on CPU), list or number."""
    if isinstance(tensor, Tensor):
        return tensor.detach().cpu().float().numpy() if tensor.is_floating_point() else tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def get_device() -> torch.device:
    """The best available device: CUDA, then MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
