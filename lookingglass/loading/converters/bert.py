"""BERT (`BertForMaskedLM`, `BertForPreTraining`, `BertModel`): Hugging Face config and
weights -> a `HookedEncoder`'s (TransformerLens 3.9's `HookedEncoder` names).

The parts a checkpoint has depend on its class: every one has the embeddings and
blocks; `BertForMaskedLM` adds the masked-LM head (`cls.predictions`), `BertForPreTraining`
also the pooler and the next-sentence head (`cls.seq_relationship`), `BertModel` usually
the pooler only. `state_dict_from_hf` converts what is there; `missing_heads` says which
of the encoder's heads the checkpoint lacks. Old checkpoints (the original
`bert-base-cased`) name LayerNorm parameters `gamma` / `beta`; they load too.

This is not a causal language model, so it is not in the converters' `FAMILIES` (which
`HookedTransformer.from_pretrained` reads); `lookingglass.loading.encoder` uses it.

Refused with a `ConfigError`: relative position embeddings, decoder / cross-attention
configurations, and a segment vocabulary other than 2 (`type_vocab_size`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError
from lookingglass.loading.converters._common import check_state_dict
from lookingglass.loading.converters._layout import (
    D_MODEL,
    EMBED,
    KV_BIAS,
    KV_PROJ,
    O_PROJ,
    Q_BIAS,
    Q_PROJ,
    UNEMBED,
    UNEMBED_BIAS,
    Kind,
    config_fields,
    convert,
    expected_shapes,
    mlp,
    norm,
    positions,
    strip_prefix,
)

ARCHITECTURES = ("BertForMaskedLM", "BertForPreTraining", "BertModel")
MODEL_TYPE = "bert"
FAMILY = "BERT"
PREFIX, BLOCK_PREFIX = "bert.", "encoder.layer."
BUFFERS = ("position_ids", "embeddings.token_type_ids")  # saved by older `transformers`
_ONLY_SUPPORTED = {
    "position_embedding_type": "absolute",
    "is_decoder": False,
    "add_cross_attention": False,
    "type_vocab_size": 2,
}
SQUARE = Kind(lambda c: (c.d_model, c.d_model), lambda W, c: W.T)  # `nn.Linear` -> x @ W
TWO = Kind(lambda c: (2,), lambda b, c: b)

EMBEDDINGS = {
    "embed.embed.W_E": ("embeddings.word_embeddings.weight", EMBED),
    "embed.pos_embed.W_pos": ("embeddings.position_embeddings.weight", positions()),
    "embed.token_type_embed.W_token_type": (
        "embeddings.token_type_embeddings.weight",
        Kind(lambda c: (2, c.d_model), lambda W, c: W),
    ),
    **norm("embed.ln", "embeddings.LayerNorm"),
}
BLOCK = {
    "attn.W_Q": ("attention.self.query.weight", Q_PROJ),
    "attn.b_Q": ("attention.self.query.bias", Q_BIAS),
    "attn.W_K": ("attention.self.key.weight", KV_PROJ),
    "attn.b_K": ("attention.self.key.bias", KV_BIAS),
    "attn.W_V": ("attention.self.value.weight", KV_PROJ),
    "attn.b_V": ("attention.self.value.bias", KV_BIAS),
    "attn.W_O": ("attention.output.dense.weight", O_PROJ),
    "attn.b_O": ("attention.output.dense.bias", D_MODEL),
    **norm("ln1", "attention.output.LayerNorm"),
    **mlp("intermediate.dense", "output.dense"),
    **norm("ln2", "output.LayerNorm"),
}
# Each head: the key that tells whether the checkpoint has it, and its table.
MLM_HEAD = {
    "mlm_head.W": ("cls.predictions.transform.dense.weight", SQUARE),
    "mlm_head.b": ("cls.predictions.transform.dense.bias", D_MODEL),
    **norm("mlm_head.ln", "cls.predictions.transform.LayerNorm"),
    "unembed.b_U": ("cls.predictions.bias", UNEMBED_BIAS),
}
POOLER = {"pooler.W": ("pooler.dense.weight", SQUARE), "pooler.b": ("pooler.dense.bias", D_MODEL)}
NSP_HEAD = {
    "nsp_head.W": ("cls.seq_relationship.weight", Kind(lambda c: (2, c.d_model), UNEMBED.to_ours)),
    "nsp_head.b": ("cls.seq_relationship.bias", TWO),
}
HEADS = {"mlm_head": MLM_HEAD, "pooler": POOLER, "nsp_head": NSP_HEAD}


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Translate a BERT `config.json` dict into a `ModelConfig` (missing fields take
    `transformers.BertConfig`'s defaults; `overrides` are applied last).

    Raises:
        ConfigError: a configuration this module refuses (see the module docstring), an
            unknown activation, or a width that does not split into heads.
    """
    hf = _hf_config(hf_config)
    architecture = next(
        (a for a in hf_config.get("architectures") or () if a in ARCHITECTURES), ARCHITECTURES[0]
    )
    fields = config_fields(
        FAMILY,
        architecture,
        hf,
        d_mlp=hf.intermediate_size,
        eps=hf.layer_norm_eps,
        act_field="hidden_act",
    )
    return ModelConfig(**{**fields, **overrides})


def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor], cfg: ModelConfig, hf_config: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """Map a Hugging Face BERT state dict (with or without the `bert.` prefix) to ours
    (views). Only the heads the checkpoint has are converted (`missing_heads`).

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    tied = _hf_config(hf_config or {}).tie_word_embeddings
    hf_sd = _renamed(strip_prefix(hf_sd, PREFIX, BUFFERS))
    tables = {**EMBEDDINGS}
    for head in present_heads(hf_sd):
        tables.update(HEADS[head])
    if "mlm_head" in present_heads(hf_sd):
        decoder = "embeddings.word_embeddings.weight" if tied else "cls.predictions.decoder.weight"
        tables["unembed.W_U"] = (decoder, UNEMBED)
    expected = expected_shapes(cfg, tables, BLOCK, BLOCK_PREFIX)
    # A tied decoder weight may be saved or not; its bias is `cls.predictions.bias` again.
    optional = ["cls.predictions.decoder.bias"]
    if tied:
        optional.append("cls.predictions.decoder.weight")
    check_state_dict(hf_sd, expected, f"({FAMILY})", optional=optional)
    return convert(hf_sd, cfg, tables, BLOCK, BLOCK_PREFIX)


def present_heads(hf_sd: Mapping[str, Tensor]) -> list[str]:
    """The encoder heads (`mlm_head`, `pooler`, `nsp_head`) a checkpoint (without the
    `bert.` prefix) has weights for."""
    return [head for head, table in HEADS.items() if next(iter(table.values()))[0] in hf_sd]


def missing_heads(sd: Mapping[str, Tensor]) -> set[str]:
    """The encoder modules our converted state dict `sd` has no weights for."""
    missing = {head for head, table in HEADS.items() if next(iter(table)) not in sd}
    return missing | ({"unembed"} if "mlm_head" in missing else set())


def _renamed(hf_sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Old LayerNorm names (`gamma`, `beta`) as today's (`weight`, `bias`)."""
    new = {"gamma": "weight", "beta": "bias"}
    out = {}
    for key, tensor in hf_sd.items():
        stem, _, leaf = key.rpartition(".")
        out[f"{stem}.{new[leaf]}" if "LayerNorm" in stem and leaf in new else key] = tensor
    return out


def _hf_config(hf_config: Mapping[str, Any]) -> transformers.BertConfig:
    hf = transformers.BertConfig.from_dict(dict(hf_config))
    for name, supported in _ONLY_SUPPORTED.items():
        value = getattr(hf, name, supported)
        if value != supported:
            raise ConfigError(
                f"{FAMILY} config field {name}={value!r} is not implemented (supported: "
                f"{supported!r}); HookedEncoder runs BERT with absolute positions and two "
                "segments as an encoder only."
            )
    return hf
