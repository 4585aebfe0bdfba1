"""Mistral (`MistralForCausalLM`): Hugging Face config and weights -> lookingglass's.

Llama's blocks (`_llama_like.py`) without biases, with sliding-window attention: when
`sliding_window` is set, every layer's query at position i sees only keys j with
`i - j < sliding_window` (our `window_size`, every layer local).
"""

from __future__ import annotations

import transformers

from lookingglass.loading.converters import _llama_like as common

ARCHITECTURES = ("MistralForCausalLM",)
MODEL_TYPE = "mistral"

FAMILY = common.Family(
    name="Mistral",
    architecture=ARCHITECTURES[0],
    config_class=transformers.MistralConfig,
    block_weights=lambda hf: dict(common.LLAMA_BLOCK),
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf
