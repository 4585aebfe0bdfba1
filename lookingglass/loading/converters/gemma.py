"""Gemma (`GemmaForCausalLM`): Hugging Face config and weights -> lookingglass's.

Llama's blocks (`_llama_like.py`) with three differences:

* the embedding is multiplied by sqrt(d_model) before the first block. We fold the
  factor into `W_E`, but not into the unembedding, which is the *unscaled* embedding
  (tied), so `W_U != W_E.T` here;
* RMSNorm multiplies by `(1 + w)` with `w` stored; we store `1 + w` as our weight;
* the MLP is GeGLU: the gate goes through `gelu_pytorch_tanh` (the tanh approximation).

`head_dim` is its own config field (256 in the released models), and Gemma 2B has one
key/value head (multi-query attention).
"""

from __future__ import annotations

import transformers

from lookingglass.loading.converters import _llama_like as common

ARCHITECTURES = ("GemmaForCausalLM",)
MODEL_TYPE = "gemma"


# What Gemma 2 shares with Gemma (see the module docstring).
CONVENTIONS = dict(
    only_supported={"use_bidirectional_attention": (None, False)},
    norm_offset=1.0,
    embed_scale=True,
)

FAMILY = common.Family(
    name="Gemma",
    architecture=ARCHITECTURES[0],
    config_class=transformers.GemmaConfig,
    block_weights=common.llama_block,
    **CONVENTIONS,
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf
