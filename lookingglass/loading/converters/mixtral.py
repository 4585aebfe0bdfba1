"""Mixtral (`MixtralForCausalLM`): Hugging Face config and weights -> lookingglass's.

Llama's attention (`_llama_like.py`) with a sparse mixture of SwiGLU experts in place of
the MLP (`model/moe.py`): the router `block_sparse_moe.gate` (our `mlp.W_gate`,
`[d_model, num_experts]`) picks `num_experts_per_tok` experts per token, and expert `e`'s
`w1`, `w3`, `w2` are our `mlp.experts.{e}.W_gate`, `W_in`, `W_out`. Checkpoints store the
experts one by one; `transformers` 5 keeps them fused in memory
(`mlp.experts.gate_up_proj [E, 2 d_mlp, d_model]`, `down_proj`), which we accept too.
"""

from __future__ import annotations

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.loading.converters import _llama_like as common

ARCHITECTURES = ("MixtralForCausalLM",)
MODEL_TYPE = "mixtral"

ROUTER = "block_sparse_moe.gate.weight"
EXPERT = {"W_gate": "w1.weight", "W_in": "w3.weight", "W_out": "w2.weight"}


def block_weights(hf: transformers.MixtralConfig) -> dict[str, str]:
    """Our name -> Hugging Face's inside a block, for every expert."""
    experts = {
        f"mlp.experts.{e}.{ours}": f"block_sparse_moe.experts.{e}.{theirs}"
        for e in range(hf.num_local_experts)
        for ours, theirs in EXPERT.items()
    }
    return {**common.PRE_NORMS, **common.ATTENTION, "mlp.W_gate": ROUTER, **experts}


def unfuse(hf_sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Rename `transformers` 5's in-memory MoE tensors to the checkpoint names (views)."""
    out = dict(hf_sd)
    for layer in range(cfg.n_layers):
        fused = f"layers.{layer}.mlp."
        if fused + "experts.gate_up_proj" not in out:
            continue
        block = f"layers.{layer}.block_sparse_moe."
        out[block + "gate.weight"] = out.pop(fused + "gate.weight")
        gate_up = out.pop(fused + "experts.gate_up_proj")
        down = out.pop(fused + "experts.down_proj")
        for e in range(gate_up.shape[0]):
            expert = f"{block}experts.{e}."
            out[expert + "w1.weight"], out[expert + "w3.weight"] = gate_up[e].chunk(2)
            out[expert + "w2.weight"] = down[e]
    return out


FAMILY = common.Family(
    name="Mixtral",
    architecture=ARCHITECTURES[0],
    config_class=transformers.MixtralConfig,
    block_weights=block_weights,
    fields=lambda hf: dict(
        num_experts=hf.num_local_experts, experts_per_token=hf.num_experts_per_tok
    ),
    unfuse=unfuse,
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf
