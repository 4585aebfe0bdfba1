"""OPT (`OPTForCausalLM`): Hugging Face config and weights -> lookingglass's.

A GPT-2-shaped pre-norm model (`do_layer_norm_before=True`, every OPT but opt-350m)
built from `nn.Linear` layers, with ReLU and learned positions. OPT's position table
has two spare rows first: position `p` is row `p + 2`, so `W_pos` is the table from
row 2 on. Like Hugging Face, we count positions over real tokens only, so a
left-padded row gives the same logits as the unpadded one.

Not implemented, and refused with a `ConfigError`: post-norm blocks
(`do_layer_norm_before=False`), embedding projections (`word_embed_proj_dim !=
hidden_size`, `project_in` / `project_out`) and a missing final norm
(`_remove_final_layer_norm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError
from lookingglass.loading.converters._layout import (
    Layout,
    attention,
    config_fields,
    export_not_implemented,
    load_tables,
    mlp,
    norm,
    positions,
    refuse_unsupported,
)

ARCHITECTURES = ("OPTForCausalLM",)
MODEL_TYPE = "opt"
FAMILY = "OPT"
LAYOUT = Layout(
    FAMILY, prefix="model.decoder.", block_prefix="layers.", embed="embed_tokens.weight"
)
POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding.offset
_ONLY_SUPPORTED = {"do_layer_norm_before": True, "_remove_final_layer_norm": False}
_BIASES = ("attn.b_Q", "attn.b_K", "attn.b_V", "attn.b_O", "mlp.b_in", "mlp.b_out")


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Translate an OPT `config.json` dict into a `ModelConfig` (missing fields take
    `transformers.OPTConfig`'s defaults; `overrides` are applied last).

    Raises:
        ConfigError: post-norm blocks, embedding projections, no final norm, an unknown
            activation, or a width that does not split into heads.
    """
    hf = _hf_config(hf_config)
    fields = config_fields(
        FAMILY,
        ARCHITECTURES[0],
        hf,
        d_mlp=hf.ffn_dim,
        eps=1e-5,  # OPT's LayerNorms use PyTorch's default
        act_field="activation_function",
        init_range=hf.init_std,
    )
    fields.update(positional_embedding_type="standard", default_prepend_bos=True)
    return ModelConfig(**{**fields, **overrides})


def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor], cfg: ModelConfig, hf_config: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """Map a Hugging Face OPT state dict to ours (views). Without `enable_bias` the
    biases are zero; without `layer_norm_elementwise_affine` the norms have gain 1 and
    bias 0.

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
        ConfigError: the configurations `config_from_hf` refuses.
    """
    hf = _hf_config(hf_config or {})
    affine, bias = hf.layer_norm_elementwise_affine, hf.enable_bias
    block = {
        **(norm("ln1", "self_attn_layer_norm") if affine else {}),
        **attention(cfg, "self_attn.{}_proj", "out", qkv_bias=bias, o_bias=bias),
        **(norm("ln2", "final_layer_norm") if affine else {}),
        **mlp("fc1", "fc2", bias=bias),
    }
    global_weights = {"pos_embed.W_pos": ("embed_positions.weight", positions(POSITION_OFFSET))}
    global_weights.update(norm("ln_final", "final_layer_norm") if affine else {})
    absent = {} if bias else dict.fromkeys(_BIASES, 0.0)
    if not affine:
        absent.update({"ln1.w": 1.0, "ln1.b": 0.0, "ln2.w": 1.0, "ln2.b": 0.0})
    sd = load_tables(hf_sd, cfg, LAYOUT, global_weights, block, hf.tie_word_embeddings, absent)
    if not affine:
        ones = sd["embed.W_E"].new_ones(cfg.d_model)
        sd["ln_final.w"], sd["ln_final.b"] = ones, ones.new_zeros(cfg.d_model)
    return sd


def _hf_config(hf_config: Mapping[str, Any]) -> transformers.OPTConfig:
    hf = transformers.OPTConfig.from_dict(dict(hf_config))
    refuse_unsupported(FAMILY, hf, _ONLY_SUPPORTED)
    if hf.word_embed_proj_dim != hf.hidden_size:
        raise ConfigError(
            f"OPT config field word_embed_proj_dim={hf.word_embed_proj_dim} differs from "
            f"hidden_size={hf.hidden_size}: the embedding projections (project_in/project_out, "
            "as in opt-350m) are not implemented natively. Use lookingglass.HookedAutoModel "
            "to run this model."
        )
    return hf


# Export back to Hugging Face's layout (hf_export.to_hf) is not implemented for this family.
config_to_hf = state_dict_to_hf = export_not_implemented(FAMILY)
