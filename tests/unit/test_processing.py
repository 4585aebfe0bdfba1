"""Weight processing: same numbers as TransformerLens 3.9's `ProcessWeights` on the same
state dict, same model function afterwards, and loud errors where a step cannot apply."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.weight_processing import ProcessWeights

from lookingglass import CheckpointError, ConfigError, HookedTransformer
from lookingglass.loading import processing
from lookingglass.loading.converters import converter_for
from lookingglass.loading.pretrained import load_checkpoint
from tests._helpers import assert_close, make_model, random_tokens

# Same float32 operations in the same order as TransformerLens: equal up to rounding.
TL_ATOL = 1e-6


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir):
    """(state dict in our layout, unprocessed; config) of the tiny GPT-2 checkpoint."""
    hf_config, checkpoint = load_checkpoint(tiny_gpt2_dir)
    converter = converter_for(hf_config)
    cfg = converter.config_from_hf(hf_config)
    sd = converter.state_dict_from_hf(checkpoint, cfg, hf_config)
    return {k: v.clone() for k, v in sd.items()}, cfg


def _copy(sd):
    return {k: v.clone() for k, v in sd.items()}


def _assert_same(ours, theirs, what):
    assert set(ours) <= set(theirs), f"{what}: keys only ours: {set(ours) - set(theirs)}"
    for key in ours:
        assert_close(ours[key], theirs[key], TL_ATOL, f"{what} {key}")


@pytest.mark.parametrize(
    "step",
    ["center_writing_weights", "fold_value_biases", "refactor_factored_attn_matrices"],
)
def test_step_matches_transformer_lens(gpt2, step):
    sd, cfg = gpt2
    ours = getattr(processing, step)(_copy(sd), cfg)
    theirs = getattr(ProcessWeights, step)(_copy(sd), cfg)
    _assert_same(ours, theirs, step)


def test_center_unembed_matches_transformer_lens(gpt2):
    sd, cfg = gpt2
    _assert_same(
        processing.center_unembed(_copy(sd), cfg),
        ProcessWeights.center_unembed(_copy(sd), cfg),
        "center_unembed",
    )


def test_fold_layer_norm_matches_transformer_lens_and_removes_norms(gpt2):
    sd, cfg = gpt2
    ours = processing.fold_layer_norm(_copy(sd), cfg)
    theirs = ProcessWeights.fold_layer_norm(_copy(sd), cfg)
    _assert_same(ours, theirs, "fold_layer_norm")
    # TransformerLens leaves identity norms behind; we drop them (the model is LNPre).
    left = {k for k in theirs if k not in ours}
    assert left == {k for k in sd if ".ln" in k or k.startswith("ln_final")}
    for key in left:
        assert torch.equal(theirs[key], torch.full_like(theirs[key], float(key.endswith(".w"))))


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"refactor_factored_attn_matrices": True},
        {"fold_ln": False},
        {"center_writing_weights": False},
        {"fold_value_biases": False, "center_unembed": False},
    ],
    ids=["defaults", "refactor", "no_fold_ln", "no_center_writing", "no_bias_fold"],
)
def test_process_weights_matches_transformer_lens(gpt2, flags):
    sd, cfg = gpt2
    ours, new_cfg = processing.process_weights(_copy(sd), cfg, **flags)
    theirs = ProcessWeights.process_weights(_copy(sd), cfg, **flags)
    _assert_same(ours, theirs, f"process_weights({flags})")
    assert new_cfg.normalization_type == ("LN" if flags.get("fold_ln") is False else "LNPre")


def test_inputs_are_never_written_into(gpt2):
    sd, cfg = gpt2
    given = _copy(sd)
    originals, snapshot = dict(given), _copy(given)
    processing.process_weights(given, cfg, refactor_factored_attn_matrices=True)
    for key, tensor in originals.items():
        assert torch.equal(tensor, snapshot[key]), f"{key} was modified in place"
    # The converter gives W_Q/W_K/W_V as views of one checkpoint buffer: it stays intact.
    buffer = torch.randn(cfg.d_model, 3 * cfg.d_model)
    copy, views = buffer.clone(), _copy(sd)
    for i, x in enumerate("QKV"):
        W = buffer[:, i * cfg.d_model : (i + 1) * cfg.d_model]
        views[f"blocks.0.attn.W_{x}"] = W.unflatten(1, (cfg.n_heads, cfg.d_head)).permute(1, 0, 2)
    processing.process_weights(views, cfg, refactor_factored_attn_matrices=True)
    assert torch.equal(buffer, copy)


def _processed_model(model, **flags):
    sd, cfg = processing.process_weights(_copy(model.state_dict()), model.cfg, **flags)
    processed = HookedTransformer(cfg)
    processed.load_state_dict(sd)
    return processed.eval()


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"attn_only": True},
        {"normalization_type": "RMS"},
        {"n_key_value_heads": 2, "positional_embedding_type": "rotary"},
        {"gated_mlp": True, "act_fn": "silu", "normalization_type": "RMS"},
    ],
    ids=["gpt2_like", "attn_only", "rms", "gqa_rotary", "gated_rms"],
)
def test_processing_keeps_log_probs(variant):
    """Every applicable step, on random models of several shapes: same log-probabilities."""
    model = make_model(seed=3, **variant)
    layer_norm = model.cfg.normalization_type == "LN"
    flags = dict(
        center_writing_weights=layer_norm,
        refactor_factored_attn_matrices=not variant,
    )
    processed = _processed_model(model, **flags)
    tokens = random_tokens(2, 16, seed=4)
    with torch.no_grad():
        expected = model(tokens).log_softmax(-1)
        got = processed(tokens).log_softmax(-1)
    assert_close(got, expected, 1e-4, f"log-probs after processing {variant}")


def test_processing_in_reduced_precision_keeps_dtype(gpt2):
    sd, cfg = gpt2
    half = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    ours, _ = processing.process_weights(half, cfg)
    theirs = ProcessWeights.process_weights({k: v.to(torch.bfloat16) for k, v in sd.items()}, cfg)
    assert {v.dtype for v in ours.values()} == {torch.bfloat16}
    _assert_same(ours, theirs, "bf16 process_weights")


@pytest.mark.parametrize(
    ("variant", "flags", "message"),
    [
        ({"normalization_type": "RMS"}, {"center_writing_weights": True}, "needs LayerNorm"),
        ({"normalization_type": None}, {"fold_ln": True}, "no norms to fold"),
        (
            {"positional_embedding_type": "rotary"},
            {"refactor_factored_attn_matrices": True},
            "rotary",
        ),
        ({"norm_placement": "post"}, {"center_writing_weights": True}, "after sublayers"),
        ({"output_logits_soft_cap": 30.0}, {"center_unembed": True}, "soft-capped"),
        ({"n_key_value_heads": 2}, {"refactor_factored_attn_matrices": True}, "grouped-query"),
    ],
)
def test_steps_that_cannot_apply_raise(variant, flags, message):
    model = make_model(seed=0, **variant)
    sd = _copy(model.state_dict())
    before = _copy(sd)
    defaults = dict(
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    with pytest.raises(ConfigError, match=message):
        processing.process_weights(sd, model.cfg, **{**defaults, **flags})
    assert all(torch.equal(sd[k], before[k]) for k in before)  # refused before changing


def test_fold_without_biases_of_a_layer_norm_raises(gpt2):
    sd, cfg = gpt2
    with pytest.raises(ConfigError, match="drop the LayerNorm biases"):
        processing.fold_layer_norm(_copy(sd), cfg, fold_biases=False)


def test_missing_weight_is_named(gpt2):
    sd, cfg = gpt2
    sd = _copy(sd)
    del sd["blocks.1.attn.b_V"]
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.b_V"):
        processing.fold_value_biases(sd, cfg)
