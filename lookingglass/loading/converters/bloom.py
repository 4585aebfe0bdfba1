"""BLOOM (`BloomForCausalLM`): Hugging Face config and weights -> lookingglass's.

BLOOM has no position embedding: each head adds ALiBi's `slope_h * key_position` to its
attention scores (`positional_embedding_type="alibi"`; slopes for any head count, also
not a power of two). A LayerNorm follows the token embedding (`post_embedding_ln`, our
`embed.ln`), and its GELU is the tanh approximation (`gelu_fast`). `query_key_value`
holds each head's q, k and v side by side (`[n_heads, 3, d_head]` along its output).
Positions count real tokens only, as in Hugging Face, so left padding changes nothing.

Refused with a `ConfigError`: `apply_residual_connection_post_layernorm=True` (the
residual stream would carry normalized values).
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
    refuse_unsupported,
)

ARCHITECTURES = ("BloomForCausalLM",)
MODEL_TYPE = "bloom"
FAMILY = "BLOOM"
LAYOUT = Layout(FAMILY, prefix="transformer.", block_prefix="h.", embed="word_embeddings.weight")
GLOBAL_WEIGHTS = {**norm("embed.ln", "word_embeddings_layernorm"), **norm("ln_final", "ln_f")}
BLOCK_WEIGHTS = {
    **norm("ln1", "input_layernorm"),
    **fused_attention("self_attention.query_key_value", "self_attention.dense", bias=True),
    **norm("ln2", "post_attention_layernorm"),
    **mlp("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"),
}
# BLOOM has no maximum length; it was trained on sequences of this many tokens.
TRAINING_CONTEXT = 2048
_ONLY_SUPPORTED = {"apply_residual_connection_post_layernorm": False}


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Translate a BLOOM `config.json` dict into a `ModelConfig` (missing fields take
    `transformers.BloomConfig`'s defaults; `overrides` are applied last, e.g. `n_ctx`:
    ALiBi has no fixed context, 2048 by default).

    Raises:
        ConfigError: `apply_residual_connection_post_layernorm=True`, or a width that
            does not split into heads.
    """
    hf = transformers.BloomConfig.from_dict(dict(hf_config))
    refuse_unsupported(FAMILY, hf, _ONLY_SUPPORTED)
    fields = config_fields(
        FAMILY,
        ARCHITECTURES[0],
        hf,
        d_mlp=4 * hf.hidden_size,
        eps=hf.layer_norm_epsilon,
        act_field=None,
        n_ctx=hf_config.get("seq_length", TRAINING_CONTEXT),
    )
    fields.update(
        act_fn="gelu_fast",  # BloomGelu: 0.5 x (1 + tanh(0.79788456 x (1 + 0.044715 x^2)))
        positional_embedding_type="alibi",
        post_embedding_ln=True,
        default_prepend_bos=False,  # as TransformerLens: BLOOM was trained without BOS
    )
    return ModelConfig(**{**fields, **overrides})


def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor], cfg: ModelConfig, hf_config: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """Map a Hugging Face BLOOM state dict (with or without the `transformer.` prefix)
    to ours, as views.

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    tied = transformers.BloomConfig.from_dict(dict(hf_config or {})).tie_word_embeddings
    return load_tables(hf_sd, cfg, LAYOUT, GLOBAL_WEIGHTS, BLOCK_WEIGHTS, tied)


# Export back to Hugging Face's layout (hf_export.to_hf) is not implemented for this family.
config_to_hf = state_dict_to_hf = export_not_implemented(FAMILY)
