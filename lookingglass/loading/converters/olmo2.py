"""OLMo 2 (`Olmo2ForCausalLM`): Hugging Face config and weights -> lookingglass's.

Llama's projections (`_llama_like.py`), but the norms sit *after* each sublayer, with no
norm before it (`norm_placement="post"`): `x + post_attention_layernorm(attn(x))`, then
`x + post_feedforward_layernorm(mlp(x))` (our `ln1_post`, `ln2_post`). Queries and keys
are RMS-normalized over all heads together, before rotary (`qk_norm_scope="all_heads"`:
`q_norm` has `n_heads * d_head` weights, `k_norm` `n_key_value_heads * d_head`).
"""

from __future__ import annotations

import transformers

from lookingglass.loading.converters import _llama_like as common

ARCHITECTURES = ("Olmo2ForCausalLM",)
MODEL_TYPE = "olmo2"

POST_NORMS = {
    "ln1_post.w": "post_attention_layernorm.weight",
    "ln2_post.w": "post_feedforward_layernorm.weight",
}


def block_weights(hf: transformers.Olmo2Config) -> dict[str, str]:
    """Our name -> Hugging Face's inside a block."""
    biases = common.optional_biases(hf)
    return {**POST_NORMS, **common.ATTENTION, **common.GATED_MLP, **common.QK_NORMS, **biases}


FAMILY = common.Family(
    name="OLMo 2",
    architecture=ARCHITECTURES[0],
    config_class=transformers.Olmo2Config,
    block_weights=block_weights,
    fields=lambda hf: dict(norm_placement="post", use_qk_norm=True, qk_norm_scope="all_heads"),
)
config_from_hf = FAMILY.config_from_hf
state_dict_from_hf = FAMILY.state_dict_from_hf
