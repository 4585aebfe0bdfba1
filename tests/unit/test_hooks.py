"""The hook machinery: what hooks change, that they never leak, gradients, caching.

References are computed independently: ablations by hand from cached activations and the
weights, gradients with `torch.autograd.grad`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lookingglass import ActivationCache, HookError, InputError
from lookingglass.hooks import HookPoint
from tests._helpers import D_VOCAB, assert_close, make_model, one_cpu_thread, random_tokens

BATCH, POS = 2, 12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def model():
    return make_model(seed=0)


@pytest.fixture(scope="module")
def tokens():
    return random_tokens(BATCH, POS, seed=1)


@pytest.fixture(autouse=True)
def no_hooks_left(model):
    """Every test must leave the shared model without hooks."""
    yield
    assert model.num_hooks() == 0
    model.reset_hooks(including_permanent=True)


def _zero_head(head: int):
    def ablate(z, hook):
        z[:, :, head] = 0.0
        return z

    return ablate


# ----------------------------------------------------------------- what hooks change
def test_zero_ablating_a_head_matches_manual_recomputation(model, tokens):
    _, clean = model.run_with_cache(tokens)
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", _zero_head(3))]):
        ablated_logits, ablated = model.run_with_cache(tokens)

    # Manual: layer 0's attention output without head 3, from the clean z and W_O ...
    attn = model.blocks[0].attn
    z = clean["blocks.0.attn.hook_z"].clone()
    z[:, :, 3] = 0.0
    attn_out = torch.einsum("bphe,hed->bpd", z, attn.W_O) + attn.b_O
    resid_mid = clean["blocks.0.hook_resid_pre"] + attn_out
    # ... layer 0's MLP written out from its weights ...
    ln2, mlp = model.blocks[0].ln2, model.blocks[0].mlp
    normalized = F.layer_norm(resid_mid, (model.cfg.d_model,), ln2.w, ln2.b, model.cfg.eps)
    post = F.gelu(normalized @ mlp.W_in + mlp.b_in, approximate="tanh")
    resid_post = resid_mid + post @ mlp.W_out + mlp.b_out
    # ... and the rest of the model from layer 1 on.
    expected = model(resid_post, start_at_layer=1)

    assert_close(ablated["blocks.0.hook_attn_out"], attn_out, 1e-5, "attn_out")
    assert_close(ablated_logits, expected, 1e-5, "logits")
    clean_logits = model(tokens)
    assert (ablated_logits - clean_logits).abs().max() > 1e-2, "the ablation changed nothing"


def test_zero_ablating_a_head_leaves_the_other_heads_untouched(model, tokens):
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        # The same names_filter both times, so both runs take the same kernels.
        in_layer = f"blocks.{layer}."
        _, clean = model.run_with_cache(tokens, names_filter=lambda n, s=in_layer: s in n)
        with model.hooks(fwd_hooks=[(name, _zero_head(3))]):
            _, ablated = model.run_with_cache(tokens, names_filter=lambda n, s=in_layer: s in n)
        assert torch.equal(ablated[name][:, :, :3], clean[name][:, :, :3])
        assert torch.all(ablated[name][:, :, 3] == 0)
        for act in ("hook_q", "hook_k", "hook_v", "hook_pattern"):
            key = f"blocks.{layer}.attn.{act}"
            assert torch.equal(ablated[key], clean[key]), key


def test_hook_returning_none_keeps_value_and_returning_a_tensor_replaces_it(model, tokens):
    clean = model(tokens)
    seen = []

    def look(x, hook):
        seen.append(hook.name)

    def double(x, hook):
        return x * 2

    def halve_in_place(x, hook):
        x.mul_(0.5)

    name = "blocks.1.hook_resid_pre"
    assert torch.equal(model.run_with_hooks(tokens, fwd_hooks=[(name, look)]), clean)
    assert seen == [name]
    doubled = model.run_with_hooks(tokens, fwd_hooks=[(name, double)])
    expected = model(2 * model(tokens, stop_at_layer=1), start_at_layer=1)
    assert_close(doubled, expected, 1e-5, "doubled")
    halved = model.run_with_hooks(tokens, fwd_hooks=[(name, halve_in_place)])
    expected = model(0.5 * model(tokens, stop_at_layer=1), start_at_layer=1)
    assert_close(halved, expected, 1e-5, "in-place edit with None returned")


def test_hooks_on_one_point_run_in_order_and_prepend_goes_first(model, tokens):
    order = []
    name = "blocks.0.hook_resid_post"

    def make(tag):
        def fn(x, hook):
            order.append(tag)

        return fn

    model.add_hook(name, make("a"))
    model.add_hook(name, make("b"))
    model.add_hook(name, make("first"), prepend=True)
    model(tokens)
    model.reset_hooks()
    assert order == ["first", "a", "b"]


def test_predicate_names_in_fwd_hooks(model, tokens):
    seen = []
    model.run_with_hooks(
        tokens,
        fwd_hooks=[
            (lambda n: n.endswith("hook_resid_pre"), lambda x, hook: seen.append(hook.name))
        ],
    )
    assert seen == [f"blocks.{i}.hook_resid_pre" for i in range(model.cfg.n_layers)]


def test_unhooked_hook_point_returns_its_input_object():
    point = HookPoint()
    x = torch.randn(2, 3)
    assert point(x) is x


# ------------------------------------------------------------------- no hook leaks
def _raise(x, hook):
    raise RuntimeError("boom")


def test_a_thousand_raising_runs_leave_no_hooks(model, tokens):
    short = tokens[:, :4]
    late = "blocks.1.hook_resid_post"
    bad = torch.full_like(short, D_VOCAB)  # out of range: forward raises after hooks attach
    for i in range(1000):
        name = late if i % 100 == 0 else "hook_embed"
        with pytest.raises(RuntimeError, match="boom"):
            model.run_with_hooks(
                short, fwd_hooks=[("hook_embed", lambda x, hook: None), (name, _raise)]
            )
        with pytest.raises(RuntimeError, match="boom"):
            with model.hooks(fwd_hooks=[(name, _raise)], bwd_hooks=[(late, _raise)]):
                model(short)
        with pytest.raises(InputError):
            model.run_with_cache(bad, names_filter="hook_embed")
        assert model.num_hooks() == 0, f"hooks leaked after run {i}"
    # run_with_cache where a hook raises midway (caching hooks already fired) ...
    model.add_perma_hook(late, _raise)
    for _ in range(100):
        with pytest.raises(RuntimeError, match="boom"):
            model.run_with_cache(short)
    assert model.num_hooks() == 1  # only the permanent hook
    model.reset_hooks(including_permanent=True)
    # ... and where back-propagating a non-scalar output raises after the forward pass.
    for _ in range(100):
        with pytest.raises(HookError, match="scalar"):
            model.run_with_cache(short, incl_bwd=True)
    assert model.num_hooks() == 0


def test_unknown_name_partway_through_a_hook_list_leaves_no_hooks(model, tokens):
    fns = [("hook_embed", lambda x, hook: None), ("blocks.0.hook_nope", lambda x, hook: None)]
    with pytest.raises(HookError):
        with model.hooks(fwd_hooks=fns):
            pass
    with pytest.raises(HookError):
        model.run_with_hooks(tokens, fwd_hooks=fns)
    with pytest.raises(HookError):
        model.run_with_cache(tokens, names_filter=["hook_embed", "blocks.0.hook_nope"])
    assert model.num_hooks() == 0


@pytest.mark.parametrize(
    "api",
    ["add_hook", "hooks", "run_with_hooks", "run_with_cache"],
)
def test_unknown_hook_name_suggests_the_close_name(model, tokens, api):
    typo, right = "blocks.0.attn.hook_patern", "blocks.0.attn.hook_pattern"
    with pytest.raises(HookError) as info:
        if api == "add_hook":
            model.add_hook(typo, lambda x, hook: None)
        elif api == "hooks":
            with model.hooks(fwd_hooks=[(typo, lambda x, hook: None)]):
                pass
        elif api == "run_with_hooks":
            model.run_with_hooks(tokens, fwd_hooks=[(typo, lambda x, hook: None)])
        else:
            model.run_with_cache(tokens, names_filter=typo)
    message = str(info.value)
    assert typo in message and right in message


def test_hook_returning_wrong_shape_raises_naming_hook_and_shapes(model, tokens):
    def chop(z, hook):
        return z[:, :, :2]

    with pytest.raises(HookError) as info:
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", chop)])
    message = str(info.value)
    assert "blocks.0.attn.hook_z" in message
    assert str((BATCH, POS, 4, 16)) in message and str((BATCH, POS, 2, 16)) in message
    assert "chop" in message
    assert model.num_hooks() == 0


def test_hook_returning_wrong_dtype_or_type_raises(model, tokens):
    def to_double(x, hook):
        return x.double()

    def to_list(x, hook):
        return x.tolist()

    with pytest.raises(HookError) as info:
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.mlp.hook_post", to_double)])
    message = str(info.value)
    assert "blocks.1.mlp.hook_post" in message and "float64" in message and "float32" in message
    with pytest.raises(HookError, match="blocks.0.hook_resid_pre.*list"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_pre", to_list)])
    assert model.num_hooks() == 0


def test_backward_hook_returning_wrong_shape_raises(model, tokens):
    name = "blocks.0.hook_resid_mid"
    with model.hooks(bwd_hooks=[(name, lambda g, hook: g[:, 1:])]):
        loss = model(tokens, return_type="loss")
        with pytest.raises(HookError, match=name):
            loss.backward()
    assert model.num_hooks() == 0


# ---------------------------------------------------------------- backward hooks
BWD_NAMES = [
    "hook_embed",
    "blocks.0.attn.hook_pattern",
    "blocks.0.attn.hook_v",
    "blocks.0.hook_resid_mid",
    "blocks.1.mlp.hook_post",
    "blocks.1.attn.hook_z",
    "ln_final.hook_normalized",
]


@pytest.mark.parametrize("name", BWD_NAMES)
def test_backward_hook_sees_the_autograd_gradient(model, tokens, name):
    kept, grads = {}, {}

    def keep(x, hook):
        kept[hook.name] = x

    def grab(g, hook):
        grads[hook.name] = g.clone()

    with model.hooks(fwd_hooks=[(name, keep)], bwd_hooks=[(name, grab)]):
        loss = model(tokens, return_type="loss")
        (expected,) = torch.autograd.grad(loss, kept[name], retain_graph=True)
        loss.backward()
    model.zero_grad(set_to_none=True)
    assert expected.abs().max() > 0
    assert_close(grads[name], expected, 1e-7, name)


def test_backward_hook_can_replace_the_gradient(model, tokens):
    name = "blocks.1.hook_resid_pre"
    kept = {}
    with model.hooks(
        fwd_hooks=[("hook_embed", lambda x, hook: kept.setdefault("e", x))],
        bwd_hooks=[(name, lambda g, hook: torch.zeros_like(g))],
    ):
        loss = model(tokens, return_type="loss")
        (embed_grad,) = torch.autograd.grad(loss, kept["e"])
    # Every path from hook_embed to the loss passes layer 1's residual input.
    assert torch.all(embed_grad == 0)


def test_removed_backward_hook_does_not_fire_after_the_context(model, tokens):
    calls = []
    name = "blocks.0.hook_resid_post"
    with model.hooks(bwd_hooks=[(name, lambda g, hook: calls.append(1))]):
        loss = model(tokens, return_type="loss")
    loss.backward()
    assert calls == []
    with model.hooks(bwd_hooks=[(name, lambda g, hook: calls.append(1))]):
        model(tokens, return_type="loss").backward()
    assert calls == [1]
    model.zero_grad(set_to_none=True)


def test_run_with_hooks_warns_that_backward_hooks_end_with_it(model, tokens):
    with pytest.warns(UserWarning, match="backward"):
        model.run_with_hooks(tokens, bwd_hooks=[("hook_embed", lambda g, hook: None)])


# ------------------------------------------------------------------ permanent hooks
def test_permanent_hooks_survive_reset_and_contexts(model, tokens):
    clean = model(tokens)
    name = "blocks.0.hook_attn_out"
    model.add_perma_hook(name, lambda x, hook: torch.zeros_like(x))
    ablated = model(tokens)
    assert not torch.allclose(ablated, clean)
    model.add_hook("hook_embed", lambda x, hook: None)
    assert model.num_hooks() == 2
    model.reset_hooks()
    assert model.num_hooks() == 1
    with model.hooks(fwd_hooks=[("hook_embed", lambda x, hook: None)]):
        pass
    model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda x, hook: None)])
    model.run_with_cache(tokens)
    assert model.num_hooks() == 1
    assert torch.equal(model(tokens), ablated)
    model.reset_hooks(including_permanent=True)
    assert model.num_hooks() == 0
    assert torch.equal(model(tokens), clean)


# ---------------------------------------------------------------------- caching
def test_run_with_cache_caches_everything_by_default(model, tokens):
    logits, cache = model.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache)
    assert set(cache.keys()) == set(model.hook_dict)
    assert_close(logits, model(tokens), 1e-5, "logits")  # explicit vs fused kernels
    assert_close(cache["hook_embed"], model.W_E[tokens], 0, "hook_embed")
    assert torch.equal(cache["pattern", 1], cache["blocks.1.attn.hook_pattern"])
    assert torch.equal(cache["resid_post", -1], cache["blocks.1.hook_resid_post"])
    assert not cache["blocks.0.hook_resid_pre"].requires_grad


@pytest.mark.parametrize(
    "names_filter, expected",
    [
        ("blocks.0.attn.hook_pattern", {"blocks.0.attn.hook_pattern"}),
        (["hook_embed", "blocks.1.hook_mlp_out"], {"hook_embed", "blocks.1.hook_mlp_out"}),
        (lambda n: n.endswith("hook_z"), {"blocks.0.attn.hook_z", "blocks.1.attn.hook_z"}),
    ],
    ids=["str", "list", "callable"],
)
def test_names_filter_caches_exactly_those(model, tokens, names_filter, expected):
    _, full = model.run_with_cache(tokens)
    _, cache = model.run_with_cache(tokens, names_filter=names_filter)
    assert set(cache.keys()) == expected
    for name in expected:
        assert_close(cache[name], full[name], 1e-5, name)


def test_remove_batch_dim_and_device(model, tokens):
    one = tokens[:1]
    _, full = model.run_with_cache(one)
    _, cache = model.run_with_cache(one, remove_batch_dim=True)
    assert set(cache.keys()) == set(full.keys())
    for name in full.keys():
        assert cache[name].shape == full[name].shape[1:], name
        assert torch.equal(cache[name], full[name][0]), name
    _, on_meta = model.run_with_cache(one, device="meta", names_filter=lambda n: "resid" in n)
    assert len(on_meta) == 6 and all(v.device.type == "meta" for v in on_meta.values())


def test_pos_slice_keeps_those_positions(model, tokens):
    _, full = model.run_with_cache(tokens)
    _, last = model.run_with_cache(tokens, pos_slice=-1)
    assert torch.equal(last["blocks.0.hook_resid_post"], full["blocks.0.hook_resid_post"][:, -1:])
    assert torch.equal(
        last["blocks.0.attn.hook_pattern"], full["blocks.0.attn.hook_pattern"][:, :, -1:]
    )
    _, some = model.run_with_cache(tokens, pos_slice=slice(2, 5))
    assert torch.equal(some["blocks.1.attn.hook_q"], full["blocks.1.attn.hook_q"][:, 2:5])


def test_incl_bwd_caches_gradients_equal_to_autograd(model, tokens):
    names = [
        "hook_pos_embed",
        "blocks.0.attn.hook_pattern",
        "blocks.1.hook_resid_mid",
        "blocks.1.mlp.hook_pre",
    ]
    kept = {}
    with model.hooks(
        fwd_hooks=[(n, lambda x, hook: kept.__setitem__(hook.name, x)) for n in names]
    ):
        loss = model(tokens, return_type="loss")
        expected = dict(
            zip(names, torch.autograd.grad(loss, [kept[n] for n in names]), strict=True)
        )
    loss_out, cache = model.run_with_cache(
        tokens, return_type="loss", names_filter=names, incl_bwd=True
    )
    model.zero_grad(set_to_none=True)
    assert set(cache.keys()) == set(names) | {f"{n}_grad" for n in names}
    assert_close(loss_out.detach(), loss.detach(), 1e-6, "loss")
    for name in names:
        assert expected[name].abs().max() > 0
        assert_close(cache[f"{name}_grad"], expected[name], 1e-7, name)
