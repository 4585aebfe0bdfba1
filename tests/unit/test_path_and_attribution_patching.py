"""Path patching and attribution patching.

Path patching is checked against a plain two-run implementation written here with hooks
(the algorithm of Wang et al. 2022), and against the direct-effect survey; attribution
patching against actual activation and path patching: exact where the metric is linear
in the activation, highly correlated for a small perturbation.
"""

from __future__ import annotations

import pytest
import torch

from lookingglass import HookedTransformer, InputError, ModelConfig, patching
from lookingglass.interventions import (
    attribution_patching,
    get_attr_patch_head_edges,
    head_direct_effects,
    path_patch,
    path_patch_sweep,
)

# gelu_new: a smooth activation, so first-order (attribution) estimates track patching.
CONFIG = dict(
    n_layers=3, d_model=64, n_heads=4, d_head=16, d_vocab=100, n_ctx=32, act_fn="gelu_new"
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(ModelConfig(**CONFIG, seed=5)).eval()


@pytest.fixture(scope="module")
def runs():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 100, (2, 7), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2:4] = torch.randint(0, 100, (2, 2), generator=gen)
    return clean, corrupted


def logit_diff(logits):
    return (logits[:, -1, 3] - logits[:, -1, 7]).mean()


def naive_path_patch(
    model, clean, corrupted, senders, receivers, metric, freeze_mlps=True, positions=None
):
    """Wang et al.'s two runs, with hooks. `receivers`: (layer, head, "q"/"k"/"v")."""
    _, clean_cache = model.run_with_cache(clean)
    _, corrupted_cache = model.run_with_cache(corrupted)
    where = slice(None) if positions is None else list(positions)

    def freeze_z(z, hook):
        layer = int(hook.name.split(".")[1])
        out = clean_cache[hook.name].clone()
        for sender_layer, head in senders:
            if sender_layer == layer:
                out[:, :, head] = corrupted_cache[hook.name][:, :, head]
        return out

    recorded = {}

    def record(x, hook):
        recorded[hook.name] = x.clone()

    names = {f"blocks.{layer}.attn.hook_{c}" for layer, _, c in receivers}
    step1 = [(lambda n: n.endswith("attn.hook_z"), freeze_z)] + [(n, record) for n in names]
    if freeze_mlps:
        step1.append((lambda n: n.endswith("hook_mlp_out"), lambda x, hook: clean_cache[hook.name]))
    with torch.no_grad():
        model.run_with_hooks(clean, fwd_hooks=step1)

    def put(x, hook):
        x = x.clone()
        for layer, head, c in receivers:
            if hook.name == f"blocks.{layer}.attn.hook_{c}":
                x[:, where, head] = recorded[hook.name][:, where, head]
        return x

    with torch.no_grad():
        return metric(model.run_with_hooks(clean, fwd_hooks=[(n, put) for n in names])).item()


# ------------------------------------------------------------------------ path patching
def test_no_senders_changes_nothing(model, runs):
    clean, corrupted = runs
    clean_value = logit_diff(model(clean)).item()
    for receivers in ("resid_final", [(2, 1)], [(1, 0, "k"), "logits"]):
        assert path_patch(model, clean, corrupted, [], receivers, logit_diff) == pytest.approx(
            clean_value, abs=1e-6
        )


@pytest.mark.parametrize("freeze_mlps", [True, False])
def test_path_patch_matches_the_two_run_algorithm(model, runs, freeze_mlps):
    clean, corrupted = runs
    cases = [
        ([(0, 1)], [(2, 3, "q")], None),
        ([(0, 2), (1, 0)], [(2, 0, "k"), (2, 0, "v"), (1, 3, "q")], None),
        ([(0, 3)], [(1, 1, "v"), (2, 2, "q")], [4, 6]),
    ]
    for senders, receivers, positions in cases:
        expected = naive_path_patch(
            model, clean, corrupted, senders, receivers, logit_diff, freeze_mlps, positions
        )
        got = path_patch(
            model,
            clean,
            corrupted,
            senders,
            receivers,
            logit_diff,
            freeze_mlps=freeze_mlps,
            receiver_positions=positions,
        )
        assert got == pytest.approx(expected, abs=1e-5)


def test_sweep_equals_single_path_patches_batched_or_not(model, runs):
    clean, corrupted = runs
    receivers = [(2, 1), (2, 3, "qk")]
    sweep = path_patch_sweep(model, clean, corrupted, receivers, logit_diff)
    assert sweep.shape == (3, 4)
    one_by_one = path_patch_sweep(model, clean, corrupted, receivers, logit_diff, batch_size=1)
    torch.testing.assert_close(sweep, one_by_one, atol=1e-5, rtol=0)
    as_heads = [(2, 1, "q"), (2, 1, "k"), (2, 1, "v"), (2, 3, "q"), (2, 3, "k")]
    for layer, head in [(0, 0), (1, 2)]:
        expected = naive_path_patch(model, clean, corrupted, [(layer, head)], as_heads, logit_diff)
        assert sweep[layer, head].item() == pytest.approx(expected, abs=1e-5)
    # Layer-2 senders cannot reach layer-2 receivers: the clean metric.
    torch.testing.assert_close(
        sweep[2], torch.full((4,), logit_diff(model(clean)).item()), atol=1e-6, rtol=0
    )


def test_path_patch_to_final_residual_equals_direct_effects(model, runs):
    clean, corrupted = runs
    sweep = path_patch_sweep(model, clean, corrupted, "resid_final", logit_diff)
    direct = head_direct_effects(
        model,
        clean,
        logit_diff,
        method="corrupted",
        corrupted_tokens=corrupted,
        freeze_ln_scale=False,
    )
    clean_value = logit_diff(model(clean)).item()
    torch.testing.assert_close(sweep - clean_value, direct, atol=1e-5, rtol=0)


def test_path_patching_errors(model, runs):
    clean, corrupted = runs
    with pytest.raises(InputError, match="out of range"):
        path_patch(model, clean, corrupted, [(3, 0)], "resid_final", logit_diff)
    with pytest.raises(InputError, match="receiver"):
        path_patch(model, clean, corrupted, [(0, 0)], "resid_mid", logit_diff)
    with pytest.raises((InputError, TypeError)):  # TypeError: under the jaxtyping checks
        path_patch(model, clean, corrupted[:, :5], [(0, 0)], "resid_final", logit_diff)


# ----------------------------------------------------------------- attribution patching
@pytest.fixture(scope="module")
def linear_model():
    """No final norm and no MLP: the logits are linear in the last layer's head outputs."""
    return HookedTransformer(ModelConfig(**CONFIG, seed=6, attn_only=True, normalization_type=None))


def test_attribution_is_exact_for_a_metric_linear_in_the_activation(linear_model, runs):
    clean, corrupted = runs
    _, clean_cache = linear_model.run_with_cache(clean)
    base = logit_diff(linear_model(corrupted)).item()
    for name in ("attn_head_out_by_pos", "attn_head_out_all_pos", "attn_out"):
        estimate = getattr(attribution_patching, "get_attr_patch_" + name)(
            linear_model, corrupted, clean_cache, logit_diff
        )
        actual = (
            getattr(patching, "get_act_patch_" + name)(
                linear_model, corrupted, clean_cache, logit_diff
            )
            - base
        )
        assert estimate.shape == actual.shape
        torch.testing.assert_close(estimate[-1], actual[-1], atol=1e-5, rtol=0)  # last layer
    edges = get_attr_patch_head_edges(linear_model, corrupted, clean_cache, logit_diff)
    to_final = path_patch_sweep(linear_model, corrupted, clean, "resid_final", logit_diff) - base
    torch.testing.assert_close(edges.head_to_final, to_final, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def nearby_runs(model):
    """Corrupted tokens whose embeddings are a small step from the clean ones: tokens
    90..99 are given the embeddings of tokens 0..9 plus small noise."""
    near = HookedTransformer(model.cfg).eval()
    near.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        near.W_E[90:] = near.W_E[:10] + 0.01 * torch.randn(10, 64, generator=gen)
    clean = torch.randint(0, 10, (2, 7), generator=gen)
    corrupted = clean + 90
    return near, clean, corrupted


@pytest.mark.parametrize(
    "name",
    [
        "resid_pre",
        "resid_mid",
        "attn_out",
        "mlp_out",
        "attn_head_out_by_pos",
        "attn_head_v_all_pos",
        "attn_head_pattern_all_pos",
    ],
)
def test_attribution_tracks_activation_patching_for_small_perturbations(nearby_runs, name):
    model, clean, corrupted = nearby_runs
    _, clean_cache = model.run_with_cache(clean)
    estimate = getattr(attribution_patching, "get_attr_patch_" + name)(
        model, corrupted, clean_cache, logit_diff
    )
    actual = getattr(patching, "get_act_patch_" + name)(model, corrupted, clean_cache, logit_diff)
    actual = actual - logit_diff(model(corrupted)).item()
    correlation = torch.corrcoef(torch.stack([estimate.flatten(), actual.flatten()]))[0, 1]
    assert correlation > 0.9


def test_edge_attribution_tracks_path_patching(nearby_runs):
    model, clean, corrupted = nearby_runs
    _, corrupted_cache = model.run_with_cache(corrupted)
    edges = get_attr_patch_head_edges(model, clean, corrupted_cache, logit_diff)
    assert edges.head_to_head.shape == (3, 4, 3, 4, 3)
    assert edges.head_to_head[:, :, 0].abs().max() == 0  # nothing is upstream of layer 0
    clean_value = logit_diff(model(clean)).item()
    for receivers, receiver_edges in [
        ([(2, h) for h in range(4)], edges.head_to_head[:2, :, 2].sum((-1, -2))),
        (
            [(1, 0, "q"), (1, 2, "v")],
            edges.head_to_head[:1, :, 1, 0, 0] + edges.head_to_head[:1, :, 1, 2, 2],
        ),
        ("resid_final", edges.head_to_final),
    ]:
        actual = path_patch_sweep(model, clean, corrupted, receivers, logit_diff) - clean_value
        actual = actual[: receiver_edges.shape[0]].flatten()
        correlation = torch.corrcoef(torch.stack([receiver_edges.flatten(), actual]))[0, 1]
        assert correlation > 0.9, receivers
