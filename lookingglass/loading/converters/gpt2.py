"""GPT-2 (`GPT2LMHeadModel`): Hugging Face config and weights <-> lookingglass's.

Hugging Face's GPT-2 is built from `Conv1D` layers, whose weights are stored
`[d_in, d_out]`: already our `x @ W` orientation, so most tensors map by name alone.
Two are reshaped, both as views: `c_attn` holds Q, K and V side by side
(`[d_model, 3 * d_model]`) and is split into three `[n_heads, d_model, d_head]` views,
and attention's `c_proj` (`[n_heads * d_head, d_model]`) is viewed as
`[n_heads, d_head, d_model]`. The unembedding is `wte` transposed unless the checkpoint
unties it with its own `lm_head.weight`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import transformers
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError
from lookingglass.loading.converters._common import check_state_dict

ARCHITECTURES = ("GPT2LMHeadModel",)
MODEL_TYPE = "gpt2"

# Our name -> Hugging Face's (without the "transformer." prefix), outside the blocks...
GLOBAL_WEIGHTS = {
    "embed.W_E": "wte.weight",
    "pos_embed.W_pos": "wpe.weight",
    "ln_final.w": "ln_f.weight",
    "ln_final.b": "ln_f.bias",
}
# ... and inside `blocks.{i}` / `h.{i}`. `attn.c_attn` (Q, K, V) is split separately.
BLOCK_WEIGHTS = {
    "ln1.w": "ln_1.weight",
    "ln1.b": "ln_1.bias",
    "attn.W_O": "attn.c_proj.weight",
    "attn.b_O": "attn.c_proj.bias",
    "ln2.w": "ln_2.weight",
    "ln2.b": "ln_2.bias",
    "mlp.W_in": "mlp.c_fc.weight",
    "mlp.b_in": "mlp.c_fc.bias",
    "mlp.W_out": "mlp.c_proj.weight",
    "mlp.b_out": "mlp.c_proj.bias",
}
QKV_WEIGHT, QKV_BIAS, LM_HEAD = "attn.c_attn.weight", "attn.c_attn.bias", "lm_head.weight"
# Causal-mask buffers that older transformers versions saved beside the weights.
BUFFERS = ("attn.bias", "attn.masked_bias")

# Config fields whose other values change the computation in ways we do not implement.
_ONLY_SUPPORTED = {"scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}
# Hugging Face activation name -> ours ("swish" is Hugging Face's other name for SiLU).
_ACT_FNS = {
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_pytorch_tanh",
    "gelu_fast": "gelu_fast",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Translate a GPT-2 `config.json` dict into a `ModelConfig`.

    Fields missing from the dict take `transformers.GPT2Config`'s defaults, exactly as
    Hugging Face would. `overrides` (e.g. `dtype`, `n_ctx`, `model_name`) are applied
    before the config's derived fields are computed.

    Raises:
        ConfigError: naming a field whose value this implementation does not support
            (`scale_attn_by_inverse_layer_idx=True`, cross-attention, an unknown
            activation).
    """
    hf = transformers.GPT2Config.from_dict(dict(hf_config))
    for name, supported in _ONLY_SUPPORTED.items():
        if getattr(hf, name) != supported:
            raise ConfigError(
                f"GPT-2 config field {name}={getattr(hf, name)!r} is not implemented natively "
                f"(only {supported!r} is). Use lookingglass.HookedAutoModel to run this model."
            )
    if hf.activation_function not in _ACT_FNS:
        raise ConfigError(
            f"GPT-2 config field activation_function={hf.activation_function!r} is not "
            f"supported; supported: {sorted(_ACT_FNS)}."
        )
    if hf.n_embd % hf.n_head:
        raise ConfigError(
            f"GPT-2 config: n_embd={hf.n_embd} is not a multiple of n_head={hf.n_head}."
        )
    # reorder_and_upcast_attn only changes the precision attention is computed in, which
    # in float32 is what we do anyway; it is accepted.
    fields = dict(
        n_layers=hf.n_layer,
        d_model=hf.n_embd,
        n_ctx=hf.n_positions,
        d_head=hf.n_embd // hf.n_head,
        n_heads=hf.n_head,
        d_mlp=hf.n_inner or 4 * hf.n_embd,
        d_vocab=hf.vocab_size,
        d_vocab_out=hf.vocab_size,
        act_fn=_ACT_FNS[hf.activation_function],
        eps=hf.layer_norm_epsilon,
        normalization_type="LN",
        positional_embedding_type="standard",
        use_attn_scale=hf.scale_attn_weights,
        original_architecture=ARCHITECTURES[0],
        default_prepend_bos=True,
        init_weights=False,
        init_range=hf.initializer_range,
    )
    return ModelConfig(**{**fields, **overrides})


def state_dict_from_hf(
    hf_sd: Mapping[str, Tensor], cfg: ModelConfig, hf_config: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """Map a Hugging Face GPT-2 state dict to ours, as views wherever possible.

    Keys may carry the `transformer.` prefix or not; saved causal-mask buffers are
    ignored. `hf_config` says whether the unembedding is tied to `wte`
    (`tie_word_embeddings`, default True, as in Hugging Face: when tied, a saved
    `lm_head.weight` is ignored just as Hugging Face ignores it).

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    tied = (hf_config or {}).get("tie_word_embeddings", True)
    hf_sd = {_strip_prefix(k): v for k, v in hf_sd.items() if not _is_buffer(k)}
    expected = expected_hf_shapes(cfg, tied)
    # A checkpoint may have more positions than the model uses (n_ctx overridden).
    n_pos = hf_sd["wpe.weight"].shape[0] if "wpe.weight" in hf_sd else cfg.n_ctx
    expected["wpe.weight"] = (max(n_pos, cfg.n_ctx), cfg.d_model)
    check_state_dict(hf_sd, expected, "(GPT-2)", optional=[LM_HEAD] if tied else [])

    sd = {ours: hf_sd[name] for ours, name in GLOBAL_WEIGHTS.items()}
    sd["pos_embed.W_pos"] = sd["pos_embed.W_pos"][: cfg.n_ctx]
    heads = (cfg.n_heads, cfg.d_head)
    for layer in range(cfg.n_layers):
        ours, theirs = f"blocks.{layer}.", f"h.{layer}."
        sd.update({ours + k: hf_sd[theirs + name] for k, name in BLOCK_WEIGHTS.items()})
        sd[ours + "attn.W_O"] = sd[ours + "attn.W_O"].unflatten(0, heads)
        W_QKV = hf_sd[theirs + QKV_WEIGHT].split(cfg.d_model, dim=1)
        b_QKV = hf_sd[theirs + QKV_BIAS].split(cfg.d_model, dim=0)
        for name, W, b in zip("QKV", W_QKV, b_QKV, strict=True):
            # [d_model, n_heads * d_head] -> [n_heads, d_model, d_head], a permuted view.
            sd[ours + f"attn.W_{name}"] = W.unflatten(1, heads).permute(1, 0, 2)
            sd[ours + f"attn.b_{name}"] = b.unflatten(0, heads)
    sd["unembed.W_U"] = (hf_sd["wte.weight"] if tied else hf_sd[LM_HEAD]).T
    # GPT-2's unembedding has no bias; ours is zero so the same layout holds after folding.
    sd["unembed.b_U"] = torch.zeros(cfg.d_vocab_out, dtype=sd["unembed.W_U"].dtype)
    return sd


def expected_hf_shapes(cfg: ModelConfig, tied: bool = True) -> dict[str, tuple[int, ...]]:
    """Every key (without prefix) of a Hugging Face GPT-2 checkpoint for `cfg`, with its shape."""
    d_model, d_mlp = cfg.d_model, cfg.d_mlp or 0
    shapes = {
        "wte.weight": (cfg.d_vocab, d_model),
        "wpe.weight": (cfg.n_ctx, d_model),
        "ln_f.weight": (d_model,),
        "ln_f.bias": (d_model,),
    }
    block = {
        "ln_1.weight": (d_model,),
        "ln_1.bias": (d_model,),
        QKV_WEIGHT: (d_model, 3 * d_model),
        QKV_BIAS: (3 * d_model,),
        "attn.c_proj.weight": (d_model, d_model),
        "attn.c_proj.bias": (d_model,),
        "ln_2.weight": (d_model,),
        "ln_2.bias": (d_model,),
        "mlp.c_fc.weight": (d_model, d_mlp),
        "mlp.c_fc.bias": (d_mlp,),
        "mlp.c_proj.weight": (d_mlp, d_model),
        "mlp.c_proj.bias": (d_model,),
    }
    for layer in range(cfg.n_layers):
        shapes.update({f"h.{layer}.{name}": shape for name, shape in block.items()})
    if not tied:
        shapes[LM_HEAD] = (cfg.d_vocab_out, d_model)
    return shapes


def config_to_hf(cfg: ModelConfig, tie_word_embeddings: bool) -> dict[str, Any]:
    """A GPT-2 `config.json` dict for a model with `cfg`.

    Raises:
        ConfigError: naming the field when `cfg` describes something GPT-2 cannot express.
    """
    gpt2_scale = math.sqrt(cfg.d_head) if cfg.use_attn_scale else 1.0
    problems = {
        "normalization_type": cfg.normalization_type not in ("LN", "LNPre"),
        "positional_embedding_type": cfg.positional_embedding_type != "standard",
        "attn_only": cfg.attn_only,
        "act_fn": cfg.act_fn not in _ACT_FNS.values(),
        "d_vocab_out": cfg.d_vocab_out != cfg.d_vocab,
        "n_heads": cfg.n_heads * cfg.d_head != cfg.d_model,
        "n_key_value_heads": cfg.n_key_value_heads not in (None, cfg.n_heads),
        "attn_scale": not math.isclose(cfg.attn_scale, gpt2_scale),
        "smear_keys": cfg.smear_keys,
        "attention_score": cfg.attention_score != "dot",
    }
    bad = [name for name, is_bad in problems.items() if is_bad]
    if bad:
        values = ", ".join(f"{name}={getattr(cfg, name)!r}" for name in bad)
        raise ConfigError(f"This model cannot be expressed as GPT-2: {values}.")
    return dict(
        architectures=list(ARCHITECTURES),
        model_type=MODEL_TYPE,
        n_layer=cfg.n_layers,
        n_embd=cfg.d_model,
        n_head=cfg.n_heads,
        n_inner=cfg.d_mlp,
        n_positions=cfg.n_ctx,
        n_ctx=cfg.n_ctx,  # TransformerLens reads n_ctx from GPT-2 configs
        vocab_size=cfg.d_vocab,
        activation_function=cfg.act_fn,
        layer_norm_epsilon=cfg.eps,
        scale_attn_weights=cfg.use_attn_scale,
        initializer_range=cfg.init_range,
        tie_word_embeddings=tie_word_embeddings,
    )


def state_dict_to_hf(sd: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our state dict as Hugging Face GPT-2's (with the `transformer.` prefix).

    Works for processed models too: a folded norm (`LNPre`) is a LayerNorm with weight 1
    and bias 0. `lm_head.weight` is left out (tied) when `W_U == W_E.T` and `b_U == 0`.
    """
    ones, zeros = torch.ones_like(sd["embed.W_E"][0]), torch.zeros_like(sd["embed.W_E"][0])
    hf = {name: sd[ours] for ours, name in GLOBAL_WEIGHTS.items() if ours in sd}
    for layer in range(cfg.n_layers):
        ours, theirs = f"blocks.{layer}.", f"h.{layer}."
        for k, name in BLOCK_WEIGHTS.items():
            default = ones if k.endswith(".w") else zeros  # folded norms
            hf[theirs + name] = sd.get(ours + k, default)
        hf[theirs + "attn.c_proj.weight"] = hf[theirs + "attn.c_proj.weight"].flatten(0, 1)
        hf[theirs + QKV_WEIGHT] = torch.cat(
            [sd[ours + f"attn.W_{x}"].permute(1, 0, 2).flatten(1) for x in "QKV"], dim=1
        )
        hf[theirs + QKV_BIAS] = torch.cat([sd[ours + f"attn.b_{x}"].flatten() for x in "QKV"])
    hf["ln_f.weight"], hf["ln_f.bias"], W_U = _unembed_to_hf(sd)
    if not torch.equal(W_U, hf["wte.weight"]):
        hf[LM_HEAD] = W_U
    return {("" if k == LM_HEAD else "transformer.") + k: v for k, v in hf.items()}


def _unembed_to_hf(sd: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """`ln_f.weight`, `ln_f.bias` and `lm_head.weight` giving exactly our logits.

    GPT-2's `lm_head` has no bias, but folding `ln_final` moves its bias into `b_U`. We
    still export exactly: LayerNorm's normalized output `n` has zero mean, so adding a
    constant `u` to every row of the unembedding leaves `n @ W` unchanged, while a final
    bias of ones turns it into the per-token offset `sum_rows(W) + d_model * u`. With
    `W` = ln_final folded into `W_U` and `u = (b - sum_rows(W)) / d_model`, GPT-2's
    `(n + 1) @ (W + u)` equals our `n @ W + b`.
    """
    W_U, b_U = sd["unembed.W_U"], sd["unembed.b_U"]
    w, b = sd.get("ln_final.w"), sd.get("ln_final.b")
    if not b_U.any():
        ones = torch.ones_like(W_U[:, 0])
        return (ones if w is None else w), (torch.zeros_like(ones) if b is None else b), W_U.T
    W = W_U if w is None else w[:, None] * W_U
    bias = b_U if b is None else b_U + b @ W_U
    offset = (bias - W.sum(0)) / W.shape[0]
    ones = torch.ones_like(W[:, 0])
    return ones, ones.clone(), (W + offset).T


def _strip_prefix(key: str) -> str:
    return key.removeprefix("transformer.")


def _is_buffer(key: str) -> bool:
    parts = _strip_prefix(key).split(".")
    return len(parts) == 4 and parts[0] == "h" and ".".join(parts[2:]) in BUFFERS
