"""The attention-input hook points mean exactly what they mean in TransformerLens 3.9.

EAP-IG, ACDC and SAELens treat `hook_q/k/v_input` and `hook_attn_in` as the block's
residual input *before* ln1, copied per head, and sum upstream writes into them. Here,
on identical weights (GPT-2-like and a Llama-like grouped-query config), every hook
activation equals TransformerLens's, patches of one head's input act as in
TransformerLens, our `hook_q/k/v_normalized_input` equal TransformerLens's
`blocks.i.ln1(hook_q_input)`, and logits do not depend on which hooks are attached.
"""

from __future__ import annotations

import pytest
import torch

from tests._helpers import max_abs_diff, one_cpu_thread, random_tokens
from tests.integration.test_transformerlens_parity import transformerlens_pair

ATOL = 1e-5
GPT2_LIKE: dict = {}
LLAMA_LIKE = dict(
    normalization_type="RMS",
    positional_embedding_type="rotary",
    gated_mlp=True,
    act_fn="silu",
    n_key_value_heads=2,
)
ARCHITECTURES = [GPT2_LIKE, LLAMA_LIKE]
IDS = ["gpt2-like", "llama-like-gqa"]
INPUT_HOOKS = dict(use_split_qkv_input=True, use_attn_in=True)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def tokens():
    return random_tokens(2, 12, seed=11)


def _pair(seed: int, arch: dict, **flags):
    """`transformerlens_pair`, with the gated MLP's `b_in` zeroed: TransformerLens adds it
    after the gate product, Llama (and we) before; real Llama checkpoints have none."""
    ours, theirs = transformerlens_pair(seed=seed, **arch, **flags)
    if arch.get("gated_mlp"):
        with torch.no_grad():
            for model in (ours, theirs):
                for block in model.blocks:
                    block.mlp.b_in.zero_()
    return ours, theirs


def _caches(ours, theirs, tokens, **kwargs):
    logits, cache = ours.run_with_cache(tokens, **kwargs)
    tl_logits, tl_cache = theirs.run_with_cache(tokens, **kwargs)
    return logits, cache, tl_logits, tl_cache


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=IDS)
@torch.no_grad()
def test_every_hook_equals_transformerlens_with_input_hooks_on(tokens, arch):
    ours, theirs = _pair(21, arch, **INPUT_HOOKS)
    logits, cache, tl_logits, tl_cache = _caches(ours, theirs, tokens)
    assert set(cache.keys()) == set(tl_cache.keys())
    n_kv = arch.get("n_key_value_heads", 4)
    expected_heads = {"hook_attn_in": 4, "hook_q_input": 4, "hook_k_input": n_kv}
    expected_heads["hook_v_input"] = n_kv
    for layer in range(2):
        resid = cache[f"blocks.{layer}.hook_resid_pre"]
        for leaf, heads in expected_heads.items():
            value = cache[f"blocks.{layer}.{leaf}"]
            assert value.shape == (*resid.shape[:2], heads, resid.shape[2]), leaf
            assert torch.equal(value, resid[:, :, None].expand_as(value)), leaf
        # ln1 ran per input; like TransformerLens's cache, ours holds the value input's.
        assert cache[f"blocks.{layer}.ln1.hook_scale"].shape == (*resid.shape[:2], n_kv, 1)
    diffs = {name: max_abs_diff(cache[name], tl_cache[name]) for name in tl_cache.keys()}
    diffs["logits"] = max_abs_diff(logits, tl_logits)
    assert "unembed.hook_in" in diffs and "unembed.hook_out" in diffs
    assert torch.equal(cache["unembed.hook_out"], logits)
    assert max(diffs.values()) <= ATOL, {k: v for k, v in diffs.items() if v > ATOL}


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=IDS)
@torch.no_grad()
def test_patching_one_heads_key_input_acts_as_in_transformerlens(tokens, arch):
    """Adding a vector to head 1's `hook_k_input` changes that key head's keys only, and
    the patched model's logits equal TransformerLens's under the same patch."""
    ours, theirs = _pair(22, arch, use_split_qkv_input=True)
    head = 1
    delta = torch.randn(64, generator=torch.Generator().manual_seed(5))

    def patch(x, hook):
        x = x.clone()
        x[:, :, head] += delta
        return x

    hooks = [("blocks.0.hook_k_input", patch)]
    names = ["blocks.0.attn.hook_k", "blocks.0.attn.hook_q", "blocks.0.attn.hook_v"]
    _, clean = ours.run_with_cache(tokens, names_filter=names)
    with ours.hooks(fwd_hooks=hooks):
        logits, patched = ours.run_with_cache(tokens, names_filter=names)
    with theirs.hooks(fwd_hooks=hooks):
        tl_logits, tl_patched = theirs.run_with_cache(tokens, names_filter=names)
    k, k_clean = patched["blocks.0.attn.hook_k"], clean["blocks.0.attn.hook_k"]
    others = [h for h in range(k.shape[2]) if h != head]
    assert torch.equal(k[:, :, others], k_clean[:, :, others])
    assert (k[:, :, head] - k_clean[:, :, head]).abs().max() > 1e-2
    for name in ("blocks.0.attn.hook_q", "blocks.0.attn.hook_v"):
        assert torch.equal(patched[name], clean[name])
    assert max_abs_diff(k, tl_patched["blocks.0.attn.hook_k"]) <= ATOL
    assert max_abs_diff(logits, tl_logits) <= ATOL


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=IDS)
@torch.no_grad()
def test_normalized_input_hooks_equal_ln1_of_transformerlens_inputs(tokens, arch):
    ours, theirs = _pair(
        23, arch, ours_only=dict(use_normalized_qkv_input=True), use_split_qkv_input=True
    )
    _, cache, _, tl_cache = _caches(ours, theirs, tokens)
    for layer in range(2):
        ln1 = theirs.blocks[layer].ln1
        for which in "qkv":
            expected = ln1(tl_cache[f"blocks.{layer}.hook_{which}_input"])
            ours_value = cache[f"blocks.{layer}.hook_{which}_normalized_input"]
            assert ours_value.shape == expected.shape
            assert max_abs_diff(ours_value, expected) <= ATOL, (layer, which)


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("flags", [{}, INPUT_HOOKS], ids=["plain", "input_hooks"])
def test_logits_do_not_depend_on_attached_hooks(tokens, flags, grad):
    """Caching every hook (or only a norm's scale) leaves the logits bit for bit as they
    are with nothing attached; a pattern cached alone equals the full cache's."""
    ours, _ = _pair(24, LLAMA_LIKE, **flags)
    with torch.set_grad_enabled(grad):
        plain = ours(tokens)
        full_logits, full = ours.run_with_cache(tokens)
        scale_logits, _ = ours.run_with_cache(tokens, names_filter="blocks.0.ln1.hook_scale")
        _, patterns = ours.run_with_cache(tokens, names_filter=lambda n: n.endswith("pattern"))
    assert torch.equal(full_logits, plain)
    assert torch.equal(scale_logits, plain)
    for layer in range(2):
        name = f"blocks.{layer}.attn.hook_pattern"
        assert torch.equal(patterns[name], full[name])


def test_gradients_through_hooked_norms_and_patterns_equal_transformerlens(tokens):
    """With hooks attached, values keep the fused numbers but gradients flow through the
    hooked tensors: backward hooks on `hook_scale` and `hook_pattern` see TransformerLens's
    gradients."""
    ours, theirs = _pair(25, GPT2_LIKE, **INPUT_HOOKS)

    def names(n):
        return n.endswith(("ln1.hook_scale", "hook_pattern", "hook_q_input", "unembed.hook_in"))

    kwargs = dict(return_type="loss", names_filter=names, incl_bwd=True)
    _, cache = ours.run_with_cache(tokens, **kwargs)
    _, tl_cache = theirs.run_with_cache(tokens, **kwargs)
    grads = [k for k in tl_cache.keys() if k.endswith("_grad")]
    assert len(grads) == 7
    for name in grads:
        assert tl_cache[name].abs().max() > 0, name
        assert max_abs_diff(cache[name], tl_cache[name]) <= 1e-6, name


@pytest.mark.parametrize("name", ["blocks.0.ln1.hook_scale", "blocks.1.attn.hook_pattern"])
@torch.no_grad()
def test_hooks_that_edit_take_effect_as_in_transformerlens(tokens, name):
    ours, theirs = _pair(26, LLAMA_LIKE)

    def double_in_place(x, hook):
        x.mul_(2.0)

    plain = ours(tokens)
    edited = ours.run_with_hooks(tokens, fwd_hooks=[(name, double_in_place)])
    tl_edited = theirs.run_with_hooks(tokens, fwd_hooks=[(name, double_in_place)])
    assert max_abs_diff(edited, plain) > 1e-3
    assert max_abs_diff(edited, tl_edited) <= ATOL


# ------------------------------------------- components built as in TransformerLens
COMPONENT_CFG = dict(
    n_layers=2, d_model=64, n_ctx=32, d_head=16, n_heads=4, d_mlp=128, d_vocab=50,
    act_fn="gelu_new", normalization_type="LN",
)  # fmt: skip
COMPONENTS = [
    # (module, class, constructor args after cfg, extra config, input)
    ("attention", "Attention", ("global", 0), {}, "qkv"),
    ("attention", "GroupedQueryAttention", ("global", 1), {"n_key_value_heads": 2}, "qkv"),
    ("block", "TransformerBlock", (1,), {}, "resid"),
    ("block", "TransformerBlock", (0,), LLAMA_LIKE, "resid"),
    ("mlp", "MLP", (), {}, "resid"),
    ("norm", "LayerNorm", (), {}, "resid"),
    ("norm", "LayerNormPre", (), {}, "resid"),
    ("norm", "RMSNorm", (), {}, "resid"),
    ("embed", "Embed", (), {}, "tokens"),
    ("embed", "PosEmbed", (), {}, "tokens"),
    ("embed", "Unembed", (), {}, "resid"),
]


@pytest.mark.parametrize(
    "module,name,args,extra,kind", COMPONENTS, ids=[f"{c[1]}{c[2]}" for c in COMPONENTS]
)
@torch.no_grad()
def test_components_built_as_in_transformerlens_equal_theirs(module, name, args, extra, kind):
    """`Attention(cfg, "global", 0)`, `TransformerBlock(cfg, i)`, `MLP(cfg)`, ... with a
    dict config, as TransformerLens's tests build them, compute what TransformerLens's
    components compute on the same weights."""
    import importlib

    import transformer_lens.components as tl_components

    from tests._helpers import randomize_parameters

    cfg = {**COMPONENT_CFG, **extra}
    ours = getattr(importlib.import_module(f"lookingglass.model.{module}"), name)(cfg, *args)
    theirs = getattr(tl_components, name)(cfg, *args)
    randomize_parameters(ours, seed=len(name))
    for param_name, param in ours.named_parameters():
        if param_name.endswith("mlp.b_in") and extra.get("gated_mlp"):
            param.zero_()  # TransformerLens adds a gated MLP's b_in after the product
    result = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert {k.rsplit(".", 1)[-1] for k in result.missing_keys} <= {"IGNORE", "mask"} | {
        "rotary_sin",
        "rotary_cos",
    }
    generator = torch.Generator().manual_seed(3)
    if kind == "tokens":
        inputs = (torch.randint(0, 50, (2, 7), generator=generator),)
    else:
        x = torch.randn(2, 7, 64, generator=generator)
        inputs = (x, x, x) if kind == "qkv" else (x,)
    assert max_abs_diff(ours(*inputs), theirs(*inputs)) <= ATOL


def test_component_configs_are_checked():
    from lookingglass import ConfigError
    from lookingglass.model.attention import Attention

    with pytest.raises(ConfigError, match="not_a_field"):
        Attention({**COMPONENT_CFG, "not_a_field": False})
    with pytest.raises(ConfigError, match="window_size"):
        Attention(COMPONENT_CFG, "local", 0)
    assert Attention(COMPONENT_CFG).cfg.d_model == 64


@torch.no_grad()
def test_standalone_attention_takes_transformerlens_masks():
    """`additive_attention_mask` [batch 1 1 kv_pos] is added to the scores, as in
    TransformerLens; with nothing hooked the output still equals theirs."""
    import transformer_lens.components as tl_components

    from lookingglass.model.attention import Attention
    from tests._helpers import randomize_parameters

    ours, theirs = Attention(COMPONENT_CFG, "global", 0), tl_components.Attention(COMPONENT_CFG)
    randomize_parameters(ours, seed=4)
    theirs.load_state_dict(ours.state_dict(), strict=False)
    x = torch.randn(2, 6, 64, generator=torch.Generator().manual_seed(4))
    additive = torch.zeros(2, 1, 1, 6)
    additive[0, ..., 2] = -1e4  # batch row 0 ignores key 2
    out = ours(x, x, x, additive_attention_mask=additive)
    assert max_abs_diff(out, theirs(x, x, x, additive_attention_mask=additive)) <= ATOL
    assert max_abs_diff(out, ours(x, x, x)) > 1e-3
