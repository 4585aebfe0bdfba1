"""Qwen3 (`Qwen3ForCausalLM`): Hugging Face config and weights -> lookingglass's.

Llama's blocks (`_llama_like.py`) with an RMSNorm on each query and key head, over
`d_head`, after the projection and before rotary (`use_qk_norm`, scope "head"; weights
`attn.q_norm.norm.w` / `attn.k_norm.norm.w`). `head_dim` is its own config field (not
`hidden_size // num_attention_heads`); biases only with `attention_bias=True`.
"""

from __future__ import annotations

import transformers

from lookingglass.loading.converters import _llama_like as common

ARCHITECTURES = ("Qwen3ForCausalLM",)
MODEL_TYPE = "qwen3"


FAMILY = common.Family(
    name="Qwen3",
    architecture=ARCHITECTURES[0],
    config_class=transformers.Qwen3Config,
    block_weights=lambda hf: {**common.llama_block(hf), **common.QK_NORMS},
    fields=lambda hf: dict(use_qk_norm=True, qk_norm_scope="head", default_prepend_bos=False),
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf
