"""Hugging Face weight layouts -> ours: the reshapes that every `nn.Linear` family shares.

Hugging Face stores `nn.Linear` weights `[d_out, d_in]` (`y = x @ W.T`); we store the
`x @ W` orientation, split per head where there are heads:

    W_Q, W_K, W_V [n_heads, d_model, d_head]  <-  q_proj.weight  [n_heads * d_head, d_model]
    W_O           [n_heads, d_head, d_model]  <-  o_proj.weight  [d_model, n_heads * d_head]
    W_in, W_gate  [d_model, d_mlp]            <-  up_proj.weight [d_mlp, d_model]
    W_out         [d_mlp, d_model]            <-  down_proj.weight [d_model, d_mlp]
    W_U           [d_model, d_vocab_out]      <-  lm_head.weight [d_vocab_out, d_model]

A converter describes its checkpoint as tables `our name -> (Hugging Face name, Kind)`;
`convert` applies each kind's reshape (views, never copies) and `expected_shapes` lists
every tensor the checkpoint must hold, with its shape, so that `check_state_dict` reports
all problems at once before anything is reshaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lookingglass.config import ROPE_SCALING_KEYS, ModelConfig
from lookingglass.errors import ConfigError
from lookingglass.loading.converters._common import check_state_dict

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Kind:
    """How one Hugging Face tensor becomes one of ours: its expected shape and the reshape."""

    shape: Callable[[ModelConfig], Shape | None]
    to_ours: Callable[[Tensor, ModelConfig], Tensor]


def _same(tensor: Tensor, cfg: ModelConfig) -> Tensor:
    return tensor


def _kv_heads(cfg: ModelConfig) -> int:
    return cfg.n_kv_heads


def _q_heads(cfg: ModelConfig) -> int:
    return cfg.n_heads


def _proj_in(heads: Callable[[ModelConfig], int]) -> Kind:
    """`[heads * d_head, d_model]` -> `[heads, d_model, d_head]`."""
    return Kind(
        lambda c: (heads(c) * c.d_head, c.d_model),
        lambda W, c: W.unflatten(0, (heads(c), c.d_head)).transpose(1, 2),
    )


def _proj_in_bias(heads: Callable[[ModelConfig], int]) -> Kind:
    return Kind(lambda c: (heads(c) * c.d_head,), lambda b, c: b.unflatten(0, (heads(c), c.d_head)))


def _fused_qkv(index: int) -> Kind:
    """Q (0), K (1) or V (2) of a fused projection laid out `[n_heads, 3, d_head]` along
    its output dimension (GPT-NeoX, BLOOM: each head's q, k and v side by side)."""
    return Kind(
        lambda c: (3 * c.n_heads * c.d_head, c.d_model),
        lambda W, c: W.unflatten(0, (c.n_heads, 3, c.d_head))[:, index].transpose(1, 2),
    )


def _fused_qkv_bias(index: int) -> Kind:
    return Kind(
        lambda c: (3 * c.n_heads * c.d_head,),
        lambda b, c: b.unflatten(0, (c.n_heads, 3, c.d_head))[:, index],
    )


D_MODEL = Kind(lambda c: (c.d_model,), _same)  # norm weights and biases, output biases
EMBED = Kind(lambda c: (c.d_vocab, c.d_model), _same)
UNEMBED = Kind(lambda c: (c.d_vocab_out, c.d_model), lambda W, c: W.T)
UNEMBED_BIAS = Kind(lambda c: (c.d_vocab_out,), _same)
Q_PROJ, Q_BIAS = _proj_in(_q_heads), _proj_in_bias(_q_heads)
KV_PROJ, KV_BIAS = _proj_in(_kv_heads), _proj_in_bias(_kv_heads)
O_PROJ = Kind(
    lambda c: (c.d_model, c.n_heads * c.d_head),
    lambda W, c: W.T.unflatten(0, (c.n_heads, c.d_head)),
)
MLP_IN = Kind(lambda c: (c.d_mlp, c.d_model), lambda W, c: W.T)
MLP_IN_BIAS = Kind(lambda c: (c.d_mlp,), _same)
MLP_OUT = Kind(lambda c: (c.d_model, c.d_mlp), lambda W, c: W.T)
FUSED_QKV = tuple(_fused_qkv(i) for i in range(3))
FUSED_QKV_BIAS = tuple(_fused_qkv_bias(i) for i in range(3))


def positions(offset: int = 0) -> Kind:
    """A learned position table: rows `offset .. offset + n_ctx` (OPT keeps 2 spare rows
    first). Any length is accepted here; a table shorter than `n_ctx` fails the model's
    own shape check with a message naming `pos_embed.W_pos`."""
    return Kind(lambda c: None, lambda W, c: W[offset : offset + c.n_ctx])


Table = Mapping[str, tuple[str, Kind]]


def kv_names(cfg: ModelConfig) -> tuple[str, str, str, str]:
    """Our key/value parameter names: `W_K, b_K, W_V, b_V`, or with grouped-query
    attention the real (fewer) heads' `_W_K, _b_K, _W_V, _b_V`."""
    grouped = "_" if cfg.n_kv_heads != cfg.n_heads else ""
    W_K, b_K, W_V, b_V = (f"attn.{grouped}{name}" for name in ("W_K", "b_K", "W_V", "b_V"))
    return W_K, b_K, W_V, b_V


# ------------------------------------------------------------------- table builders
def norm(ours: str, theirs: str, bias: bool = True) -> dict[str, tuple[str, Kind]]:
    """A LayerNorm's gain (and bias): `{ours}.w` <- `{theirs}.weight`."""
    table = {f"{ours}.w": (f"{theirs}.weight", D_MODEL)}
    if bias:
        table[f"{ours}.b"] = (f"{theirs}.bias", D_MODEL)
    return table


def attention(
    cfg: ModelConfig, projections: str, out: str, qkv_bias: bool, o_bias: bool
) -> dict[str, tuple[str, Kind]]:
    """Separate q, k, v and output projections, named by the pattern `projections` (e.g.
    "self_attn.{}_proj" for `self_attn.q_proj`, ...) filled with "q", "k", "v" and `out`."""
    q, k, v, o = (projections.format(x) for x in ("q", "k", "v", out))
    W_K, b_K, W_V, b_V = kv_names(cfg)
    table = {
        "attn.W_Q": (f"{q}.weight", Q_PROJ),
        W_K: (f"{k}.weight", KV_PROJ),
        W_V: (f"{v}.weight", KV_PROJ),
        "attn.W_O": (f"{o}.weight", O_PROJ),
    }
    if qkv_bias:
        table["attn.b_Q"] = (f"{q}.bias", Q_BIAS)
        table.update({b_K: (f"{k}.bias", KV_BIAS), b_V: (f"{v}.bias", KV_BIAS)})
    if o_bias:
        table["attn.b_O"] = (f"{o}.bias", D_MODEL)
    return table


def fused_attention(qkv: str, o: str, bias: bool) -> dict[str, tuple[str, Kind]]:
    """One `qkv` projection laid out per head (GPT-NeoX, BLOOM), and the output `o`."""
    table = {f"attn.W_{x}": (f"{qkv}.weight", FUSED_QKV[i]) for i, x in enumerate("QKV")}
    table["attn.W_O"] = (f"{o}.weight", O_PROJ)
    if bias:
        table.update(
            {f"attn.b_{x}": (f"{qkv}.bias", FUSED_QKV_BIAS[i]) for i, x in enumerate("QKV")}
        )
        table["attn.b_O"] = (f"{o}.bias", D_MODEL)
    return table


def mlp(fc_in: str, fc_out: str, bias: bool = True) -> dict[str, tuple[str, Kind]]:
    """A dense MLP: `W_in` <- `{fc_in}.weight`, `W_out` <- `{fc_out}.weight` (+ biases)."""
    table = {"mlp.W_in": (f"{fc_in}.weight", MLP_IN), "mlp.W_out": (f"{fc_out}.weight", MLP_OUT)}
    if bias:
        table.update(
            {"mlp.b_in": (f"{fc_in}.bias", MLP_IN_BIAS), "mlp.b_out": (f"{fc_out}.bias", D_MODEL)}
        )
    return table


# ---------------------------------------------------------------------- conversion
@dataclass(frozen=True)
class Layout:
    """Where a family keeps its tensors: the base model's key prefix (checkpoints are
    saved with or without it), the blocks' prefix, the embedding and head keys, and
    non-weight buffers that older `transformers` versions saved (key suffixes)."""

    family: str
    prefix: str
    block_prefix: str
    embed: str
    lm_head: str = "lm_head.weight"
    buffers: tuple[str, ...] = ()


def load_tables(
    hf_sd: Mapping[str, Tensor],
    cfg: ModelConfig,
    layout: Layout,
    global_table: Table,
    block_table: Table,
    tied: bool,
    absent: Mapping[str, float] | None = None,
) -> dict[str, Tensor]:
    """Check `hf_sd` against the tables, then convert it (views wherever possible).

    The embedding and unembedding are added here: `W_U` is the embedding transposed when
    `tied` (a saved `lm_head.weight` is then ignored, as Hugging Face ignores it).
    `absent` names per-block parameters the family does not have, with their constant
    value (0 for a missing bias, 1 for a norm without a learned gain); `b_U` is 0 unless
    the tables give it.

    Raises:
        CheckpointError: listing every missing, unexpected and mis-shaped key.
    """
    hf_sd = strip_prefix(hf_sd, layout.prefix, layout.buffers)
    global_table = {
        **global_table,
        "embed.W_E": (layout.embed, EMBED),
        "unembed.W_U": (layout.embed if tied else layout.lm_head, UNEMBED),
    }
    expected = expected_shapes(cfg, global_table, block_table, layout.block_prefix)
    optional = [layout.lm_head] if tied else []
    check_state_dict(hf_sd, expected, f"({layout.family})", optional=optional)
    sd = convert(hf_sd, cfg, global_table, block_table, layout.block_prefix)
    if "unembed.b_U" not in sd:
        sd["unembed.b_U"] = torch.zeros(cfg.d_vocab_out, dtype=sd["unembed.W_U"].dtype)
    for value in set((absent or {}).values()):
        names = [name for name, v in (absent or {}).items() if v == value]
        add_constant_parameters(sd, cfg, names, value)
    return sd


def expected_shapes(
    cfg: ModelConfig, global_table: Table, block_table: Table, block_prefix: str
) -> dict[str, Shape | None]:
    """Every Hugging Face key the tables read, with its shape (blocks `{prefix}{i}.`)."""
    shapes = {name: kind.shape(cfg) for name, kind in global_table.values()}
    for layer in range(cfg.n_layers):
        for name, kind in block_table.values():
            shapes[f"{block_prefix}{layer}.{name}"] = kind.shape(cfg)
    return shapes


def convert(
    hf_sd: Mapping[str, Tensor],
    cfg: ModelConfig,
    global_table: Table,
    block_table: Table,
    block_prefix: str,
) -> dict[str, Tensor]:
    """Our state dict from the tables: `blocks.{i}.{ours}` <- `{block_prefix}{i}.{name}`."""
    sd = {ours: kind.to_ours(hf_sd[name], cfg) for ours, (name, kind) in global_table.items()}
    for layer in range(cfg.n_layers):
        for ours, (name, kind) in block_table.items():
            sd[f"blocks.{layer}.{ours}"] = kind.to_ours(hf_sd[f"{block_prefix}{layer}.{name}"], cfg)
    return sd


def add_constant_parameters(
    sd: dict[str, Tensor], cfg: ModelConfig, names: Iterable[str], value: float = 0.0
) -> None:
    """Add per-block parameters the checkpoint does not have, filled with `value`."""
    dtype = sd["embed.W_E"].dtype
    shapes = _our_block_shapes(cfg)
    for layer in range(cfg.n_layers):
        for name in names:
            sd[f"blocks.{layer}.{name}"] = torch.full(shapes[name], value, dtype=dtype)


def _our_block_shapes(cfg: ModelConfig) -> dict[str, Shape]:
    kv = (cfg.n_kv_heads, cfg.d_head)
    _, b_K, _, b_V = kv_names(cfg)
    return {
        "attn.b_Q": (cfg.n_heads, cfg.d_head),
        b_K: kv,
        b_V: kv,
        "attn.b_O": (cfg.d_model,),
        "mlp.b_in": (cfg.d_mlp or 0,),
        "mlp.b_gate": (cfg.d_mlp or 0,),
        "mlp.b_pre_linear": (cfg.d_mlp or 0,),
        "mlp.b_out": (cfg.d_model,),
        **{f"{norm}.{p}": (cfg.d_model,) for norm in ("ln1", "ln2") for p in "wb"},
    }


def share_ln1_with_ln2(sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Give `ln2` a copy of `ln1`: one norm feeding both parallel sublayers (GPT-J,
    parallel StableLM). A copy, not the same tensor, so that processing or editing one
    leaves the other alone."""
    for layer in range(cfg.n_layers):
        for p in ("w", "b"):
            sd[f"blocks.{layer}.ln2.{p}"] = sd[f"blocks.{layer}.ln1.{p}"].clone()
    return sd


def strip_prefix(
    hf_sd: Mapping[str, Tensor], prefix: str, ignored: Iterable[str] = ()
) -> dict[str, Tensor]:
    """Keys without the base model's `prefix` (checkpoints are saved with or without
    it), leaving out non-weight buffers whose key ends with one of `ignored`."""
    ignored = tuple(ignored)
    return {
        key.removeprefix(prefix): tensor
        for key, tensor in hf_sd.items()
        if not (ignored and key.endswith(ignored))
    }


def config_fields(
    family: str,
    architecture: str,
    hf: Any,
    *,
    d_mlp: int,
    eps: float,
    act_field: str | None,
    n_ctx: int | None = None,
    init_range: float | None = None,
) -> dict[str, Any]:
    """The `ModelConfig` fields every LayerNorm family fills the same way, read from a
    Hugging Face config object through its standard attribute names (`hidden_size`,
    `num_attention_heads`, `num_hidden_layers`, `vocab_size`, `max_position_embeddings`,
    `initializer_range`; each family's `attribute_map` translates its own names).

    `act_field` names the config's activation field (None: the family fixes its own and
    sets `act_fn` itself).

    Raises:
        ConfigError: an activation we do not implement (naming `act_field`), or a width
            that does not split into heads.
    """
    return dict(
        n_layers=hf.num_hidden_layers,
        d_model=hf.hidden_size,
        n_ctx=hf.max_position_embeddings if n_ctx is None else n_ctx,
        d_head=head_dim(family, hf.hidden_size, hf.num_attention_heads),
        n_heads=hf.num_attention_heads,
        d_mlp=d_mlp,
        d_vocab=hf.vocab_size,
        d_vocab_out=hf.vocab_size,
        act_fn=act_field and check_choice(family, act_field, getattr(hf, act_field), ACT_FNS),
        eps=eps,
        normalization_type="LN",
        original_architecture=architecture,
        init_weights=False,
        init_range=hf.initializer_range if init_range is None else init_range,
    )


def export_not_implemented(family: str) -> Callable[..., Any]:
    """A stand-in for a converter's `config_to_hf` / `state_dict_to_hf` that says export
    back to Hugging Face is not implemented for `family` (loading is)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError(
            f"Exporting a {family} model to Hugging Face (to_hf / save_hf) is not implemented. "
            "Save it in lookingglass's own format with model.save_pretrained(folder) instead."
        )

    return refuse


def refuse_unsupported(family: str, hf: Any, supported: Mapping[str, Any]) -> None:
    """Raise `ConfigError` naming the first config field whose value we do not implement.

    `supported` maps a field to its one implemented value, or to a tuple of them.
    """
    for name, allowed in supported.items():
        value = getattr(hf, name)
        ok = value in allowed if isinstance(allowed, tuple) else value == allowed
        if not ok:
            raise ConfigError(
                f"{family} config field {name}={value!r} is not implemented natively (supported: "
                f"{allowed!r}). Use lookingglass.HookedAutoModel to run this model."
            )


def check_choice(family: str, field: str, value: Any, choices: Mapping[str, Any]) -> Any:
    """`choices[value]`, or a `ConfigError` naming the field and the supported values."""
    if value not in choices:
        raise ConfigError(
            f"{family} config field {field}={value!r} is not supported; supported: "
            f"{sorted(choices)}."
        )
    return choices[value]


def head_dim(family: str, d_model: int, n_heads: int) -> int:
    """`d_model // n_heads`, refusing a width that does not split evenly into heads."""
    if d_model % n_heads:
        raise ConfigError(
            f"{family} config: hidden size {d_model} is not a multiple of the {n_heads} heads."
        )
    return d_model // n_heads


def rotary_fields(family: str, rope_parameters: Mapping[str, Any], d_head: int) -> dict[str, Any]:
    """`rotary_dim`, `rotary_base` and `rope_scaling` from Hugging Face's `rope_parameters`
    (`rope_theta`, `partial_rotary_factor`, `rope_type` and its own keys).

    Raises:
        ConfigError: a rope type we do not implement (we have "default", "linear", "llama3").
    """
    kind = rope_parameters.get("rope_type", "default")
    if kind not in ROPE_SCALING_KEYS:
        raise ConfigError(
            f"{family} config: rope_type={kind!r} is not implemented natively (supported: "
            f"{sorted(ROPE_SCALING_KEYS)}). Use lookingglass.HookedAutoModel to run this model."
        )
    scaling = {key: rope_parameters[key] for key in ROPE_SCALING_KEYS[kind]}
    return dict(
        # Hugging Face rounds down the rotated share of each head the same way.
        rotary_dim=int(d_head * rope_parameters.get("partial_rotary_factor", 1.0)),
        rotary_base=float(rope_parameters["rope_theta"]),
        rope_scaling={"rope_type": kind, **scaling} if kind != "default" else None,
    )


# Hugging Face activation name (`ACT2FN`) -> ours.
ACT_FNS = {
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_pytorch_tanh",
    "gelu_fast": "gelu_fast",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
