"""GPT-J (`GPTJForCausalLM`): Hugging Face config and weights -> lookingglass's.

GPT-J runs attention and MLP in parallel from one LayerNorm:
`resid_post = resid_pre + attn(ln_1(x)) + mlp(ln_1(x))`. We express that with
`parallel_attn_mlp=True` and give `ln2` a copy of `ln_1`'s weights, so both sublayers
read the same normalized input. Rotary embeddings turn the first `rotary_dim`
dimensions of each head, pairing adjacent dimensions (`rotary_adjacent_pairs=True`), with
base 10000 (fixed in Hugging Face's implementation). q, k, v and the output projection
have no biases; the unembedding (`lm_head`) has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.loading.converters._layout import (
    UNEMBED_BIAS,
    Layout,
    attention,
    config_fields,
    export_not_implemented,
    load_tables,
    mlp,
    norm,
    share_ln1_with_ln2,
)

ARCHITECTURES = ("GPTJForCausalLM",)
MODEL_TYPE = "gptj"
FAMILY = "GPT-J"
LAYOUT = Layout(
    FAMILY,
    prefix="transformer.",
    block_prefix="h.",
    embed="wte.weight",
    buffers=(".attn.bias", ".attn.masked_bias"),
)
GLOBAL_WEIGHTS = {**norm("ln_final", "ln_f"), "unembed.b_U": ("lm_head.bias", UNEMBED_BIAS)}


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Translate a GPT-J `config.json` dict into a `ModelConfig` (missing fields take
    `transformers.GPTJConfig`'s defaults; `overrides` are applied last).

    Raises:
        ConfigError: an unknown activation, or a width that does not split into heads.
    """
    hf = transformers.GPTJConfig.from_dict(dict(hf_config))
    fields = config_fields(
        FAMILY,
        ARCHITECTURES[0],
        hf,
        d_mlp=hf.n_inner or 4 * hf.n_embd,
        eps=hf.layer_norm_epsilon,
        act_field="activation_function",
    )
    fields.update(
        positional_embedding_type="rotary",
        rotary_dim=hf.rotary_dim,
        rotary_adjacent_pairs=True,
        parallel_attn_mlp=True,
        default_prepend_bos=True,
    )
    return ModelConfig(**{**fields, **overrides})


def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor], cfg: ModelConfig, hf_config: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """Map a Hugging Face GPT-J state dict to ours (views, except `ln2`: a copy of `ln1`).

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    block = {
        **norm("ln1", "ln_1"),
        **attention(cfg, "attn.{}_proj", "out", qkv_bias=False, o_bias=False),
        **mlp("mlp.fc_in", "mlp.fc_out"),
    }
    tied = transformers.GPTJConfig.from_dict(dict(hf_config or {})).tie_word_embeddings
    absent = {name: 0.0 for name in ("attn.b_Q", "attn.b_K", "attn.b_V", "attn.b_O")}
    sd = load_tables(hf_sd, cfg, LAYOUT, GLOBAL_WEIGHTS, block, tied, absent)
    return share_ln1_with_ln2(sd, cfg)


# Export back to Hugging Face's layout (hf_export.to_hf) is not implemented for this family.
config_to_hf = state_dict_to_hf = export_not_implemented(FAMILY)
