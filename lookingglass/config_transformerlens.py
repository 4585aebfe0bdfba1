"""How `ModelConfig` honours the TransformerLens 3.9 `HookedTransformerConfig` fields that
have no field of ours by another name.

Each TransformerLens field is, here, one of:
- a synonym, kept in step with our field both ways: `initializer_range` (= `init_range`),
  `use_normalization_before_and_after` (= `norm_placement="pre_and_post"`),
  `use_NTK_by_parts_rope` and `NTK_*` (= `rope_scaling` of type "llama3"),
  `rotary_scaling_factor` (= `rope_scaling` of type "linear"), `use_local_attn`
  (local layers come from `attn_types`, as in TransformerLens);
- metadata, stored and never computed with (as in TransformerLens's `HookedTransformer`):
  `tokenizer_prepends_bos`, the `checkpoint_*` fields, `train_seq_length`,
  `layer_norm_folding`, `uses_rms_norm`, `trust_remote_code`, and the encoder-decoder
  (T5) fields `tie_word_embeddings`, `relative_attention_*`, `decoder_start_token_id`;
- `n_devices`: as TransformerLens, more than 1 needs that many CUDA devices (the split
  is `lookingglass.model.placement`'s);
- a feature our model does not implement: its default is accepted, any other value is
  a `ConfigError` naming the field (`UNIMPLEMENTED`).

Implemented as TransformerLens computes them (each is checked against TransformerLens
3.9 in tests/integration/test_tl_features_parity.py): `attention_dir="bidirectional"`,
`scale_attn_by_inverse_layer_idx`, `final_rms`, `clip_qkv`, `use_logn_attn`, every
`init_mode`, and `positional_embedding_type="shortformer"`; a few combinations are
refused (`_check_feature_combinations`).
"""

from __future__ import annotations

from typing import Any

from lookingglass.errors import ConfigError

# field -> (its TransformerLens default, what it would switch on). Any other value is refused.
UNIMPLEMENTED: dict[str, tuple[Any, str]] = {
    "use_dynamic_ntk_rope": (False, "dynamic NTK rotary scaling (Qwen)"),
    "rotary_base_local": (None, "a separate rotary base for local layers (Gemma 3)"),
    "load_in_4bit": (False, "4-bit quantized weights"),
    "quantization_method": (None, "quantized weights"),
    "use_yarn_rope": (False, "YaRN rotary scaling"),
    "use_attention_sinks": (False, "attention sinks (GPT-OSS)"),
}
INIT_MODES = ("gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "muP")


def resolve_transformerlens_fields(cfg: Any) -> None:
    """Check and fill the TransformerLens-only fields of `cfg` (called first thing in
    `ModelConfig.__post_init__`); see the module docstring."""
    for name, (default, feature) in UNIMPLEMENTED.items():
        value = getattr(cfg, name)
        if value != default:
            raise ConfigError(
                f"{name}={value!r} asks for {feature}, which lookingglass's HookedTransformer "
                f"does not implement yet; leave {name} at its default {default!r}."
            )
    _check_n_devices(cfg.n_devices)
    _check_feature_combinations(cfg)
    _sync_init_range(cfg)
    _sync_local_attention(cfg)
    _sync_norm_placement(cfg)
    _sync_rope_scaling(cfg)
    _resolve_norm_topk_prob(cfg)


def _check_n_devices(n_devices: int) -> None:
    """`n_devices` > 1 splits the blocks over that many CUDA devices (as TransformerLens,
    which asserts they exist); see `lookingglass.model.placement`."""
    if n_devices < 1:
        raise ConfigError(f"n_devices must be at least 1, got {n_devices}.")
    if n_devices > 1:
        import torch

        if torch.cuda.device_count() < n_devices:
            raise ConfigError(
                f"n_devices={n_devices} splits the model over {n_devices} CUDA devices; this "
                f"machine has {torch.cuda.device_count()}. Use n_devices=1."
            )


def _check_feature_combinations(cfg: Any) -> None:
    """Refuse the TransformerLens values and combinations our model does not compute."""
    if cfg.init_mode not in INIT_MODES:
        raise ConfigError(f"init_mode={cfg.init_mode!r} is not one of {list(INIT_MODES)}.")
    if cfg.attention_dir not in ("causal", "bidirectional"):
        raise ConfigError(
            f"attention_dir must be 'causal' or 'bidirectional', got {cfg.attention_dir!r}."
        )
    if cfg.attention_dir == "bidirectional" and (cfg.window_size is not None or cfg.use_local_attn):
        raise ConfigError(
            "attention_dir='bidirectional' with local attention windows is not implemented "
            "(TransformerLens drops the windows then); leave window_size and attn_types unset."
        )
    if cfg.positional_embedding_type == "shortformer" and cfg.norm_placement == "post":
        raise ConfigError(
            "positional_embedding_type='shortformer' adds positions to the normalized "
            "attention input, which norm_placement='post' does not have; use 'pre'."
        )
    if cfg.is_layer_norm_activation() and (cfg.gated_mlp or cfg.num_experts):
        raise ConfigError(
            f"act_fn={cfg.act_fn!r} (an activation followed by a LayerNorm) is implemented for "
            "dense MLPs only (TransformerLens's gated MLP then ignores W_in); use gated_mlp=False."
        )


def _sync_init_range(cfg: Any) -> None:
    if cfg.initializer_range >= 0:
        if cfg.init_range not in (-1.0, cfg.initializer_range):
            raise ConfigError(
                f"initializer_range={cfg.initializer_range} and init_range={cfg.init_range} "
                "are the same setting and disagree; pass one of them."
            )
        cfg.init_range = cfg.initializer_range


def _sync_local_attention(cfg: Any) -> None:
    if cfg.use_local_attn and (cfg.window_size is None or cfg.attn_types is None):
        raise ConfigError("use_local_attn=True needs window_size and attn_types.")
    cfg.use_local_attn = cfg.attn_types is not None and "local" in cfg.attn_types


def _sync_norm_placement(cfg: Any) -> None:
    if cfg.use_normalization_before_and_after:
        if cfg.norm_placement not in ("pre", "pre_and_post"):
            raise ConfigError(
                "use_normalization_before_and_after=True means norm_placement='pre_and_post'; "
                f"got norm_placement={cfg.norm_placement!r}."
            )
        cfg.norm_placement = "pre_and_post"
    cfg.use_normalization_before_and_after = cfg.norm_placement == "pre_and_post"


def _sync_rope_scaling(cfg: Any) -> None:
    if cfg.use_NTK_by_parts_rope:
        llama3 = {
            "rope_type": "llama3",
            "factor": cfg.NTK_by_parts_factor,
            "low_freq_factor": cfg.NTK_by_parts_low_freq_factor,
            "high_freq_factor": cfg.NTK_by_parts_high_freq_factor,
            "original_max_position_embeddings": cfg.NTK_original_ctx_len,
        }
        _set_rope_scaling(cfg, llama3, "use_NTK_by_parts_rope")
    if cfg.rotary_scaling_factor != 1.0:
        if cfg.attn_types is not None and "local" in cfg.attn_types:
            raise ConfigError(
                "rotary_scaling_factor with local layers (scaled on global layers only, as in "
                "Gemma 3) is not implemented; use rope_scaling on a model without local layers."
            )
        linear = {"rope_type": "linear", "factor": cfg.rotary_scaling_factor}
        _set_rope_scaling(cfg, linear, "rotary_scaling_factor")
    scaling = cfg.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "llama3":
        cfg.use_NTK_by_parts_rope = True
        cfg.NTK_by_parts_factor = scaling["factor"]
        cfg.NTK_by_parts_low_freq_factor = scaling["low_freq_factor"]
        cfg.NTK_by_parts_high_freq_factor = scaling["high_freq_factor"]
        cfg.NTK_original_ctx_len = scaling["original_max_position_embeddings"]
    elif kind == "linear":
        cfg.rotary_scaling_factor = scaling["factor"]


def _set_rope_scaling(cfg: Any, wanted: dict[str, Any], source: str) -> None:
    current = cfg.rope_scaling
    if current is not None and {**current, "rope_type": current.get("rope_type")} != wanted:
        current_kind = current.get("rope_type", current.get("type"))
        same = current_kind == wanted["rope_type"] and all(
            current.get(k) == v for k, v in wanted.items() if k != "rope_type"
        )
        if not same:
            raise ConfigError(f"{source} and rope_scaling={current} disagree; pass one of them.")
        return
    cfg.rope_scaling = wanted


def _resolve_norm_topk_prob(cfg: Any) -> None:
    if cfg.num_experts is None:
        if cfg.norm_topk_prob is None:
            cfg.norm_topk_prob = False  # TransformerLens's default; no effect without experts
        return
    if cfg.norm_topk_prob is None:
        cfg.norm_topk_prob = True  # our mixture of experts renormalizes (as Mixtral)
    elif not cfg.norm_topk_prob:
        raise ConfigError(
            "norm_topk_prob=False (expert weights not renormalized after top-k) is not "
            "implemented: lookingglass's MoE renormalizes, as Mixtral; leave it unset or True."
        )
