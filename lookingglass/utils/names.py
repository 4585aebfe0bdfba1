"""`get_act_name`: full hook names from TransformerLens's shorthand."""

from __future__ import annotations

import re

_LAYER_TYPE_ALIAS = {
    "a": "attn",
    "m": "mlp",
    "b": "",
    "block": "",
    "blocks": "",
    "attention": "attn",
}
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
    A layer number inside the shorthand wins over `layer`, as in TransformerLens. One
    extension: names with underscores take a layer too (`"resid_post5"` is layer 5's
    `hook_resid_post`; TransformerLens returns "hook_resid_post5", which names nothing).
    """
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    match = re.match(r"([a-z_]+?)(\d+)([a-z]?.*)", name)
    if match is not None:
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
