"""`lookingglass.sae` without SAELens: its formulas as SAELens 6.54.12 writes them, the
folder format, and splicing into a tiny `HookedTransformer`.

Formulas, from sae_lens/saes/*.py (SAELens 6.54.12, the `encode`/`decode` methods):
- StandardSAE:  acts = relu((x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc);
                out = acts @ W_dec + b_dec
- GatedSAE:     x' = x - b_dec; acts = (x' @ W_enc + b_gate > 0) * relu(x' @ (W_enc *
                exp(r_mag)) + b_mag)
- JumpReLUSAE:  h = x' @ W_enc + b_enc; acts = relu(h) * (h > threshold)
- TopKSAE:      h = x' @ W_enc + b_enc; topk(h, k) values relu'd, the rest 0
- Transcoder:   acts = relu(x @ W_enc + b_enc) (no b_dec subtraction); out = acts @ W_dec + b_dec
- constant_norm_rescale: x * sqrt(d_in) / ||x|| in, divided back out after decode.
- SAE.forward with use_error_term: out = recons + (x - clean recons) (so = x).
The model-level reference is a plain hook doing the same arithmetic by hand.
"""

from __future__ import annotations

import json

import pytest
import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.errors import CheckpointError, ConfigError, HookError
from lookingglass.sae import (
    SAE,
    HookedSAETransformer,
    SAEConfig,
    ablate_features,
    add_sae,
    feature_attribution,
    load_sae,
    reset_saes,
    run_with_cache_with_saes,
    run_with_saes,
    saes,
    save_sae,
)

D_IN, D_SAE = 16, 40
HOOK = "blocks.0.hook_resid_post"
CFG = dict(n_layers=2, d_model=D_IN, n_heads=2, d_head=8, d_vocab=50, n_ctx=16, d_mlp=32)


def random_sae(arch="standard", seed=0, **kw) -> SAE:
    kw.setdefault("hook_name", HOOK)
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=arch, **kw))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
            if name == "threshold":
                p.abs_()
    return sae


X = torch.randn(3, 5, D_IN, generator=torch.Generator().manual_seed(1)) * 2


def close(a, b):
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_standard_formula():
    s = random_sae()
    acts = torch.relu((X - s.b_dec) @ s.W_enc + s.b_enc)
    close(s.encode(X), acts)
    close(s(X), acts @ s.W_dec + s.b_dec)
    s2 = random_sae(apply_b_dec_to_input=False)
    close(s2.encode(X), torch.relu(X @ s2.W_enc + s2.b_enc))


def test_gated_jumprelu_topk_formulas():
    g = random_sae("gated")
    xc = X - g.b_dec
    mag = torch.relu(xc @ (g.W_enc * g.r_mag.exp()) + g.b_mag)
    close(g.encode(X), (xc @ g.W_enc + g.b_gate > 0).float() * mag)
    j = random_sae("jumprelu")
    h = (X - j.b_dec) @ j.W_enc + j.b_enc
    close(j.encode(X), torch.relu(h) * (h > j.threshold))
    t = random_sae("topk", k=4)
    h = (X - t.b_dec) @ t.W_enc + t.b_enc
    acts = t.encode(X)
    assert ((acts != 0).sum(-1) <= 4).all()
    kth = h.topk(4, dim=-1).values[..., -1:]
    close(acts, torch.where(h >= kth, h.relu(), torch.zeros_like(h)))


def test_transcoder_and_normalization_formulas():
    tc = random_sae("transcoder", apply_b_dec_to_input=False, d_out=12, hook_name_out="x")
    acts = torch.relu(X @ tc.W_enc + tc.b_enc)
    close(tc(X), acts @ tc.W_dec + tc.b_dec)
    n = random_sae(normalize_activations="constant_norm_rescale")
    coeff = D_IN**0.5 / X.norm(dim=-1, keepdim=True)
    acts = torch.relu((X * coeff - n.b_dec) @ n.W_enc + n.b_enc)
    close(n(X), (acts @ n.W_dec + n.b_dec) / coeff)


def test_error_term_returns_input_exactly_and_hooks_see_it():
    s = random_sae()
    s.use_error_term = True
    _, cache = s.run_with_cache(X)
    assert torch.equal(s(X), X)
    close(cache["hook_sae_error"], X - (cache["hook_sae_acts_post"] @ s.W_dec + s.b_dec))


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="architecture"):
        SAEConfig(d_in=4, d_sae=8, architecture="relu")
    with pytest.raises(ConfigError, match="k >= 1"):
        SAEConfig(d_in=4, d_sae=8, architecture="topk")
    with pytest.raises(ConfigError, match="apply_b_dec_to_input"):
        SAEConfig(d_in=4, d_sae=8, architecture="transcoder")


@pytest.mark.parametrize(
    "arch,kw", [("standard", {}), ("gated", {}), ("jumprelu", {}), ("topk", {"k": 3})]
)
def test_folder_round_trip(arch, kw, tmp_path):
    s = random_sae(arch, **kw)
    sparsity = torch.randn(D_SAE)
    save_sae(s, tmp_path, sparsity=sparsity)
    assert {p.name for p in tmp_path.iterdir()} == {
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
    }
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == arch and cfg["metadata"]["hook_name"] == HOOK
    loaded = load_sae(tmp_path)
    assert loaded.cfg.to_dict() == s.cfg.to_dict()
    assert torch.equal(loaded(X), s(X))


def test_pre_6_config_and_bad_folders(tmp_path):
    s = random_sae()
    save_sae(s, tmp_path)
    old = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "hook_point": HOOK,
        "normalize_activations": False,
        "activation_fn_str": "relu",
    }
    (tmp_path / "cfg.json").write_text(json.dumps(old))
    loaded = load_sae(tmp_path)
    assert loaded.cfg.hook_name == HOOK and loaded.cfg.normalize_activations == "none"
    (tmp_path / "cfg.json").write_text(json.dumps({**old, "architecture": "gated"}))
    with pytest.raises(CheckpointError, match="b_gate"):
        load_sae(tmp_path)
    with pytest.raises(CheckpointError, match="cfg.json"):
        load_sae(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(ModelConfig(**CFG, seed=1)).eval()


TOKENS = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(3))


def by_hand(model, fn):
    """Logits with `fn(resid)` written at HOOK by a plain hook (the reference)."""
    return model.run_with_hooks(TOKENS, fwd_hooks=[(HOOK, lambda x, hook: fn(x))])


def test_run_with_saes_splices_and_error_term_is_exact(model):
    s = random_sae()
    with torch.no_grad():
        plain = model(TOKENS)
        assert torch.equal(run_with_saes(model, TOKENS, saes=[s], use_error_term=True), plain)
        spliced = run_with_saes(model, TOKENS, saes=[s])
        ref = by_hand(
            model, lambda x: torch.relu((x - s.b_dec) @ s.W_enc + s.b_enc) @ s.W_dec + s.b_dec
        )
    assert (spliced - plain).abs().max() > 1e-2
    close(spliced, ref)
    assert torch.equal(model(TOKENS), plain) and not any("sae" in n for n in model.hook_dict)


def test_sae_activations_cached_by_name(model):
    s = random_sae()
    _, cache = run_with_cache_with_saes(model, TOKENS, saes=[s])
    names = {n for n in cache.keys() if ".hook_sae_" in n}
    assert names == {
        f"{HOOK}.hook_sae_{k}" for k in ("input", "acts_pre", "acts_post", "recons", "output")
    }
    _, plain_cache = model.run_with_cache(TOKENS)
    close(cache[f"{HOOK}.hook_sae_input"], plain_cache[HOOK])
    close(cache[f"{HOOK}.hook_sae_acts_post"], s.encode(plain_cache[HOOK]))
    close(cache[HOOK], plain_cache[HOOK])  # the name keeps what the model computed
    _, filtered = run_with_cache_with_saes(
        model, TOKENS, saes=[s], use_error_term=True, names_filter=lambda n: "sae_error" in n
    )
    assert list(filtered.keys()) == [f"{HOOK}.hook_sae_error"]


def test_transcoder_reads_one_hook_writes_another(model):
    tc = random_sae(
        "transcoder",
        apply_b_dec_to_input=False,
        hook_name="blocks.1.ln2.hook_normalized",
        hook_name_out="blocks.1.hook_mlp_out",
    )
    with torch.no_grad():
        plain, cache = model.run_with_cache(TOKENS)
        assert torch.equal(run_with_saes(model, TOKENS, saes=[tc], use_error_term=True), plain)
        out = run_with_saes(model, TOKENS, saes=[tc])
        recons = tc(cache["blocks.1.ln2.hook_normalized"])
        ref = model.run_with_hooks(
            TOKENS, fwd_hooks=[("blocks.1.hook_mlp_out", lambda x, hook: recons)]
        )
    close(out, ref)


def test_hooks_on_the_spliced_name_survive_and_context_restores(model):
    seen = []
    handle = model.hook_dict[HOOK].add_hook(lambda x, hook: seen.append(1), is_permanent=True)
    try:
        a, b = random_sae(seed=1), random_sae(seed=2)
        add_sae(model, a)
        with saes(model, [b]):
            assert model.hook_dict[HOOK].sae is b
            model(TOKENS)
        assert model.hook_dict[HOOK].sae is a
        reset_saes(model)
        model(TOKENS)
        assert len(seen) == 2 and model.hook_dict[HOOK] is not None
    finally:
        handle.hook.remove()
        reset_saes(model)
    with pytest.raises(HookError, match="hook_resid_post"):
        run_with_saes(model, TOKENS, saes=[random_sae(hook_name="blocks.0.hook_resid_pots")])
    with pytest.raises(HookError, match="d_out"):
        run_with_saes(model, TOKENS, saes=[random_sae(hook_name="blocks.0.mlp.hook_post")])
    assert not any("sae" in n for n in model.hook_dict)


def test_feature_ablation_removes_decoder_directions(model):
    s = random_sae()
    ids = [0, 3, 7]

    def hand(x):
        acts = torch.relu((x - s.b_dec) @ s.W_enc + s.b_enc)
        return x - acts[..., ids] @ s.W_dec[ids]

    with torch.no_grad(), ablate_features(model, {s: ids}):
        out = model(TOKENS)
    with torch.no_grad():
        ref = by_hand(model, hand)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_feature_attribution_is_activation_times_gradient(model):
    s = random_sae()

    def metric(logits):
        return logits[:, -1, 2].sum() - logits[:, -1, 9].sum()

    value, attribution, acts = feature_attribution(model, TOKENS, s, metric)
    kept = {}

    def hand(x):  # recons(f) + (x - recons(f)) with f a leaf: grad of metric wrt f
        f = torch.relu((x - s.b_dec) @ s.W_enc + s.b_enc).detach().requires_grad_(True)
        kept["f"] = f
        recons = f @ s.W_dec + s.b_dec
        return recons + (x - recons).detach()

    ref_value = metric(by_hand(model, hand))
    (grad,) = torch.autograd.grad(ref_value, kept["f"])
    name = f"{HOOK}.hook_sae_acts_post"
    assert abs(value - ref_value.item()) < 1e-5
    torch.testing.assert_close(attribution[name], (kept["f"] * grad).detach(), atol=1e-5, rtol=0)
    assert attribution[name].abs().sum() > 0


def test_hooked_sae_transformer_methods(model):
    m = HookedSAETransformer(ModelConfig(**CFG, seed=1)).eval()
    s = random_sae()
    with torch.no_grad():
        close(m.run_with_saes(TOKENS, saes=[s]), run_with_saes(model, TOKENS, saes=[s]))
        m.add_sae(s)
        assert m.acts_to_saes == {HOOK: s}
        _, cache = m.run_with_cache(TOKENS)
        assert f"{HOOK}.hook_sae_acts_post" in cache.keys()
        m.reset_saes()
        with m.saes(saes=[s], use_error_term=True):
            close(m(TOKENS), model(TOKENS))
    assert m.acts_to_saes == {}
