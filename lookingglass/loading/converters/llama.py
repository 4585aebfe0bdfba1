"""Llama 1/2/3 (`LlamaForCausalLM`): Hugging Face config and weights <-> lookingglass's.

Llama is the template of the Llama-shaped families (`_llama_like.py`): RMSNorm before
attention and MLP, rotary positions on the whole head (rotate-half pairs; Llama 3.1's
"llama3" or "linear" frequency scaling), grouped-query attention when
`num_key_value_heads < num_attention_heads`, and a SwiGLU MLP
(`down(silu(gate(x)) * up(x))`: our `W_gate`, `W_in`, `W_out`). Biases exist only with
`attention_bias=True` (on q, k, v and o). Export writes bias-free Llama.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.loading.converters import _llama_like as common

ARCHITECTURES = ("LlamaForCausalLM",)
MODEL_TYPE = "llama"


FAMILY = common.Family(
    name="Llama",
    architecture=ARCHITECTURES[0],
    config_class=transformers.LlamaConfig,
    block_weights=common.llama_block,
    only_supported={"mlp_bias": False},  # our gated MLP has no gate bias
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf


def state_dict_to_hf(sd: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our state dict as Hugging Face Llama's (bias-free; `model.` prefix; `lm_head.weight`
    unless tied). Processed models export too: folded norms become weights of one.

    Raises:
        ConfigError: naming what Llama cannot express (config fields first, then any
            non-zero bias).
    """
    config_to_hf(cfg, tie_word_embeddings=False)  # the config's problems are the clearer
    return FAMILY.state_dict_to_hf(sd, cfg)


def config_to_hf(cfg: ModelConfig, tie_word_embeddings: bool) -> dict[str, Any]:
    """A Llama `config.json` dict for a model with `cfg`.

    Raises:
        ConfigError: naming the fields `cfg` sets that Llama cannot express.
    """
    fields = common.llama_config_to_hf(cfg, tie_word_embeddings, FAMILY.name)
    return dict(
        architectures=list(ARCHITECTURES),
        model_type=MODEL_TYPE,
        **fields,
        attention_bias=False,
        mlp_bias=False,
    )
