"""Conversion shared by the Llama-shaped families: Llama, Mistral, Mixtral, Qwen2, Qwen3,
Gemma, Gemma 2, Phi-3 and OLMo 2.

Their checkpoints share one layout: `model.embed_tokens`, blocks `model.layers.{i}` made
of `nn.Linear` projections (weights stored `[d_out, d_in]`) and RMSNorms, `model.norm`,
and `lm_head` (or the embedding, when tied). A family's converter says which tensors it
has with a table (our name -> Hugging Face's, inside a block) and translates its config;
the reshaping lives here, once, and depends only on our parameter's name:

    W_Q, W_K, W_V (GQA: _W_K, _W_V)   [n * d_head, d_model] -> [n, d_model, d_head]
    b_Q, b_K, b_V (GQA: _b_K, _b_V)   [n * d_head]          -> [n, d_head]
    W_O                                [d_model, n * d_head] -> [n, d_head, d_model]
    W_gate, W_in, W_out, router, W_U   [d_out, d_in]         -> [d_in, d_out]
    norm weights `w`                   as stored, plus the family's offset (Gemma: 1)

Every tensor is a view of the checkpoint's except Gemma's (offset norms, scaled
embedding). Biases a checkpoint does not have are zeros in our layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError
from lookingglass.loading.converters import _layout as layout
from lookingglass.loading.converters._common import check_state_dict

# Our name -> Hugging Face's, outside the blocks (without the "model." prefix).
GLOBAL_WEIGHTS = {"embed.W_E": "embed_tokens.weight", "ln_final.w": "norm.weight"}
LM_HEAD = "lm_head.weight"
# Inside `blocks.{i}` / `layers.{i}`: Llama's blocks. Families add or replace entries.
ATTENTION = {
    "attn.W_Q": "self_attn.q_proj.weight",
    "attn.W_K": "self_attn.k_proj.weight",
    "attn.W_V": "self_attn.v_proj.weight",
    "attn.W_O": "self_attn.o_proj.weight",
}
GATED_MLP = {
    "mlp.W_gate": "mlp.gate_proj.weight",
    "mlp.W_in": "mlp.up_proj.weight",
    "mlp.W_out": "mlp.down_proj.weight",
}
PRE_NORMS = {"ln1.w": "input_layernorm.weight", "ln2.w": "post_attention_layernorm.weight"}
LLAMA_BLOCK = {**PRE_NORMS, **ATTENTION, **GATED_MLP}
QK_NORMS = {
    "attn.q_norm.norm.w": "self_attn.q_norm.weight",
    "attn.k_norm.norm.w": "self_attn.k_norm.weight",
}
_HEAD_INPUTS = ("W_Q", "W_K", "W_V", "_W_K", "_W_V")
_HEAD_BIASES = ("b_Q", "b_K", "b_V", "_b_K", "_b_V")
_LINEARS = ("W_gate", "W_in", "W_out", "W_U")
# Buffers that older conversions saved beside the weights.
_BUFFERS = ("rotary_emb.inv_freq",)


def attention_biases(projections: str) -> dict[str, str]:
    """Table entries for the biases of the projections named by letters of "qkvo"."""
    return {f"attn.b_{p.upper()}": f"self_attn.{p}_proj.bias" for p in projections}


def optional_biases(hf: Any) -> dict[str, str]:
    """The q, k, v and o biases when the config says `attention_bias=True`, else none."""
    return attention_biases("qkvo") if hf.attention_bias else {}


def llama_block(hf: Any) -> dict[str, str]:
    """Llama's block table, with the biases the config asks for."""
    return {**LLAMA_BLOCK, **optional_biases(hf)}


# ------------------------------------------------------------------------------ family
@dataclass(frozen=True)
class Family:
    """What sets one Llama-shaped family apart; its methods are the converter's functions.

    Attributes:
        name: for messages ("Gemma 2").
        architecture: the Hugging Face class name (`cfg.original_architecture`).
        config_class: the `transformers` config class (supplies the family's defaults).
        block_weights: parsed HF config -> table of our name -> Hugging Face's in a block.
        fields: parsed HF config -> the family's own `ModelConfig` fields.
        only_supported: HF config fields whose other values we do not implement.
        norm_offset: added to every stored norm weight (Gemma stores `w - 1`).
        embed_scale: the embedding is multiplied by sqrt(d_model) (Gemma); folded into
            `W_E` but not into a tied `W_U`.
        unfuse: splits fused tensors (Phi-3's `qkv_proj`) into the table's names.
    """

    name: str
    architecture: str
    config_class: type
    block_weights: Callable[[Any], dict[str, str]]
    fields: Callable[[Any], dict[str, Any]] = lambda hf: {}
    only_supported: Mapping[str, Any] = field(default_factory=dict)  # field -> value(s)
    norm_offset: float = 0.0
    embed_scale: bool = False
    unfuse: Callable[[dict[str, Tensor], ModelConfig], dict[str, Tensor]] | None = None

    def config_from_hf(self, hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
        """Translate the family's `config.json` dict into a `ModelConfig`.

        Fields missing from the dict take the `transformers` config class's defaults,
        exactly as Hugging Face would; `overrides` (e.g. `dtype`, `n_ctx`) win.

        Raises:
            ConfigError: naming a field whose value this implementation does not support.
        """
        hf = read_config(self.config_class, hf_config, self.name, self.only_supported)
        fields = {**base_fields(hf, self.architecture, self.name), **self.fields(hf)}
        return ModelConfig(**{**fields, **overrides})

    def state_dict_from_hf(
        self,
        hf_sd: Mapping[str, Tensor],
        cfg: ModelConfig,
        hf_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        """Map the family's Hugging Face state dict to ours (views where possible).

        Keys may carry the `model.` prefix or not. `hf_config` says which optional
        tensors exist (biases) and whether the unembedding is tied to the embedding (a
        saved `lm_head.weight` is then ignored, as Hugging Face ignores it).

        Raises:
            CheckpointError: listing every missing, unexpected and mis-shaped key.
        """
        hf = self.config_class.from_dict(dict(hf_config or {}))
        hf_sd = {_strip_prefix(k): v for k, v in hf_sd.items() if not k.endswith(_BUFFERS)}
        if self.unfuse is not None:
            hf_sd = self.unfuse(hf_sd, cfg)
        scale = math.sqrt(cfg.d_model) if self.embed_scale else None
        return state_dict_from_hf(
            hf_sd,
            cfg,
            hf.tie_word_embeddings,
            self.block_weights(hf),
            self.name,
            self.norm_offset,
            scale,
        )

    def state_dict_to_hf(self, sd: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
        """Our state dict as the family's Hugging Face one, in its default (bias-free)
        layout; see the module-level `state_dict_to_hf`. Not for families whose
        checkpoints fuse tensors or scale the embedding."""
        assert not self.embed_scale and self.unfuse is None, "export not implemented"
        block_weights = self.block_weights(self.config_class())
        return state_dict_to_hf(sd, cfg, block_weights, self.name, self.norm_offset)


# ------------------------------------------------------------------------------ config
def read_config(
    config_class: type, hf_config: Mapping[str, Any], family: str, only_supported: Mapping[str, Any]
) -> Any:
    """The family's `transformers` config for a `config.json` dict (with its defaults).

    Raises:
        ConfigError: naming a field whose value this implementation does not support.
    """
    hf = config_class.from_dict(dict(hf_config))
    layout.refuse_unsupported(family, hf, only_supported)
    return hf


def base_fields(hf: Any, architecture: str, family: str) -> dict[str, Any]:
    """`ModelConfig` fields every Llama-shaped family shares: sizes, RMSNorm, rotary
    positions (transformers 5 gathers `rope_theta`, `rope_scaling` and
    `partial_rotary_factor` in `rope_parameters`), grouped-query attention, sliding
    windows, gated MLP."""
    n_heads = hf.num_attention_heads
    act = getattr(hf, "hidden_activation", None) or hf.hidden_act  # Gemma 2's name
    d_head = getattr(hf, "head_dim", None) or hf.hidden_size // n_heads
    n_kv = getattr(hf, "num_key_value_heads", None) or n_heads
    return dict(
        n_layers=hf.num_hidden_layers,
        d_model=hf.hidden_size,
        n_heads=n_heads,
        d_head=d_head,
        n_key_value_heads=n_kv if n_kv != n_heads else None,
        d_mlp=hf.intermediate_size,
        d_vocab=hf.vocab_size,
        d_vocab_out=hf.vocab_size,
        n_ctx=hf.max_position_embeddings,
        act_fn=layout.check_choice(family, "hidden_act", act, layout.ACT_FNS),
        eps=hf.rms_norm_eps,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        gated_mlp=True,
        **layout.rotary_fields(family, hf.rope_parameters, d_head),
        **window_fields(hf),
        original_architecture=architecture,
        init_weights=False,
        init_range=hf.initializer_range,
    )


def window_fields(hf: Any) -> dict[str, Any]:
    """`window_size` and `attn_types`: with `layer_types` (Qwen2, Qwen3, Gemma 2) only the
    "sliding_attention" layers are local; without, `sliding_window` applies to every layer
    (Mistral, Mixtral, Phi-3)."""
    window = getattr(hf, "sliding_window", None)
    layer_types = getattr(hf, "layer_types", None)
    if window is None:
        return {}
    if layer_types is None:
        return dict(window_size=window)
    unknown = sorted(set(layer_types) - {"full_attention", "sliding_attention"})
    if unknown:
        raise ConfigError(
            f"layer_types {unknown} are not supported; supported: full_attention, "
            "sliding_attention."
        )
    attn_types = tuple("local" if t == "sliding_attention" else "global" for t in layer_types)
    return dict(window_size=window, attn_types=attn_types) if "local" in attn_types else {}


# ------------------------------------------------------------------------- weights in
def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor],
    cfg: ModelConfig,
    tied: bool,
    block_weights: Mapping[str, str],
    family: str,
    norm_offset: float = 0.0,
    embed_scale: float | None = None,
) -> dict[str, Tensor]:
    """Map a Llama-shaped Hugging Face state dict to ours, as views where possible.

    Args:
        hf_sd: checkpoint tensors, keys without the `model.` prefix.
        cfg: the converted config.
        tied: whether the unembedding is the embedding (`tie_word_embeddings`); a saved
            `lm_head.weight` is then ignored, as Hugging Face ignores it.
        block_weights: our name -> Hugging Face's inside block `i` (for MoE, including
            `mlp.experts.{e}...`).
        family: the family's name, for messages.
        norm_offset: added to every stored norm weight (Gemma stores `w - 1`).
        embed_scale: folded into `W_E` but not into a tied `W_U` (Gemma's sqrt(d_model)).

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped tensor.
    """
    names = weight_names(cfg, block_weights)
    if not tied:
        names["unembed.W_U"] = LM_HEAD
    ours_shapes = our_shapes(cfg)
    expected = {hf: _hf_shape(ours, ours_shapes[ours]) for ours, hf in names.items()}
    check_state_dict(hf_sd, expected, f"({family})", optional=[LM_HEAD] if tied else [])

    sd = {ours: _to_ours(ours, hf_sd[hf], cfg, norm_offset) for ours, hf in names.items()}
    if tied:
        sd["unembed.W_U"] = hf_sd[GLOBAL_WEIGHTS["embed.W_E"]].T
    if embed_scale is not None:
        # In the model's dtype, with the factor rounded to it, as Hugging Face multiplies.
        scale = torch.tensor(embed_scale, dtype=cfg.dtype).item()
        sd["embed.W_E"] = sd["embed.W_E"].to(cfg.dtype) * scale
    for name, shape in ours_shapes.items():
        if name not in sd:
            if not name.rsplit(".", 1)[-1].lstrip("_").startswith("b_"):
                raise RuntimeError(f"Converter bug: {family} has no source for {name}.")
            sd[name] = torch.zeros(shape, dtype=sd["embed.W_E"].dtype)
    return sd


def weight_names(cfg: ModelConfig, block_weights: Mapping[str, str]) -> dict[str, str]:
    """Our key -> Hugging Face's (without `model.`) for every tensor in the table."""
    names = dict(GLOBAL_WEIGHTS)
    for layer in range(cfg.n_layers):
        for ours, hf in block_weights.items():
            names[f"blocks.{layer}.{_grouped_name(ours, cfg)}"] = f"layers.{layer}.{hf}"
    return names


def our_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of our model for `cfg` (built on the meta device)."""
    from lookingglass.model.transformer import HookedTransformer  # the model imports us lazily

    with torch.device("meta"):
        model = HookedTransformer(cfg.replace(init_weights=False), move_to_device=False)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _grouped_name(ours: str, cfg: ModelConfig) -> str:
    """`attn.W_K` is `attn._W_K` (and so on) under grouped-query attention."""
    module, _, leaf = ours.rpartition(".")
    if cfg.n_kv_heads != cfg.n_heads and module == "attn" and leaf in ("W_K", "W_V", "b_K", "b_V"):
        return f"{module}._{leaf}"
    return ours


def _to_ours(ours: str, W: Tensor, cfg: ModelConfig, norm_offset: float) -> Tensor:
    leaf = ours.rsplit(".", 1)[-1]
    if leaf in _HEAD_INPUTS:
        return W.unflatten(0, (-1, cfg.d_head)).transpose(1, 2)
    if leaf in _HEAD_BIASES:
        return W.unflatten(0, (-1, cfg.d_head))
    if leaf == "W_O":
        return W.T.unflatten(0, (-1, cfg.d_head))
    if leaf in _LINEARS:
        return W.T
    if leaf == "w" and norm_offset:
        # In float32, as Hugging Face computes `1 + w` (a bfloat16 sum would lose digits).
        return W.float() + norm_offset
    return W


def _to_hf(ours: str, W: Tensor, norm_offset: float) -> Tensor:
    leaf = ours.rsplit(".", 1)[-1]
    if leaf in _HEAD_INPUTS:
        return W.transpose(1, 2).flatten(0, 1)
    if leaf in _HEAD_BIASES:
        return W.flatten()
    if leaf == "W_O":
        return W.flatten(0, 1).T
    if leaf in _LINEARS:
        return W.T
    if leaf == "w" and norm_offset:
        return W - norm_offset
    return W


def _hf_shape(ours: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_to_hf(ours, torch.empty(shape, device="meta"), 0.0).shape)


def _strip_prefix(key: str) -> str:
    return key.removeprefix("model.")


# ------------------------------------------------------------------------ weights out
def state_dict_to_hf(
    sd: Mapping[str, Tensor],
    cfg: ModelConfig,
    block_weights: Mapping[str, str],
    family: str,
    norm_offset: float = 0.0,
) -> dict[str, Tensor]:
    """Our state dict as the family's Hugging Face state dict (with the `model.` prefix).

    Processed models export too: a folded RMSNorm (`RMSPre`) is an RMSNorm with weight 1.
    `lm_head.weight` is left out (tied) when `W_U == W_E.T`.

    Raises:
        ConfigError: naming a non-zero tensor the family cannot hold (a bias it lacks).
    """
    names = weight_names(cfg, block_weights)
    shapes = our_shapes(cfg.replace(normalization_type="RMS"))  # with the folded norms
    hf = {}
    for ours, name in names.items():
        tensor = sd.get(ours)
        if tensor is None and ours.endswith(".w"):  # a folded norm
            tensor = torch.ones(shapes[ours], dtype=sd["embed.W_E"].dtype)
        hf["model." + name] = _to_hf(ours, tensor, norm_offset)
    dropped = [k for k in sd if k not in names and k not in ("unembed.W_U",) and sd[k].any()]
    if dropped:
        raise ConfigError(
            f"{family} cannot hold these non-zero tensors of the model: {', '.join(dropped[:10])}."
        )
    W_U = sd["unembed.W_U"]
    if not torch.equal(W_U.T, sd["embed.W_E"]):
        hf[LM_HEAD] = W_U.T
    return hf


def llama_config_to_hf(cfg: ModelConfig, tie_word_embeddings: bool, family: str) -> dict[str, Any]:
    """Config fields of a Llama-shaped Hugging Face config for `cfg` (without
    `architectures` / `model_type`).

    Raises:
        ConfigError: naming every field of `cfg` the family cannot express.
    """
    problems = {
        "normalization_type": cfg.normalization_type not in ("RMS", "RMSPre"),
        "positional_embedding_type": cfg.positional_embedding_type != "rotary",
        "rotary_dim": cfg.rotary_dim != cfg.d_head,
        "rotary_adjacent_pairs": cfg.rotary_adjacent_pairs,
        "gated_mlp": not cfg.gated_mlp,
        "attn_only": cfg.attn_only,
        "num_experts": cfg.num_experts is not None,
        "window_size": cfg.window_size is not None,
        "use_qk_norm": cfg.use_qk_norm,
        "attn_scores_soft_cap": cfg.attn_scores_soft_cap > 0,
        "output_logits_soft_cap": cfg.output_logits_soft_cap > 0,
        "norm_placement": cfg.norm_placement != "pre",
        "parallel_attn_mlp": cfg.parallel_attn_mlp,
        "post_embedding_ln": cfg.post_embedding_ln,
        "d_vocab_out": cfg.d_vocab_out != cfg.d_vocab,
        "attn_scale": not math.isclose(cfg.attn_scale, math.sqrt(cfg.d_head)),
        "smear_keys": cfg.smear_keys,
        "attention_score": cfg.attention_score != "dot",
    }
    bad = [name for name, is_bad in problems.items() if is_bad]
    if bad:
        values = ", ".join(f"{name}={getattr(cfg, name)!r}" for name in bad)
        raise ConfigError(f"This model cannot be expressed as {family}: {values}.")
    rope = {"rope_type": "default", **(cfg.rope_scaling or {}), "rope_theta": cfg.rotary_base}
    rope.pop("type", None)
    return dict(
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.d_head,
        vocab_size=cfg.d_vocab,
        max_position_embeddings=cfg.n_ctx,
        hidden_act=cfg.act_fn,
        rms_norm_eps=cfg.eps,
        rope_parameters=rope,
        initializer_range=cfg.init_range,
        tie_word_embeddings=tie_word_embeddings,
    )
