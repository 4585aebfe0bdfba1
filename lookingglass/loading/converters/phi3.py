"""Phi-3 (`Phi3ForCausalLM`): Hugging Face config and weights -> lookingglass's.

Llama's blocks (`_llama_like.py`) stored fused: `self_attn.qkv_proj` holds the q, k and v
projections stacked along the output (`[(n_heads + 2 n_kv) * d_head, d_model]`), and
`mlp.gate_up_proj` the gate and up projections (gate first). We split both into views
before the usual mapping. Rotary covers the first `partial_rotary_factor * d_head`
dimensions; "longrope" scaling (the 128k models) is not implemented and is refused.
"""

from __future__ import annotations

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.loading.converters import _llama_like as common

ARCHITECTURES = ("Phi3ForCausalLM",)
MODEL_TYPE = "phi3"

QKV, GATE_UP = "self_attn.qkv_proj.weight", "mlp.gate_up_proj.weight"


def unfuse(hf_sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Split each layer's fused `qkv_proj` and `gate_up_proj` into Llama's names (views).
    A fused tensor of the wrong size is left as it is, for the shape check to report."""
    out = dict(hf_sd)
    q_size, kv_size = cfg.n_heads * cfg.d_head, cfg.n_kv_heads * cfg.d_head
    for layer in range(cfg.n_layers):
        prefix = f"layers.{layer}."
        qkv, gate_up = out.get(prefix + QKV), out.get(prefix + GATE_UP)
        if qkv is not None and qkv.shape[0] == q_size + 2 * kv_size:
            del out[prefix + QKV]
            for name, part in zip("qkv", qkv.split([q_size, kv_size, kv_size]), strict=True):
                out[f"{prefix}self_attn.{name}_proj.weight"] = part
        if gate_up is not None and gate_up.shape[0] == 2 * cfg.d_mlp:
            del out[prefix + GATE_UP]
            gate, up = gate_up.chunk(2)
            out[prefix + "mlp.gate_proj.weight"], out[prefix + "mlp.up_proj.weight"] = gate, up
    return out


FAMILY = common.Family(
    name="Phi-3",
    architecture=ARCHITECTURES[0],
    config_class=transformers.Phi3Config,
    block_weights=lambda hf: dict(common.LLAMA_BLOCK),
    unfuse=unfuse,
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf
