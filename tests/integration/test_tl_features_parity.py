"""TransformerLens 3.9 `HookedTransformerConfig` features that tiny-model tutorials build
with, computed exactly as TransformerLens computes them.

For each feature a small model is built in TransformerLens and in lookingglass from the
same config fields, our random weights are loaded into TransformerLens's model, and
every hook activation both sides have, and the logits, are compared (fp32, 1e-5, relative
for tensors with values above 1). The
hook names must be the same set on both sides. `init_mode` is checked statistically:
the spread of freshly drawn weights matches TransformerLens's formulas.
"""

from __future__ import annotations

import math

import pytest
import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.errors import ConfigError
from tests._helpers import max_abs_diff, one_cpu_thread, random_tokens
from tests.integration.test_transformerlens_parity import transformerlens_pair

ATOL = 1e-5
# Buffers only one side keeps (TransformerLens's mask tables; xIELU's constants are
# buffers on both sides).
FEATURES = {
    "shortformer": dict(positional_embedding_type="shortformer"),
    "shortformer-split-qkv-input": dict(
        positional_embedding_type="shortformer", use_split_qkv_input=True, use_attn_in=True
    ),
    "bidirectional": dict(attention_dir="bidirectional"),
    "bidirectional-rotary-attn-only": dict(
        attention_dir="bidirectional", positional_embedding_type="rotary", attn_only=True
    ),
    "solu_ln": dict(act_fn="solu_ln"),
    "solu_ln-LNPre": dict(act_fn="solu_ln", normalization_type="LNPre"),
    "solu": dict(act_fn="solu"),
    "relu2": dict(act_fn="relu2"),
    "xielu": dict(act_fn="xielu"),
    # Randomized b_in: TransformerLens adds it after the gate product.
    "gated-relu2-RMS": dict(act_fn="relu2", gated_mlp=True, normalization_type="RMS"),
    "gated-silu-RMS-gqa": dict(
        act_fn="silu", gated_mlp=True, normalization_type="RMS", n_key_value_heads=2
    ),
    "final_rms": dict(final_rms=True),
    "final_rms-LNPre": dict(final_rms=True, normalization_type="LNPre"),
    "clip_qkv": dict(clip_qkv=0.5),
    # Queries past position 6 of the 12 are scaled (in eval mode, as TransformerLens).
    "use_logn_attn-rotary": dict(
        use_logn_attn=True, train_seq_length=6, positional_embedding_type="rotary"
    ),
    "scale_attn_by_inverse_layer_idx": dict(scale_attn_by_inverse_layer_idx=True),
    "scale_attn_by_inverse_layer_idx-rotary": dict(
        scale_attn_by_inverse_layer_idx=True, positional_embedding_type="rotary"
    ),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def tokens():
    return random_tokens(2, 12, seed=5)


def _caches(ours, theirs, tokens):
    logits, cache = ours.run_with_cache(tokens)
    tl_logits, tl_cache = theirs.run_with_cache(tokens)
    return logits, cache, tl_logits, tl_cache


@pytest.mark.parametrize("flags", FEATURES.values(), ids=FEATURES.keys())
def test_feature_equals_transformerlens(tokens, flags):
    ours, theirs = transformerlens_pair(seed=1, **flags)
    ours.eval()
    logits, cache, tl_logits, tl_cache = _caches(ours, theirs, tokens)
    ours_only = set(cache.keys()) - set(tl_cache.keys())
    # Ours caches `hook_q/k/v_normalized_input` only when asked (`use_normalized_qkv_input`).
    assert ours_only == set() and set(tl_cache.keys()) == set(cache.keys()), (
        ours_only,
        set(tl_cache.keys()) - set(cache.keys()),
    )
    worst = {name: _scaled_diff(cache[name], tl_cache[name]) for name in cache.keys()}
    worst["logits"] = _scaled_diff(logits, tl_logits)
    assert max(worst.values()) <= ATOL, {k: v for k, v in worst.items() if v > ATOL}


def _scaled_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Max abs difference, relative for tensors larger than 1 (SoLU's LayerNorm divides
    by a scale ~0.01, so fp32 rounding of its input grows to ~1e-5 on values ~15)."""
    finite = theirs[torch.isfinite(theirs)]
    magnitude = float(finite.detach().abs().max()) if finite.numel() else 1.0
    return max_abs_diff(ours, theirs) / max(1.0, magnitude)


def test_clip_qkv_and_logn_really_change_the_outputs(tokens):
    """The two features above are not no-ops on these weights and inputs."""
    for feature, default, flags in (
        ("clip_qkv", None, dict(clip_qkv=0.5)),
        ("use_logn_attn", False, FEATURES["use_logn_attn-rotary"]),
    ):
        ours, _ = transformerlens_pair(seed=1, **flags)
        without = ours.cfg.to_dict() | {feature: default, "init_weights": False}
        plain = HookedTransformer(ModelConfig(**without))
        plain.load_state_dict(ours.state_dict())
        assert max_abs_diff(ours.eval()(tokens), plain.eval()(tokens)) > 1e-3, feature


def test_shortformer_keeps_positions_out_of_the_residual_stream(tokens):
    ours, theirs = transformerlens_pair(seed=2, positional_embedding_type="shortformer")
    _, cache, _, tl_cache = _caches(ours, theirs, tokens)
    # TransformerLens: resid_pre of block 0 is the token embedding alone.
    assert max_abs_diff(tl_cache["blocks.0.hook_resid_pre"], tl_cache["hook_embed"]) == 0
    assert max_abs_diff(cache["blocks.0.hook_resid_pre"], cache["hook_embed"]) == 0
    assert max_abs_diff(cache["hook_pos_embed"], tl_cache["hook_pos_embed"]) <= ATOL


def test_shortformer_start_at_layer_and_generation_use_positions(tokens):
    """Running from a layer's residual stream, and one token at a time with a KV cache,
    give the full forward pass's logits (the positions reach every block)."""
    from lookingglass.model.kv_cache import KeyValueCache

    ours, _ = transformerlens_pair(seed=3, positional_embedding_type="shortformer")
    full, cache = ours.run_with_cache(tokens)
    resumed = ours(cache["blocks.1.hook_resid_pre"], start_at_layer=1)
    assert max_abs_diff(resumed, full) <= ATOL
    kv = KeyValueCache.init_cache(ours.cfg, ours.cfg.device, tokens.shape[0])
    first = ours(tokens[:, :8], past_kv_cache=kv)
    rest = ours(tokens[:, 8:], past_kv_cache=kv)
    assert max_abs_diff(torch.cat([first, rest], dim=1), full) <= 1e-4


@pytest.mark.parametrize(
    "flags",
    [FEATURES["shortformer"], FEATURES["solu_ln"], FEATURES["final_rms"]],
    ids=["shortformer", "solu_ln", "final_rms"],
)
def test_saved_feature_models_load_back_with_their_numbers(tmp_path, tokens, flags):
    """`from_pretrained` leaves off the processing steps these features make invalid
    (TransformerLens turns fold_ln and centering off for shortformer models too)."""
    ours, theirs = transformerlens_pair(seed=7, **flags)
    ours.save_pretrained(tmp_path / "model")
    loaded = HookedTransformer.from_pretrained(tmp_path / "model", device="cpu")
    expected = theirs(tokens).log_softmax(-1)
    assert max_abs_diff(loaded(tokens).log_softmax(-1), expected) <= 1e-4


def test_bidirectional_attention_sees_later_tokens(tokens):
    ours, theirs = transformerlens_pair(seed=4, attention_dir="bidirectional")
    _, cache, _, tl_cache = _caches(ours, theirs, tokens)
    pattern, tl_pattern = cache["pattern", 0], tl_cache["blocks.0.attn.hook_pattern"]
    assert bool((tl_pattern.triu(1) > 0).any())  # the reference attends forwards
    assert max_abs_diff(pattern, tl_pattern) <= ATOL


def test_bidirectional_padded_row_computes_as_unpadded(tokens):
    """Our one deliberate difference: padding keys are masked (TransformerLens's
    `HookedTransformer` attends to them when `attention_dir="bidirectional"`)."""
    ours, _ = transformerlens_pair(seed=8, attention_dir="bidirectional")
    short = tokens[:1, :8]
    padded = torch.cat([short, torch.zeros(1, 4, dtype=short.dtype)], dim=1)
    mask = torch.tensor([[1] * 8 + [0] * 4])
    logits = ours(padded, attention_mask=mask)[:, :8]
    assert max_abs_diff(logits, ours(short)) <= ATOL


# ------------------------------------------------------------------------- init_mode
BIG = dict(n_layers=1, d_model=256, n_heads=4, d_head=64, d_mlp=1024, d_vocab=300, n_ctx=32)


def _expected_std(mode: str, name: str, param: torch.Tensor, gain: float) -> float:
    """The std TransformerLens 3.9's `init_weights` draws `name` with (its formulas)."""
    shape = param.shape
    fan_in, fan_out = (shape[0], shape[1]) if len(shape) == 2 else (shape[1], shape[0] * shape[2])
    if mode == "gpt2":
        return gain
    if mode.startswith("xavier"):
        return gain * math.sqrt(2.0 / (fan_in + fan_out))  # uniform: bound/sqrt(3), same
    if mode.startswith("kaiming"):
        return gain * math.sqrt(2.0) / math.sqrt(fan_in)
    return 1.0 if "embed" in name else fan_in**-0.5  # muP


@pytest.mark.parametrize(
    "mode",
    ["gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "muP"],
)
def test_init_mode_draws_with_transformerlens_spread(mode):
    from transformer_lens import HookedTransformer as TLHookedTransformer
    from transformer_lens import HookedTransformerConfig

    fields = dict(BIG, act_fn="relu", init_mode=mode, seed=0)
    ours = HookedTransformer(ModelConfig(**fields))
    theirs = TLHookedTransformer(HookedTransformerConfig(**fields))
    gain = theirs.cfg.initializer_range
    assert ours.cfg.init_range == pytest.approx(gain)
    tl_params = dict(theirs.named_parameters())
    checked = 0
    for name, param in ours.named_parameters():
        if "W_" not in name:
            continue
        expected = _expected_std(mode, name, param, gain)
        tl_std, std = float(tl_params[name].detach().std()), float(param.detach().std())
        # TransformerLens itself follows the formula (a check of the check) ...
        assert tl_std == pytest.approx(expected, rel=0.06), (name, "TransformerLens")
        # ... and so do we, with the same distribution shape (uniform's max is its bound).
        assert std == pytest.approx(expected, rel=0.06), name
        if mode.endswith("uniform"):
            bound = float(tl_params[name].detach().abs().max())
            assert float(param.detach().abs().max()) == pytest.approx(bound, rel=0.02), name
        checked += 1
    assert checked >= 7
    biases = [p for n, p in ours.named_parameters() if n.rsplit(".", 1)[-1].startswith("b_")]
    assert all(float(b.detach().abs().max()) == 0 for b in biases)


# ------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(init_mode="orthogonal"), "init_mode"),
        (dict(attention_dir="sideways"), "attention_dir"),
        (dict(attention_dir="bidirectional", window_size=4), "local"),
        (dict(act_fn="solu_ln", gated_mlp=True), "gated"),
        (dict(positional_embedding_type="shortformer", norm_placement="post"), "post"),
    ],
)
def test_unimplemented_combinations_are_refused_by_name(fields, words):
    base = dict(n_layers=1, d_model=16, n_heads=2, d_head=8, d_vocab=10, n_ctx=8)
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**base, **fields)
