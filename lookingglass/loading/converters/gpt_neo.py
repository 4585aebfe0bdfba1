"""GPT-Neo (`GPTNeoForCausalLM`): Hugging Face config and weights -> lookingglass's.

A GPT-2-shaped model with three differences, all config fields: attention scores are
not scaled by `1 / sqrt(d_head)` (`use_attn_scale=False`), layers alternate between
global and local attention (`attn_types`; a local layer's query `i` sees key `j` only
when `i - j < window_size`), and the projections are `nn.Linear` layers (q, k, v
without biases, so `b_Q`, `b_K`, `b_V` are zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.loading.converters._layout import (
    Layout,
    attention,
    config_fields,
    export_not_implemented,
    load_tables,
    mlp,
    norm,
    positions,
)

ARCHITECTURES = ("GPTNeoForCausalLM",)
MODEL_TYPE = "gpt_neo"
FAMILY = "GPT-Neo"
LAYOUT = Layout(
    FAMILY,
    prefix="transformer.",
    block_prefix="h.",
    embed="wte.weight",
    buffers=(".attn.attention.bias", ".attn.attention.masked_bias"),
)
GLOBAL_WEIGHTS = {"pos_embed.W_pos": ("wpe.weight", positions()), **norm("ln_final", "ln_f")}
_ATTN = "attn.attention."


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Translate a GPT-Neo `config.json` dict into a `ModelConfig` (missing fields take
    `transformers.GPTNeoConfig`'s defaults; `overrides` are applied last).

    Raises:
        ConfigError: an unknown activation, an attention type other than "global" or
            "local", or a width that does not split into heads.
    """
    hf = transformers.GPTNeoConfig.from_dict(dict(hf_config))
    fields = config_fields(
        FAMILY,
        ARCHITECTURES[0],
        hf,
        d_mlp=hf.intermediate_size or 4 * hf.hidden_size,
        eps=hf.layer_norm_epsilon,
        act_field="activation_function",
    )
    fields.update(
        positional_embedding_type="standard",
        use_attn_scale=False,
        attn_types=tuple(hf.attention_layers),
        window_size=hf.window_size,
        default_prepend_bos=True,
    )
    return ModelConfig(**{**fields, **overrides})


def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor], cfg: ModelConfig, hf_config: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """Map a Hugging Face GPT-Neo state dict to ours (views; saved mask buffers ignored).

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    block = {
        **norm("ln1", "ln_1"),
        **attention(cfg, "attn.attention.{}_proj", "out", qkv_bias=False, o_bias=True),
        **norm("ln2", "ln_2"),
        **mlp("mlp.c_fc", "mlp.c_proj"),
    }
    tied = transformers.GPTNeoConfig.from_dict(dict(hf_config or {})).tie_word_embeddings
    absent = {name: 0.0 for name in ("attn.b_Q", "attn.b_K", "attn.b_V")}
    return load_tables(hf_sd, cfg, LAYOUT, GLOBAL_WEIGHTS, block, tied, absent)


# Export back to Hugging Face's layout (hf_export.to_hf) is not implemented for this family.
config_to_hf = state_dict_to_hf = export_not_implemented(FAMILY)
