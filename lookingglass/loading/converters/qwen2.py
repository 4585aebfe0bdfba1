"""Qwen2 / Qwen2.5 (`Qwen2ForCausalLM`): Hugging Face config and weights -> lookingglass's.

Llama's blocks (`_llama_like.py`) with biases on the q, k and v projections (not on o).
With `use_sliding_window`, the layers from `max_window_layers` on are local
(`layer_types` says which); Qwen's tokenizers add no BOS token, so
`default_prepend_bos=False`, as in TransformerLens.
"""

from __future__ import annotations

import transformers

from lookingglass.loading.converters import _llama_like as common

ARCHITECTURES = ("Qwen2ForCausalLM",)
MODEL_TYPE = "qwen2"

FAMILY = common.Family(
    name="Qwen2",
    architecture=ARCHITECTURES[0],
    config_class=transformers.Qwen2Config,
    block_weights=lambda hf: {**common.LLAMA_BLOCK, **common.attention_biases("qkv")},
    fields=lambda hf: dict(default_prepend_bos=False),
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf
