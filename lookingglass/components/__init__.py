"""TransformerLens's module path `transformer_lens.components`: our model's components
under TransformerLens's class names (`lookingglass.model.*`). Each takes a config as
TransformerLens's does; weights and hook points have TransformerLens's names.

TransformerLens components lookingglass does not have (the T5 parts) raise
`NotSupportedError` naming what to use.
"""

from typing import Any

from lookingglass.errors import NotSupportedError
from lookingglass.model.attention import Attention, GroupedQueryAttention
from lookingglass.model.bert_parts import (
    BertBlock,
    BertEmbed,
    BertMLMHead,
    BertNSPHead,
    BertPooler,
    TokenTypeEmbed,
)
from lookingglass.model.block import TransformerBlock
from lookingglass.model.embed import Embed, PosEmbed, Unembed
from lookingglass.model.mlp import MLP, GatedMLP
from lookingglass.model.moe import MixtureOfExperts
from lookingglass.model.norm import LayerNorm, LayerNormPre, RMSNorm, RMSNormPre

MoE = MixtureOfExperts
# The base attention class (GroupedQueryAttention subclasses it), with TransformerLens's
# static ALiBi helpers `create_alibi_slope`, `create_alibi_multipliers`, `create_alibi_bias`.
AbstractAttention = Attention

_MISSING = {
    "T5Attention": "encoder-decoder models are not in lookingglass; HookedAutoModel wraps T5.",
    "T5Block": "encoder-decoder models are not in lookingglass; HookedAutoModel wraps T5.",
}


def __getattr__(name: str) -> Any:
    if name in _MISSING:
        raise NotSupportedError(f"transformer_lens.components.{name}: {_MISSING[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MLP",
    "AbstractAttention",
    "Attention",
    "BertBlock",
    "BertEmbed",
    "BertMLMHead",
    "BertNSPHead",
    "BertPooler",
    "Embed",
    "GatedMLP",
    "GroupedQueryAttention",
    "LayerNorm",
    "LayerNormPre",
    "MoE",
    "PosEmbed",
    "RMSNorm",
    "RMSNormPre",
    "TokenTypeEmbed",
    "TransformerBlock",
    "Unembed",
]
