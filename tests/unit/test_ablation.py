"""Ablation: hooks and context, loss change per token, and the head direct-effect survey.

Each result is checked against a plain hook written here from the definition.
"""

from __future__ import annotations

import pytest
import torch

from lookingglass import HookedTransformer, InputError, ModelConfig
from lookingglass.interventions import (
    Component,
    ablate,
    ablation_hooks,
    declare_metric,
    head_direct_effects,
    make_components,
    per_token_loss_change,
    top_loss_changes,
)

CONFIG = dict(n_layers=3, d_model=64, n_heads=4, d_head=16, d_vocab=100, n_ctx=32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(ModelConfig(**CONFIG, seed=1)).eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 100, (3, 8), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def data():
    return torch.randint(0, 100, (10, 8), generator=torch.Generator().manual_seed(1))


def logit_diff(logits):
    return (logits[:, -1, 3] - logits[:, -1, 7]).mean()


def with_hook(model, tokens, name, fn, **kwargs):
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, fn)], **kwargs)


# ------------------------------------------------------------------------ components
def test_component_constructors_name_hooks_and_indices():
    assert Component.head(1, 4) == Component("blocks.1.attn.hook_z", (slice(None), 4))
    assert Component.neuron(2, 7) == Component("blocks.2.mlp.hook_post", (slice(None), 7))
    assert Component.attn_layer(0).hook_name == "blocks.0.hook_attn_out"
    assert Component.mlp_layer(0) == Component("blocks.0.hook_mlp_out")
    made = make_components(
        heads=[(0, 1)],
        mlp_layers=[2],
        hooks=["blocks.1.hook_resid_mid", ("blocks.1.attn.hook_v", (0,))],
    )
    assert made == [
        Component.head(0, 1),
        Component.mlp_layer(2),
        Component("blocks.1.hook_resid_mid"),
        Component("blocks.1.attn.hook_v", (0,)),
    ]


# ---------------------------------------------------------------------------- methods
def test_zero_ablating_a_head_equals_zeroing_its_z(model, tokens):
    def zero_head(z, hook):
        z = z.clone()
        z[:, :, 2] = 0
        return z

    expected = with_hook(model, tokens, "blocks.1.attn.hook_z", zero_head)
    with torch.no_grad(), ablate(model, heads=[(1, 2)]):
        got = model(tokens)
    torch.testing.assert_close(got, expected)
    assert model.num_hooks() == 0


def test_mean_ablation_uses_the_position_wise_dataset_mean(model, tokens, data):
    _, cache = model.run_with_cache(data, names_filter="blocks.0.mlp.hook_post")
    mean = cache["blocks.0.mlp.hook_post"].mean(0)  # [pos, d_mlp]

    def mean_neuron(post, hook):
        post = post.clone()
        post[:, :, 5] = mean[:, 5]
        return post

    expected = with_hook(model, tokens, "blocks.0.mlp.hook_post", mean_neuron)
    with torch.no_grad(), ablate(model, neurons=[(0, 5)], method="mean", data=data.split(4)):
        got = model(tokens)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    overall = cache["blocks.0.mlp.hook_post"].mean((0, 1))  # [d_mlp]

    def overall_mean_neuron(post, hook):
        post = post.clone()
        post[:, :, 5] = overall[5]
        return post

    expected = with_hook(model, tokens[:, :5], "blocks.0.mlp.hook_post", overall_mean_neuron)
    with (
        torch.no_grad(),
        ablate(model, neurons=[(0, 5)], method="mean", data=data, per_position=False),
    ):
        got = model(tokens[:, :5])  # a shorter run than the data is fine
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_resample_ablation_takes_whole_rows_of_the_data_and_is_seeded(model, tokens, data):
    _, cache = model.run_with_cache(data, names_filter="blocks.2.hook_attn_out")
    data_rows = cache["blocks.2.hook_attn_out"]
    seen = {}

    def spy(attn_out, hook):
        seen["value"] = attn_out.clone()

    hooks = ablation_hooks(model, [Component.attn_layer(2)], "resample", data, seed=5)
    with torch.no_grad(), model.hooks(fwd_hooks=hooks + [("blocks.2.hook_attn_out", spy)]):
        first = model(tokens)
    for row in seen["value"]:
        assert min((row - d).abs().max().item() for d in data_rows) < 1e-6
    hooks = ablation_hooks(model, [Component.attn_layer(2)], "resample", data, seed=5)
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        torch.testing.assert_close(model(tokens), first)


def test_ablation_errors_are_clear(model, tokens, data):
    with pytest.raises(InputError, match="needs data"):
        ablation_hooks(model, [Component.head(0, 0)], "mean")
    # (a TypeError first when run with the jaxtyping/beartype checks on)
    with pytest.raises((InputError, TypeError), match="method"):
        ablation_hooks(model, [Component.head(0, 0)], "noise")
    with pytest.raises(Exception, match="Unknown hook name"):
        ablation_hooks(model, [Component("blocks.0.attn.hook_zz")])
    with (
        pytest.raises(InputError, match="positions"),
        ablate(model, heads=[(0, 0)], method="mean", data=data[:, :4]),
    ):
        model(tokens)
    assert model.num_hooks() == 0


def test_context_removes_hooks_when_the_block_raises(model, tokens):
    with pytest.raises(RuntimeError), ablate(model, heads=[(0, 1)], attn_layers=[1]):
        assert model.num_hooks() == 2
        raise RuntimeError("boom")
    assert model.num_hooks() == 0


# ------------------------------------------------------------------ loss per token
def test_per_token_loss_change_and_top_tokens(model, tokens):
    change = per_token_loss_change(model, tokens, Component.mlp_layer(1))
    assert change.shape == (3, 7)
    clean = model(tokens, return_type="loss", loss_per_token=True)
    with ablate(model, mlp_layers=[1]):
        ablated = model(tokens, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(change, (ablated - clean).detach())

    top = top_loss_changes(model, tokens, change, k=4)
    assert [t.change for t in top] == sorted(change.flatten().tolist(), reverse=True)[:4]
    for t in top:
        assert t.target == tokens[t.batch, t.pos + 1]
        assert change[t.batch, t.pos].item() == t.change
    assert (
        top_loss_changes(model, tokens, change, k=1, largest=False)[0].change == change.min().item()
    )


def test_ablating_a_head_with_no_output_weights_changes_no_loss(tokens):
    model = HookedTransformer(ModelConfig(**CONFIG, seed=2)).eval()
    with torch.no_grad():
        model.blocks[1].attn.W_O[3] = 0
    change = per_token_loss_change(model, tokens, Component.head(1, 3), method="mean")
    assert change.abs().max().item() < 1e-6


# ------------------------------------------------------------ direct-effect survey
def direct_effect_by_hooks(model, tokens, layer, head, metric, freeze, reference=None):
    """One head's direct path ablated with two hooks: take its output out of the final
    residual stream (replacing it by `reference`), optionally freezing the final scale."""
    _, cache = model.run_with_cache(tokens)
    out = cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ model.W_O[layer, head]
    ref = 0 if reference is None else reference[:, :, head] @ model.W_O[layer, head]
    hooks = [(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", lambda r, hook: r - out + ref)]
    if freeze:
        hooks.append(("ln_final.hook_scale", lambda s, hook: cache["ln_final.hook_scale"]))
    with torch.no_grad():
        ablated = metric(model.run_with_hooks(tokens, fwd_hooks=hooks))
        return (ablated - metric(model(tokens))).item()


@pytest.mark.parametrize("freeze", [True, False])
def test_head_direct_effects_match_hooks(model, tokens, data, freeze):
    effects = head_direct_effects(model, tokens, logit_diff, freeze_ln_scale=freeze)
    assert effects.shape == (3, 4)
    for layer, head in [(0, 0), (1, 3), (2, 1)]:
        expected = direct_effect_by_hooks(model, tokens, layer, head, logit_diff, freeze)
        assert effects[layer, head].item() == pytest.approx(expected, abs=1e-5)

    _, corrupted = model.run_with_cache(data[:3], names_filter="blocks.1.attn.hook_z")
    effects = head_direct_effects(
        model,
        tokens,
        logit_diff,
        method="corrupted",
        corrupted_tokens=data[:3],
        freeze_ln_scale=freeze,
    )
    expected = direct_effect_by_hooks(
        model, tokens, 1, 2, logit_diff, freeze, corrupted["blocks.1.attn.hook_z"]
    )
    assert effects[1, 2].item() == pytest.approx(expected, abs=1e-5)


def test_head_direct_effects_loss_mean_and_declared_metrics(model, tokens, data):
    def loss(logits):
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()
        )

    torch.testing.assert_close(
        head_direct_effects(model, tokens),
        head_direct_effects(model, tokens, loss, batch_size=5),
        atol=1e-5,
        rtol=0,
    )
    by_mean = head_direct_effects(model, tokens, logit_diff, method="mean", data=data)
    _, cache = model.run_with_cache(data, names_filter="blocks.2.attn.hook_z")
    mean_z = cache["blocks.2.attn.hook_z"].mean(0, keepdim=True).expand(3, -1, -1, -1)
    expected = direct_effect_by_hooks(model, tokens, 2, 0, logit_diff, True, mean_z)
    assert by_mean[2, 0].item() == pytest.approx(expected, abs=1e-5)
    last = declare_metric(logit_diff, positions=[-1])
    torch.testing.assert_close(
        head_direct_effects(model, tokens, last),
        head_direct_effects(model, tokens, logit_diff),
        atol=1e-5,
        rtol=0,
    )


def test_last_layer_direct_effect_is_the_total_effect_with_nothing_after_it(tokens):
    model = HookedTransformer(
        ModelConfig(**CONFIG, seed=4, normalization_type=None, attn_only=True)
    )
    effects = head_direct_effects(model, tokens, logit_diff)
    for head in range(4):
        with torch.no_grad():
            clean = logit_diff(model(tokens))
            with ablate(model, heads=[(2, head)]):
                total = logit_diff(model(tokens)) - clean
        assert effects[2, head].item() == pytest.approx(total.item(), abs=1e-5)
