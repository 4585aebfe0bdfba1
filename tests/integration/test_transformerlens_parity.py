"""Every hook activation equals TransformerLens 3.9.0's `HookedTransformer` on the same
weights: our random model's state dict is loaded into TransformerLens's model (the key
names are the same), both run `run_with_cache` on the same tokens, and every hook name
present on both sides is compared."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests._helpers import D_VOCAB, SMALL, make_model, max_abs_diff, one_cpu_thread, random_tokens

ATOL = 1e-5
TL_ONLY_BUFFERS = {"attn.IGNORE", "attn.mask", "attn.rotary_sin", "attn.rotary_cos"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def tokens():
    return random_tokens(2, 16, seed=3)


def transformerlens_pair(seed: int = 0, ours_only: dict | None = None, **flags):
    """Our random model and TransformerLens's model with the same config and weights
    (`ours_only`: config fields TransformerLens does not have)."""
    from transformer_lens import HookedTransformer as TLHookedTransformer
    from transformer_lens import HookedTransformerConfig

    ours = make_model(seed=seed, **flags, **(ours_only or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TLHookedTransformer(
            HookedTransformerConfig(**{**SMALL, "d_vocab": D_VOCAB, **flags})
        )
    result = theirs.load_state_dict(ours.state_dict(), strict=False)
    # TransformerLens keeps its causal mask, -inf constant and rotary tables as buffers;
    # nothing else may be missing, and we may have nothing it lacks.
    assert result.unexpected_keys == []
    missing = {k.split(".", 2)[-1] for k in result.missing_keys}
    assert {"attn.IGNORE", "attn.mask"} <= missing <= TL_ONLY_BUFFERS
    return ours, theirs.eval()


def _affine(norm, x):
    """Apply a norm's weight and bias (if it has them) to a normalized tensor."""
    if hasattr(norm, "w"):
        x = x * norm.w
    if hasattr(norm, "b"):
        x = x + norm.b
    return x


def _compare(ours, theirs, tokens, skip=lambda name: False):
    """Assert every common activation is equal; return (worst diff, names only ours,
    names only TransformerLens's)."""
    logits, cache = ours.run_with_cache(tokens)
    tl_logits, tl_cache = theirs.run_with_cache(tokens)
    worst = {"logits": max_abs_diff(logits, tl_logits)}
    common = set(cache.keys()) & set(tl_cache.keys())
    for name in sorted(common):
        if skip(name):
            continue
        theirs_value = tl_cache[name]
        worst[name] = max_abs_diff(cache[name], theirs_value)
    assert max(worst.values()) <= ATOL, {k: v for k, v in worst.items() if v > ATOL}
    return worst, set(cache.keys()) - common, set(tl_cache.keys()) - common


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"use_attn_result": True, "use_hook_mlp_in": True},
        {"attn_only": True},
        {"normalization_type": "LNPre"},
        {"normalization_type": "RMS"},
        {"normalization_type": None},
    ],
    ids=["LN", "attn_result+mlp_in", "attn_only", "LNPre", "RMS", "no_norm"],
)
@torch.no_grad()
def test_every_common_hook_equals_transformerlens(tokens, flags):
    ours, theirs = transformerlens_pair(seed=1, **flags)
    worst, only_ours, only_theirs = _compare(ours, theirs, tokens)
    assert only_ours == set()
    assert only_theirs == set()
    n_expected = len(ours.hook_dict)
    assert len(worst) == n_expected + 1  # every hook point of ours was compared, and logits
    if flags.get("use_attn_result"):
        assert "blocks.1.attn.hook_result" in worst and "blocks.0.hook_mlp_in" in worst


def test_hook_normalized_is_before_the_norm_weights_as_in_transformerlens(tokens):
    """With non-trivial LayerNorm weights, `hook_normalized` is the value before `w, b`
    (TransformerLens's meaning), and the norm's output is that value through `w, b`."""
    ours, theirs = transformerlens_pair(seed=1)
    _, cache = ours.run_with_cache(tokens)
    _, tl_cache = theirs.run_with_cache(tokens, names_filter=lambda n: n.endswith("normalized"))
    name = "blocks.0.ln1.hook_normalized"
    assert max_abs_diff(cache[name], tl_cache[name]) <= ATOL
    norm_output = ours.blocks[0].ln1(cache["blocks.0.hook_resid_pre"])
    assert max_abs_diff(norm_output, cache[name]) > 0.1  # the weights are not trivial
    assert max_abs_diff(norm_output, _affine(ours.blocks[0].ln1, cache[name])) <= ATOL


@pytest.mark.parametrize(
    "flags",
    [
        {"use_split_qkv_input": True},
        {"use_attn_in": True},
        {"use_split_qkv_input": True, "use_attn_in": True},
    ],
    ids=["split_qkv", "attn_in", "both"],
)
@torch.no_grad()
def test_attention_input_hooks_equal_transformerlens(tokens, flags):
    """`hook_q/k/v_input` and `hook_attn_in`: the residual before ln1, per head, and ln1
    applied to each (its hooks hold the last call's values), as in TransformerLens."""
    ours, theirs = transformerlens_pair(seed=2, **flags)
    worst, only_ours, only_theirs = _compare(ours, theirs, tokens)
    assert only_ours == only_theirs == set()
    assert len(worst) == len(ours.hook_dict) + 1
    assert ours.run_with_cache(tokens)[1]["blocks.0.ln1.hook_scale"].shape[2] == 4  # per head


@torch.no_grad()
def test_loss_equals_transformerlens(tokens):
    ours, theirs = transformerlens_pair(seed=3)
    assert (
        max_abs_diff(ours(tokens, return_type="loss"), theirs(tokens, return_type="loss")) <= 1e-6
    )
    per_token = ours(tokens, return_type="loss", loss_per_token=True)
    tl_per_token = theirs(tokens, return_type="loss", loss_per_token=True)
    assert max_abs_diff(per_token, tl_per_token) <= 1e-5


def test_gradients_equal_transformerlens(tokens):
    ours, theirs = transformerlens_pair(seed=4)

    def names(n):
        return n.endswith(
            ("hook_resid_pre", "hook_pattern", "hook_z", "mlp.hook_post", "hook_embed")
        )

    _, cache = ours.run_with_cache(tokens, return_type="loss", names_filter=names, incl_bwd=True)
    _, tl_cache = theirs.run_with_cache(
        tokens, return_type="loss", names_filter=names, incl_bwd=True
    )
    grads = [k for k in cache.keys() if k.endswith("_grad")]
    assert len(grads) == 9
    for name in grads:
        assert tl_cache[name].abs().max() > 0
        assert max_abs_diff(cache[name], tl_cache[name]) <= 1e-6, name
