"""The forward pass of `HookedTransformer`, checked against a from-scratch reference.

`reference_forward` below recomputes the model from its weights with plain tensor
operations (no code from lookingglass), and the other tests check the ways of running
the model against each other: fused vs explicit attention, padded vs unpadded, cached
vs uncached, split at a layer vs whole, optional hook points on vs off.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lookingglass import ConfigError, HookedTransformer, InputError, KeyValueCache
from lookingglass.hooks import HookPoint
from tests._helpers import (
    D_VOCAB,
    assert_close,
    make_model,
    make_tokenizer,
    one_cpu_thread,
    random_tokens,
    rejected,
)

BATCH, POS = 3, 10
LENGTHS = [10, 7, 3]  # real lengths of the rows in the padding tests


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def model():
    return make_model(seed=0)


@pytest.fixture(scope="module")
def tokens():
    return random_tokens(BATCH, POS, seed=1)


def _noop(x, hook):
    return None


def _touch(x, hook):
    x.mul_(1.0)  # an in-place edit that changes no value


def _explicit_attention():
    """Hooks that force the explicit-pattern attention path's numbers in every layer: a
    hook that only reads the pattern keeps the fused kernel's numbers (see
    `lookingglass.model.exact_paths`), one that edits it (here in place, by 1.0) gets
    the explicit path's."""
    return [(lambda name: name.endswith("attn.hook_pattern"), _touch)]


# ------------------------------------------------------------------ the reference
def _gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _norm(x, module, kind, eps):
    if kind is None:
        return x
    if kind.startswith("LN"):
        x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    if kind in ("LN", "RMS"):
        x = x * module.w
    if kind == "LN":
        x = x + module.b
    return x


def reference_forward(
    model: HookedTransformer, tokens: torch.Tensor, attn_in_delta=None, mlp_in_delta=None
):
    """Logits computed from the weights alone, as the GPT-2 paper's equations read.

    `attn_in_delta` / `mlp_in_delta` are added to layer 0's attention / MLP input (before
    its norm) but not to the residual stream."""
    cfg = model.cfg
    kind = cfg.normalization_type
    n = tokens.shape[1]
    resid = model.W_E[tokens] + model.W_pos[:n]
    causal = torch.ones(n, n).tril().bool()
    for layer, block in enumerate(model.blocks):
        a = block.attn
        attn_in = resid if attn_in_delta is None or layer else resid + attn_in_delta
        x = _norm(attn_in, block.ln1, kind, cfg.eps)
        q = torch.einsum("bpd,hde->bphe", x, a.W_Q) + a.b_Q
        k = torch.einsum("bpd,hde->bphe", x, a.W_K) + a.b_K
        v = torch.einsum("bpd,hde->bphe", x, a.W_V) + a.b_V
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(cfg.d_head)
        pattern = scores.masked_fill(~causal, -1e30).softmax(-1)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        resid = resid + torch.einsum("bqhe,hed->bqd", z, a.W_O) + a.b_O
        if not cfg.attn_only:
            m = block.mlp
            mlp_in = resid if mlp_in_delta is None or layer else resid + mlp_in_delta
            x = _norm(mlp_in, block.ln2, kind, cfg.eps)
            resid = resid + _gelu_new(x @ m.W_in + m.b_in) @ m.W_out + m.b_out
    return _norm(resid, model.ln_final, kind, cfg.eps) @ model.W_U + model.b_U


@pytest.mark.parametrize("normalization_type", ["LN", "LNPre", "RMS", "RMSPre", None])
@pytest.mark.parametrize("attn_only", [False, True])
def test_logits_equal_the_reference(tokens, normalization_type, attn_only):
    model = make_model(seed=2, normalization_type=normalization_type, attn_only=attn_only)
    with torch.no_grad():
        expected = reference_forward(model, tokens)
        assert_close(model(tokens), expected, 1e-5, "fused")
        explicit = model.run_with_hooks(tokens, fwd_hooks=_explicit_attention())
        assert_close(explicit, expected, 1e-5, "explicit")


def test_attn_only_model_has_no_mlp_hook_points(tokens):
    model = make_model(seed=3, attn_only=True)
    names = set(model.hook_dict)
    assert not any("mlp" in n or "resid_mid" in n or "ln2" in n for n in names)
    _, cache = model.run_with_cache(tokens)
    for layer in range(model.cfg.n_layers):
        resid = cache["resid_pre", layer] + cache["attn_out", layer]
        assert torch.equal(cache["resid_post", layer], resid)


# -------------------------------------------------- fused vs explicit attention
def test_fused_path_runs_unless_the_pattern_is_hooked(model, tokens, monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model(tokens)
    assert len(calls) == model.cfg.n_layers
    calls.clear()
    model.run_with_hooks(tokens, fwd_hooks=_explicit_attention())
    assert calls == []
    # Caching the scores materializes them, and z keeps the fused kernel's numbers.
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn_scores"))
    assert len(calls) == model.cfg.n_layers
    assert len(cache) == model.cfg.n_layers


def _pad(rows: list[torch.Tensor], side: str, pad: int = 0):
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        tokens[i, span], mask[i, span] = r, 1
    return tokens, mask


def _rows(tokens):
    return [tokens[i, :n] for i, n in enumerate(LENGTHS)]


def _real(logits, i, n, side):
    return logits[i, -n:] if side == "left" else logits[i, :n]


@torch.no_grad()
def test_fused_and_explicit_attention_agree(model, tokens):
    fused = model(tokens)
    explicit = model.run_with_hooks(tokens, fwd_hooks=_explicit_attention())
    assert_close(fused, explicit, 1e-5, "plain")
    for side in ("left", "right"):
        padded, mask = _pad(_rows(tokens), side)
        fused = model(padded, attention_mask=mask)
        explicit = model.run_with_hooks(
            padded, attention_mask=mask, fwd_hooks=_explicit_attention()
        )
        for i, n in enumerate(LENGTHS):
            assert_close(_real(fused, i, n, side), _real(explicit, i, n, side), 1e-5, side)
    full = model(tokens)
    for label, hooks in (("kv fused", []), ("kv explicit", _explicit_attention())):
        cache = KeyValueCache.init_cache(model.cfg)
        with model.hooks(fwd_hooks=hooks):
            first = model(tokens[:, :6], past_kv_cache=cache)
            second = model(tokens[:, 6:], past_kv_cache=cache)
        assert_close(torch.cat([first, second], 1), full, 1e-5, label)


# ------------------------------------------------------------------------ padding
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("explicit", [False, True], ids=["fused", "explicit"])
@torch.no_grad()
def test_padded_rows_equal_their_unpadded_runs(model, tokens, side, explicit):
    padded, mask = _pad(_rows(tokens), side, pad=5)
    hooks = _explicit_attention() if explicit else []
    logits = model.run_with_hooks(padded, attention_mask=mask, fwd_hooks=hooks)
    for i, row in enumerate(_rows(tokens)):
        alone = model(row[None])
        assert_close(_real(logits, i, len(row), side), alone[0], 1e-5, f"row {i}")


@torch.no_grad()
def test_padding_keys_get_no_attention(model, tokens):
    padded, mask = _pad(_rows(tokens), "left")
    _, cache = model.run_with_cache(
        padded, attention_mask=mask, names_filter=lambda n: "pattern" in n
    )
    key_is_pad = ~mask.bool()[:, None, None, :]
    query_is_real = mask.bool()[:, None, :, None]
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]  # [batch, head, query, key]
        assert torch.isfinite(pattern).all()
        assert torch.all(pattern.masked_select(key_is_pad & query_is_real) == 0)
        assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]), 1e-6, "rows sum to 1")


@torch.no_grad()
def test_kv_cache_with_left_padding_equals_the_unpadded_runs(model, tokens):
    padded, mask = _pad(_rows(tokens), "left")
    extra = random_tokens(BATCH, 3, seed=9)
    cache = KeyValueCache.init_cache(model.cfg)
    model(padded, attention_mask=mask, past_kv_cache=cache)
    continued = model(extra, past_kv_cache=cache)
    for i, row in enumerate(_rows(tokens)):
        alone = model(torch.cat([row, extra[i]])[None])
        assert_close(continued[i], alone[0, -3:], 1e-5, f"row {i}")


# --------------------------------------------------------------- splitting at a layer
@torch.no_grad()
def test_stop_and_start_at_layer_compose_to_the_full_forward(model, tokens):
    full, cache = model.run_with_cache(tokens)
    for layer in range(model.cfg.n_layers + 1):
        resid = model(tokens, stop_at_layer=layer)
        name = f"blocks.{layer}.hook_resid_pre" if layer < model.cfg.n_layers else None
        if name:
            assert_close(resid, cache[name], 1e-5, name)
        assert_close(model(resid, start_at_layer=layer), full, 1e-5, f"start at {layer}")
    padded, mask = _pad(_rows(tokens), "left")
    resid = model(padded, attention_mask=mask, stop_at_layer=1)
    resumed = model(resid, start_at_layer=1, attention_mask=mask)
    assert_close(resumed, model(padded, attention_mask=mask), 1e-6, "padded")
    loss = model(resid, start_at_layer=1, tokens=padded, attention_mask=mask, return_type="loss")
    assert_close(loss, model(padded, attention_mask=mask, return_type="loss"), 1e-6, "loss")


# ----------------------------------------------------------------- residual stream
@torch.no_grad()
def test_residual_stream_identities(model, tokens):
    _, cache = model.run_with_cache(tokens)
    assert torch.equal(cache["resid_pre", 0], cache["hook_embed"] + cache["hook_pos_embed"])
    for layer in range(model.cfg.n_layers):
        assert torch.equal(
            cache["resid_mid", layer], cache["resid_pre", layer] + cache["attn_out", layer]
        )
        assert torch.equal(
            cache["resid_post", layer], cache["resid_mid", layer] + cache["mlp_out", layer]
        )
        if layer + 1 < model.cfg.n_layers:
            assert torch.equal(cache["resid_pre", layer + 1], cache["resid_post", layer])
    assert_close(cache["hook_embed"], model.W_E[tokens], 0, "embed")
    assert_close(cache["hook_pos_embed"][0], model.W_pos[:POS], 0, "pos_embed")


# ------------------------------------------------------------------ optional hooks
@torch.no_grad()
def test_use_attn_result_heads_sum_to_attn_out(tokens):
    model = make_model(seed=4, use_attn_result=True)
    plain = make_model(seed=4)
    logits, cache = model.run_with_cache(tokens)
    assert_close(logits, plain(tokens), 1e-5, "logits")
    for layer in range(model.cfg.n_layers):
        result = cache["result", layer]
        assert result.shape == (BATCH, POS, model.cfg.n_heads, model.cfg.d_model)
        manual = torch.einsum("bphe,hed->bphd", cache["z", layer], model.W_O[layer])
        assert_close(result, manual, 1e-5, "per-head result")
        summed = result.sum(dim=2) + model.b_O[layer]
        assert_close(summed, cache["attn_out", layer], 1e-5, "sum of heads")


@torch.no_grad()
def test_split_qkv_input_is_the_residual_input_per_head(tokens):
    """TransformerLens's meaning: `hook_q/k/v_input` are the block's input before ln1,
    copied per head; `hook_q/k/v_normalized_input` (our addition) are ln1 of them."""
    model = make_model(seed=5, use_split_qkv_input=True, use_normalized_qkv_input=True)
    logits, cache = model.run_with_cache(tokens)
    assert_close(logits, make_model(seed=5)(tokens), 1e-5, "logits")
    for layer in range(model.cfg.n_layers):
        ln1 = model.blocks[layer].ln1
        resid = cache["resid_pre", layer]
        normalized = F.layer_norm(resid, (model.cfg.d_model,), ln1.w, ln1.b, model.cfg.eps)
        for which in "qkv":
            before = cache[f"blocks.{layer}.hook_{which}_input"]
            after = cache[f"blocks.{layer}.hook_{which}_normalized_input"]
            assert before.shape == (BATCH, POS, model.cfg.n_heads, model.cfg.d_model)
            assert after.shape == before.shape
            for head in range(model.cfg.n_heads):
                assert torch.equal(before[:, :, head], resid)
                assert_close(after[:, :, head], normalized, 1e-5, "normalized q/k/v input")


def _patch_head_in_place(head, delta):
    def patch(x, hook):
        x[:, :, head] += delta

    return patch


def _patch_head(head, delta):
    def patch(x, hook):
        x = x.clone()
        x[:, :, head] += delta
        return x

    return patch


@pytest.mark.parametrize("in_place", [False, True], ids=["new tensor", "in place"])
@torch.no_grad()
def test_patching_one_heads_q_input_changes_only_that_heads_q(tokens, in_place):
    model = make_model(seed=5, use_split_qkv_input=True)
    head, delta = 2, torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    patch = (_patch_head_in_place if in_place else _patch_head)(head, delta)
    _, clean = model.run_with_cache(tokens)
    with model.hooks(fwd_hooks=[("blocks.0.hook_q_input", patch)]):
        _, patched = model.run_with_cache(tokens)
    q, q_clean = patched["blocks.0.attn.hook_q"], clean["blocks.0.attn.hook_q"]
    others = [h for h in range(model.cfg.n_heads) if h != head]
    assert torch.equal(q[:, :, others], q_clean[:, :, others])
    assert (q[:, :, head] - q_clean[:, :, head]).abs().max() > 1e-2
    assert torch.equal(patched["blocks.0.attn.hook_k"], clean["blocks.0.attn.hook_k"])
    assert torch.equal(patched["blocks.0.attn.hook_v"], clean["blocks.0.attn.hook_v"])
    assert torch.equal(patched["blocks.0.hook_k_input"], clean["blocks.0.hook_k_input"])


@pytest.mark.parametrize("name", ["blocks.0.hook_mlp_in", "blocks.0.hook_attn_in"])
@torch.no_grad()
def test_branch_input_hooks_patch_only_their_branch(tokens, name):
    model = make_model(seed=6, use_hook_mlp_in=True, use_attn_in=True)
    delta = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(1))

    def add(x, hook):
        return x + delta

    def add_in_place(x, hook):
        x += delta

    _, clean = model.run_with_cache(tokens)
    skip = "blocks.0.hook_resid_mid" if "mlp" in name else "blocks.0.hook_resid_pre"
    before_norm = clean[skip] if "mlp" in name else clean[skip][:, :, None]  # attn_in: per head
    assert torch.equal(clean[name], before_norm.expand_as(clean[name]))  # before its norm
    results = []
    for fn in (add, add_in_place):
        with model.hooks(fwd_hooks=[(name, fn)]):
            logits, patched = model.run_with_cache(tokens)
        # The residual stream itself (the skip connection) is not changed.
        assert torch.equal(patched[skip], clean[skip]), fn.__name__
        results.append(logits)
    branch = "blocks.0.hook_mlp_out" if "mlp" in name else "blocks.0.hook_attn_out"
    assert (patched[branch] - clean[branch]).abs().max() > 1e-2
    assert_close(results[1], results[0], 1e-6, "in place vs new tensor")
    # The edit equals the same edit written into the reference.
    shift = {"mlp_in_delta" if "mlp" in name else "attn_in_delta": delta}
    assert_close(results[0], reference_forward(model, tokens, **shift), 1e-5, "reference")


def test_set_use_flags_add_and_remove_hook_points(tokens):
    model = make_model(seed=7)
    before = model(tokens)
    for setter, name in [
        ("set_use_attn_result", "blocks.0.attn.hook_result"),
        ("set_use_split_qkv_input", "blocks.1.hook_q_input"),
        ("set_use_hook_mlp_in", "blocks.0.hook_mlp_in"),
        ("set_use_attn_in", "blocks.1.hook_attn_in"),
    ]:
        assert name not in model.hook_dict
        getattr(model, setter)(True)
        assert name in model.hook_dict
        _, cache = model.run_with_cache(tokens, names_filter=name)
        assert name in cache
        assert_close(model(tokens), before, 1e-5, setter)
        getattr(model, setter)(False)
        assert name not in model.hook_dict
        assert_close(model(tokens), before, 1e-5, setter)


# --------------------------------------------------------- hook points cost nothing
class _NoHookPoint(nn.Identity):
    """A plain identity where a hook point was (`has_hooks` for the attention fast path)."""

    def has_hooks(self) -> bool:
        return False


@torch.no_grad()
def test_unhooked_hook_points_do_not_change_the_numbers(model, tokens):
    bare = copy.deepcopy(model)
    for name, module in list(bare.named_modules()):
        if isinstance(module, HookPoint):
            parent_name, _, leaf = name.rpartition(".")
            setattr(bare.get_submodule(parent_name) if parent_name else bare, leaf, _NoHookPoint())
    assert not any(isinstance(m, HookPoint) for m in bare.modules())
    assert torch.equal(bare(tokens), model(tokens))
    hooked = model.run_with_hooks(
        tokens, fwd_hooks=[(lambda n: "resid" in n or "hook_z" in n, _noop)]
    )
    assert torch.equal(hooked, model(tokens))


# ----------------------------------------------------------------- return types, loss
@torch.no_grad()
def test_return_types(model, tokens):
    logits = model(tokens)
    assert logits.shape == (BATCH, POS, D_VOCAB)
    loss = model(tokens, return_type="loss")
    assert loss.shape == ()
    both_logits, both_loss = model(tokens, return_type="both")
    assert torch.equal(both_logits, logits) and torch.equal(both_loss, loss)
    assert model(tokens, return_type=None) is None
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    assert per_token.shape == (BATCH, POS - 1)
    with pytest.raises(rejected(InputError), match="return_type"):
        model(tokens, return_type="probs")
    one_d = model(tokens[0])
    assert torch.equal(one_d, model(tokens[:1]))


@torch.no_grad()
def test_loss_equals_torch_cross_entropy(model, tokens):
    logits = model(tokens)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, D_VOCAB), tokens[:, 1:].reshape(-1))
    assert_close(model(tokens, return_type="loss"), expected, 1e-6, "mean")
    per_token = F.cross_entropy(
        logits[:, :-1].reshape(-1, D_VOCAB), tokens[:, 1:].reshape(-1), reduction="none"
    ).view(BATCH, POS - 1)
    assert_close(
        model(tokens, return_type="loss", loss_per_token=True), per_token, 1e-6, "per token"
    )


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_loss_with_attention_mask_ignores_padding(model, tokens, side):
    rows = _rows(tokens)
    padded, mask = _pad(rows, side, pad=7)
    total, count = 0.0, 0
    for row in rows:
        logits = model(row[None])[0]
        total += F.cross_entropy(logits[:-1], row[1:], reduction="sum")
        count += len(row) - 1
    loss = model(padded, attention_mask=mask, return_type="loss")
    assert_close(loss, total / count, 1e-5, side)


# -------------------------------------------------------------------------- errors
def test_input_errors_name_the_problem(model):
    n_ctx = model.cfg.n_ctx
    with pytest.raises(InputError, match=rf"{n_ctx + 1} positions.*n_ctx is {n_ctx}"):
        model(random_tokens(1, n_ctx + 1))
    cache = KeyValueCache.init_cache(model.cfg)
    model(random_tokens(1, n_ctx - 2), past_kv_cache=cache)
    with pytest.raises(InputError, match=rf"{n_ctx + 1} positions"):
        model(random_tokens(1, 3), past_kv_cache=cache)
    with pytest.raises(InputError, match="empty"):
        model("")
    with pytest.raises(InputError, match="no tokens"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(InputError, match=rf"Token id {D_VOCAB} .*d_vocab={D_VOCAB}"):
        model(torch.tensor([[1, 2, D_VOCAB]]))
    with pytest.raises(InputError, match="Token id -1 "):
        model(torch.tensor([[1, -1, 2]]))
    with pytest.raises(rejected(InputError), match="integer.*float32|parameter .input."):
        model(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(InputError, match="no tokenizer"):
        model("Hello")
    with pytest.raises(InputError, match="tokens"):
        model(model(random_tokens(1, 4), stop_at_layer=1), start_at_layer=1, return_type="loss")


def test_errors_are_caught_by_their_base_classes(model):
    from lookingglass import LookingGlassError

    with pytest.raises(ValueError):
        model(torch.tensor([[D_VOCAB]]))
    with pytest.raises(rejected(LookingGlassError)):
        HookedTransformer({"n_layers": 1})
    with pytest.raises(ConfigError, match="n_heads"):
        make_model(d_model=60, d_head=16, n_heads=-1)


# -------------------------------------------------------- smeared keys, correlation
def _shift(k, lag):
    return F.pad(k, (0, 0, 0, 0, lag, 0))[:, : k.shape[1]]


@torch.no_grad()
def test_correlation_attention_at_initialization_equals_plain_attention(tokens):
    plain = make_model(seed=8)
    corr = HookedTransformer(plain.cfg.replace(attention_score="correlation"))
    result = corr.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(result.missing_keys) == [
        f"blocks.{i}.attn.key_mixer.lag_weights" for i in range(2)
    ]
    assert result.unexpected_keys == []
    lag = corr.blocks[0].attn.key_mixer.lag_weights
    assert torch.equal(lag, torch.tensor([[1.0, 0, 0, 0]] * plain.cfg.n_heads))
    assert_close(corr(tokens), plain(tokens), 1e-6, "correlation at init")


@torch.no_grad()
def test_correlation_scores_are_the_cross_correlation_of_query_and_keys(tokens):
    model = make_model(seed=9, attention_score="correlation", correlation_max_lag=3)
    gen = torch.Generator().manual_seed(3)
    for block in model.blocks:
        block.attn.key_mixer.lag_weights.copy_(torch.randn(model.cfg.n_heads, 3, generator=gen))
    _, cache = model.run_with_cache(tokens)
    for layer in range(model.cfg.n_layers):
        q, k = cache["q", layer], cache["k", layer]
        w = model.blocks[layer].attn.key_mixer.lag_weights
        expected = sum(
            w[:, lag][None, :, None, None] * torch.einsum("bqhe,bkhe->bhqk", q, _shift(k, lag))
            for lag in range(3)
        ) / math.sqrt(model.cfg.d_head)
        causal = torch.ones(POS, POS).tril().bool()
        expected = expected.masked_fill(~causal, float("-inf"))
        assert_close(cache["attn_scores", layer], expected, 1e-5, f"scores {layer}")


@torch.no_grad()
def test_smeared_keys_mix_each_key_with_the_previous_one(tokens):
    model = make_model(seed=10, smear_keys=True)
    for block in model.blocks:
        block.attn.key_mixer.smear_logit.copy_(torch.tensor([-2.0, 0.0, 1.0, 3.0]))
    _, cache = model.run_with_cache(tokens)
    for layer in range(model.cfg.n_layers):
        k = cache["k", layer]
        alpha = torch.sigmoid(model.blocks[layer].attn.key_mixer.smear_logit)[:, None]
        mixed = alpha * k + (1 - alpha) * _shift(k, 1)
        assert_close(cache[f"blocks.{layer}.attn.key_mixer.hook_mixed_k"], mixed, 1e-6, "mixed_k")
        scores = torch.einsum("bqhe,bkhe->bhqk", cache["q", layer], mixed) / 4.0
        scores = scores.masked_fill(~torch.ones(POS, POS).tril().bool(), float("-inf"))
        assert_close(cache["attn_scores", layer], scores, 1e-5, "scores")


@pytest.mark.parametrize("variant", [{"smear_keys": True}, {"attention_score": "correlation"}])
@torch.no_grad()
def test_key_mixing_variants_agree_across_paths(tokens, variant):
    model = make_model(seed=11, **variant)
    mixer = model.blocks[0].attn.key_mixer
    if hasattr(mixer, "lag_weights"):
        for block in model.blocks:
            block.attn.key_mixer.lag_weights.normal_(generator=torch.Generator().manual_seed(4))
    full = model(tokens)
    assert_close(
        model.run_with_hooks(tokens, fwd_hooks=_explicit_attention()), full, 1e-5, "explicit"
    )
    cache = KeyValueCache.init_cache(model.cfg)
    first = model(tokens[:, :4], past_kv_cache=cache)
    rest = [model(tokens[:, p : p + 1], past_kv_cache=cache) for p in range(4, POS)]
    assert_close(torch.cat([first, *rest], dim=1), full, 1e-5, "kv cache")
    for side in ("left", "right"):
        padded, mask = _pad(_rows(tokens), side, pad=3)
        logits = model(padded, attention_mask=mask)
        for i, row in enumerate(_rows(tokens)):
            assert_close(
                _real(logits, i, len(row), side), model(row[None])[0], 1e-5, f"{side} row {i}"
            )


def test_smear_keys_and_correlation_cannot_be_combined():
    with pytest.raises(ConfigError, match="smear_keys"):
        make_model(smear_keys=True, attention_score="correlation")


def test_strings_run_through_the_tokenizer():
    tokenizer = make_tokenizer()
    model = make_model(seed=12, tokenizer=tokenizer)
    text = "When Mary and John went to the store"
    assert torch.equal(model(text), model(model.to_tokens(text)))
    batch = model(["Mary and John", "the quick brown fox jumps"])
    for i, s in enumerate(["Mary and John", "the quick brown fox jumps"]):
        alone = model(s)[0]
        assert_close(batch[i, : alone.shape[0]], alone, 1e-5, s)
