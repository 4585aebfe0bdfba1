"""StableLM (`StableLmForCausalLM`: StableLM-3B-4E1T, StableLM 2): Hugging Face -> ours.

A Llama-shaped model with LayerNorms: grouped-query attention (`n_key_value_heads`),
optional q/k/v biases (`use_qkv_bias`), rotary embeddings on the first
`partial_rotary_factor * d_head` dimensions of each head (halves pairing), and a SwiGLU
MLP without biases. With `use_parallel_residual=True` attention and MLP read the same
`input_layernorm` output and are added together (`parallel_attn_mlp=True`, `ln2` a
copy of `ln1`, as GPT-J). The StableLM-Alpha models are GPT-NeoX checkpoints and load
through `gpt_neox`.

Refused with a `ConfigError`: `qk_layernorm=True` (a separate LayerNorm per head on q
and k, as in StableLM 2 12B), which our attention does not implement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.loading.converters._layout import (
    MLP_IN,
    MLP_OUT,
    Layout,
    attention,
    config_fields,
    export_not_implemented,
    kv_names,
    load_tables,
    norm,
    refuse_unsupported,
    rotary_fields,
    share_ln1_with_ln2,
)

ARCHITECTURES = ("StableLmForCausalLM",)
MODEL_TYPE = "stablelm"
FAMILY = "StableLM"
LAYOUT = Layout(FAMILY, prefix="model.", block_prefix="layers.", embed="embed_tokens.weight")
GLOBAL_WEIGHTS = norm("ln_final", "norm")
MLP_WEIGHTS = {
    "mlp.W_gate": ("mlp.gate_proj.weight", MLP_IN),
    "mlp.W_in": ("mlp.up_proj.weight", MLP_IN),
    "mlp.W_out": ("mlp.down_proj.weight", MLP_OUT),
}
_ONLY_SUPPORTED = {"qk_layernorm": False}


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Translate a StableLM `config.json` dict into a `ModelConfig` (missing fields take
    `transformers.StableLmConfig`'s defaults; `overrides` are applied last).

    Raises:
        ConfigError: `qk_layernorm=True`, a rope type we do not implement, an unknown
            activation, or a width that does not split into heads.
    """
    hf = _hf_config(hf_config)
    fields = config_fields(
        FAMILY,
        ARCHITECTURES[0],
        hf,
        d_mlp=hf.intermediate_size,
        eps=hf.layer_norm_eps,
        act_field="hidden_act",
    )
    fields.update(
        n_key_value_heads=hf.num_key_value_heads,
        gated_mlp=True,
        positional_embedding_type="rotary",
        **rotary_fields(FAMILY, hf.rope_parameters, fields["d_head"]),
        parallel_attn_mlp=hf.use_parallel_residual,
        default_prepend_bos=False,  # its tokenizer adds no BOS token
    )
    return ModelConfig(**{**fields, **overrides})


def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor], cfg: ModelConfig, hf_config: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """Map a Hugging Face StableLM state dict to ours (views, except a parallel block's
    `ln2`, a copy of `ln1`). Biases the checkpoint lacks are zero.

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
        ConfigError: the configurations `config_from_hf` refuses.
    """
    hf = _hf_config(hf_config or {})
    parallel = hf.use_parallel_residual
    block = {
        **norm("ln1", "input_layernorm"),
        **attention(cfg, "self_attn.{}_proj", "o", qkv_bias=hf.use_qkv_bias, o_bias=False),
        **({} if parallel else norm("ln2", "post_attention_layernorm")),
        **MLP_WEIGHTS,
    }
    _, b_K, _, b_V = kv_names(cfg)
    qkv_biases = () if hf.use_qkv_bias else ("attn.b_Q", b_K, b_V)
    absent = [*qkv_biases, "attn.b_O", "mlp.b_gate", "mlp.b_pre_linear", "mlp.b_in", "mlp.b_out"]
    absent = dict.fromkeys(absent, 0.0)
    sd = load_tables(hf_sd, cfg, LAYOUT, GLOBAL_WEIGHTS, block, hf.tie_word_embeddings, absent)
    return share_ln1_with_ln2(sd, cfg) if parallel else sd


def _hf_config(hf_config: Mapping[str, Any]) -> transformers.StableLmConfig:
    hf = transformers.StableLmConfig.from_dict(dict(hf_config))
    refuse_unsupported(FAMILY, hf, _ONLY_SUPPORTED)
    return hf


# Export back to Hugging Face's layout (hf_export.to_hf) is not implemented for this family.
config_to_hf = state_dict_to_hf = export_not_implemented(FAMILY)
