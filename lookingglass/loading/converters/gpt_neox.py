"""GPT-NeoX and Pythia (`GPTNeoXForCausalLM`): Hugging Face config and weights -> ours.

With `use_parallel_residual=True` (Pythia, GPT-NeoX-20B) attention and MLP read the
same residual stream through their own LayerNorms and are added together:
`resid_post = resid_pre + attn(ln1(x)) + mlp(ln2(x))` (`parallel_attn_mlp=True`);
with False the block is sequential, as in GPT-2. Rotary embeddings turn the first
`partial_rotary_factor * d_head` dimensions of each head (halves pairing, as Llama).
`query_key_value` holds each head's q, k and v side by side (`[n_heads, 3, d_head]`
along its output), split here into three views.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.loading.converters._layout import (
    Layout,
    config_fields,
    export_not_implemented,
    fused_attention,
    load_tables,
    mlp,
    norm,
    rotary_fields,
)

ARCHITECTURES = ("GPTNeoXForCausalLM",)
MODEL_TYPE = "gpt_neox"
FAMILY = "GPT-NeoX"
LAYOUT = Layout(
    FAMILY,
    prefix="gpt_neox.",
    block_prefix="layers.",
    embed="embed_in.weight",
    lm_head="embed_out.weight",
    buffers=(".attention.bias", ".attention.masked_bias", ".rotary_emb.inv_freq"),
)
GLOBAL_WEIGHTS = norm("ln_final", "final_layer_norm")


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Translate a GPT-NeoX `config.json` dict into a `ModelConfig` (missing fields take
    `transformers.GPTNeoXConfig`'s defaults, and legacy rotary fields such as `rotary_pct`
    are read as Hugging Face reads them; `overrides` are applied last).

    Raises:
        ConfigError: a rope type we do not implement, an unknown activation, or a width
            that does not split into heads.
    """
    hf = transformers.GPTNeoXConfig.from_dict(dict(hf_config))
    fields = config_fields(
        FAMILY,
        ARCHITECTURES[0],
        hf,
        d_mlp=hf.intermediate_size,
        eps=hf.layer_norm_eps,
        act_field="hidden_act",
    )
    fields.update(
        positional_embedding_type="rotary",
        **rotary_fields(FAMILY, hf.rope_parameters, fields["d_head"]),
        parallel_attn_mlp=hf.use_parallel_residual,
        # Pythia was trained without a BOS token in front of each document.
        default_prepend_bos=False,
    )
    return ModelConfig(**{**fields, **overrides})


def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor], cfg: ModelConfig, hf_config: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """Map a Hugging Face GPT-NeoX state dict to ours (views; saved mask and rotary
    buffers ignored). Without `attention_bias`, the attention biases are zero.

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    hf = transformers.GPTNeoXConfig.from_dict(dict(hf_config or {}))
    block = {
        **norm("ln1", "input_layernorm"),
        **fused_attention("attention.query_key_value", "attention.dense", hf.attention_bias),
        **norm("ln2", "post_attention_layernorm"),
        **mlp("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"),
    }
    biases = ("attn.b_Q", "attn.b_K", "attn.b_V", "attn.b_O")
    absent = {} if hf.attention_bias else {name: 0.0 for name in biases}
    return load_tables(hf_sd, cfg, LAYOUT, GLOBAL_WEIGHTS, block, hf.tie_word_embeddings, absent)


# Export back to Hugging Face's layout (hf_export.to_hf) is not implemented for this family.
config_to_hf = state_dict_to_hf = export_not_implemented(FAMILY)
