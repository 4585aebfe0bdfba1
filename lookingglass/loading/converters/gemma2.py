"""Gemma 2 (`Gemma2ForCausalLM`): Hugging Face config and weights -> lookingglass's.

Gemma's conventions (scaled embedding folded into `W_E` only, RMSNorm weights stored as
`w - 1`, GeGLU; see `gemma.py`) plus:

* a norm before *and after* each sublayer (`norm_placement="pre_and_post"`):
  `input_layernorm` -> `ln1`, `post_attention_layernorm` -> `ln1_post`,
  `pre_feedforward_layernorm` -> `ln2`, `post_feedforward_layernorm` -> `ln2_post`.
  (In Llama, `post_attention_layernorm` is the MLP's *pre*-norm; here it is not.)
* attention scores scaled by `query_pre_attn_scalar ** -0.5` (our `attn_scale`), then
  soft-capped, `c * tanh(s / c)` with `c = attn_logit_softcapping`;
* logits soft-capped with `final_logit_softcapping` (our `output_logits_soft_cap`);
* local (sliding-window) and global layers alternating, as `layer_types` says.
"""

from __future__ import annotations

import math
from typing import Any

import transformers

from lookingglass.loading.converters import _llama_like as common
from lookingglass.loading.converters import gemma

ARCHITECTURES = ("Gemma2ForCausalLM",)
MODEL_TYPE = "gemma2"

NORMS = {
    "ln1.w": "input_layernorm.weight",
    "ln1_post.w": "post_attention_layernorm.weight",
    "ln2.w": "pre_feedforward_layernorm.weight",
    "ln2_post.w": "post_feedforward_layernorm.weight",
}


def block_weights(hf: transformers.Gemma2Config) -> dict[str, str]:
    """Our name -> Hugging Face's inside a block."""
    return {**NORMS, **common.ATTENTION, **common.GATED_MLP, **common.optional_biases(hf)}


def fields(hf: transformers.Gemma2Config) -> dict[str, Any]:
    """Gemma 2's own `ModelConfig` fields."""
    return dict(
        norm_placement="pre_and_post",
        attn_scale=math.sqrt(hf.query_pre_attn_scalar),
        attn_scores_soft_cap=float(hf.attn_logit_softcapping or -1.0),
        output_logits_soft_cap=float(hf.final_logit_softcapping or -1.0),
    )


FAMILY = common.Family(
    name="Gemma 2",
    architecture=ARCHITECTURES[0],
    config_class=transformers.Gemma2Config,
    block_weights=block_weights,
    fields=fields,
    **gemma.CONVENTIONS,
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf
