"""`lookingglass.sae` equals SAELens 6 (`sae_lens`) on identical random weights.

Every architecture's encode, decode and forward (with and without the error term), the
hook names inside the SAE, the folder format both ways (a folder written by SAELens's
`save_model` loads here; ours loads in SAELens's `SAE.load_from_disk`), and
`run_with_saes` / `run_with_cache_with_saes` on a tiny model against SAELens's
`HookedSAETransformer` (a TransformerLens 3.9 model with the same weights).

sae-lens 6.54.12 is a test dependency (`scripts/setup.sh --dev`), pinned beside
transformer-lens 3.9.0. tests/unit/test_sae.py checks the same formulas without SAELens.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.sae import (
    SAE,
    SAEConfig,
    feature_attribution,
    load_sae,
    load_sparsity,
    run_with_cache_with_saes,
    save_sae,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import sae_lens
    import transformer_lens

TOL = 1e-6
D_IN, D_SAE = 16, 48
MODEL = dict(
    n_layers=2,
    d_model=D_IN,
    n_heads=2,
    d_head=8,
    d_vocab=60,
    n_ctx=16,
    d_mlp=32,
    act_fn="gelu_new",
    normalization_type="LN",
)
CASES = [
    ("standard", {}),
    ("standard", {"apply_b_dec_to_input": False}),
    ("standard", {"normalize_activations": "constant_norm_rescale"}),
    ("standard", {"normalize_activations": "layer_norm"}),
    ("gated", {}),
    ("jumprelu", {}),
    ("topk", {"k": 5}),
    ("topk", {"k": 7, "rescale_acts_by_decoder_norm": True}),
    ("transcoder", {"apply_b_dec_to_input": False, "d_out": 12}),
    ("skip_transcoder", {"apply_b_dec_to_input": False, "d_out": 12}),
    ("jumprelu_transcoder", {"apply_b_dec_to_input": False, "d_out": 12}),
]
IDS = [f"{a}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for a, kw in CASES]


def random_sae(arch: str, seed: int = 0, **kw) -> SAE:
    hooks = {"hook_name": "blocks.0.hook_resid_post"}
    if "transcoder" in arch:
        hooks = {
            "hook_name": "blocks.1.ln2.hook_normalized",
            "hook_name_out": "blocks.1.hook_mlp_out",
        }
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=arch, **hooks, **kw))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
            if name == "threshold":
                p.abs_()
    return sae


def saelens_twin(sae: SAE):
    """SAELens's own class, built from our cfg.json dict, with our weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = sae_lens.SAE.from_dict(sae.cfg.to_dict())
    twin.load_state_dict(sae.state_dict())
    return twin.eval()


@pytest.mark.parametrize("arch,kw", CASES, ids=IDS)
def test_encode_decode_forward_match_saelens(arch, kw):
    ours = random_sae(arch, **kw)
    theirs = saelens_twin(ours)
    assert (
        type(theirs).__name__
        == {
            "standard": "StandardSAE",
            "gated": "GatedSAE",
            "jumprelu": "JumpReLUSAE",
            "topk": "TopKSAE",
            "transcoder": "Transcoder",
            "skip_transcoder": "SkipTranscoder",
            "jumprelu_transcoder": "JumpReLUTranscoder",
        }[arch]
    )
    x = torch.randn(3, 5, D_IN, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        acts, ref_acts = ours.encode(x), theirs.encode(x)
        assert (ref_acts != 0).any() and (ref_acts == 0).any()
        torch.testing.assert_close(acts, ref_acts, atol=TOL, rtol=0)
        if kw.get("normalize_activations", "none") == "none":  # decode alone is stateless
            torch.testing.assert_close(
                ours.decode(ref_acts), theirs.decode(ref_acts), atol=TOL, rtol=0
            )
        torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=0)
        if not ours.cfg.is_transcoder:
            # With the error term both return the input: ours bit for bit, SAELens's
            # recons + (x - recons) up to rounding (measured up to ~2e-6 here).
            ours.use_error_term = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs.use_error_term = True
            assert torch.equal(ours(x), x)
            torch.testing.assert_close(theirs(x), x, atol=1e-5, rtol=0)


def test_hook_names_match_saelens():
    ours = random_sae("standard")
    assert sorted(ours.hook_dict) == sorted(saelens_twin(ours).hook_dict)
    x = torch.randn(4, D_IN)
    _, cache = ours.run_with_cache(x)
    _, ref = saelens_twin(ours).run_with_cache(x)
    assert sorted(cache) == sorted(ref)
    for name in ref:
        torch.testing.assert_close(cache[name], ref[name], atol=TOL, rtol=0)


@pytest.mark.parametrize(
    "arch,kw",
    [CASES[0], CASES[4], CASES[5], CASES[7], CASES[9]],
    ids=[IDS[i] for i in (0, 4, 5, 7, 9)],
)
def test_folder_written_by_saelens_loads(arch, kw, tmp_path):
    theirs = saelens_twin(random_sae(arch, seed=4, **kw))
    theirs.save_model(tmp_path)
    sparsity = torch.randn(D_SAE)
    from safetensors.torch import save_file

    save_file({"sparsity": sparsity}, tmp_path / "sparsity.safetensors")  # as SAELens's trainer
    ours = load_sae(tmp_path)
    assert ours.cfg.architecture == arch and ours.cfg.hook_name == theirs.cfg.metadata.hook_name
    assert ours.cfg.hook_name_out == theirs.cfg.metadata.hook_name_out
    torch.testing.assert_close(load_sparsity(tmp_path), sparsity)
    x = torch.randn(6, D_IN)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=0)


@pytest.mark.parametrize(
    "arch,kw",
    [CASES[0], CASES[4], CASES[5], CASES[7], CASES[10]],
    ids=[IDS[i] for i in (0, 4, 5, 7, 10)],
)
def test_our_folder_loads_in_saelens(arch, kw, tmp_path):
    ours = random_sae(arch, seed=5, **kw)
    save_sae(ours, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = sae_lens.SAE.load_from_disk(tmp_path)
    assert theirs.cfg.architecture() == arch
    assert theirs.cfg.metadata.hook_name == ours.cfg.hook_name
    x = torch.randn(6, D_IN)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def models():
    ours = HookedTransformer(ModelConfig(**MODEL, seed=3)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tl = sae_lens.HookedSAETransformer(transformer_lens.HookedTransformerConfig(**MODEL))
    tl.load_state_dict(ours.state_dict(), strict=False)
    return ours, tl.eval()


TOKENS = torch.randint(0, 60, (2, 7), generator=torch.Generator().manual_seed(2))


MODEL_CASES = [CASES[0], CASES[6], ("transcoder", {"apply_b_dec_to_input": False, "d_out": D_IN})]


@pytest.mark.parametrize("arch,kw", MODEL_CASES, ids=["standard", "topk", "transcoder"])
@pytest.mark.parametrize("use_error_term", [False, True])
def test_run_with_cache_with_saes_matches_saelens(models, arch, kw, use_error_term):
    ours_model, tl = models
    ours = random_sae(arch, seed=6, **kw)
    theirs = saelens_twin(ours)
    with torch.no_grad():
        logits, cache = run_with_cache_with_saes(
            ours_model, TOKENS, saes=[ours], use_error_term=use_error_term
        )
        ref_logits, ref_cache = tl.run_with_cache_with_saes(
            TOKENS, saes=[theirs], use_error_term=use_error_term
        )
        plain = tl(TOKENS)
    assert (ref_logits - plain).abs().max() > 1e-3 or use_error_term  # the SAE mattered
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)
    sae_names = sorted(k for k in ref_cache.keys() if ".hook_sae_" in k)
    assert sae_names and sae_names == sorted(k for k in cache.keys() if ".hook_sae_" in k)
    for name in sae_names:
        torch.testing.assert_close(cache[name], ref_cache[name], atol=1e-5, rtol=0)
    # after the run the model is as before, in both libraries
    torch.testing.assert_close(ours_model(TOKENS), plain, atol=1e-5, rtol=0)
    assert not any(".hook_sae_" in k for k in ours_model.hook_dict)


def test_feature_attribution_matches_saelens_gradients(models):
    ours_model, tl = models
    ours = random_sae("standard", seed=7)
    theirs = saelens_twin(ours)
    name = "blocks.0.hook_resid_post.hook_sae_acts_post"

    def metric(logits):
        return logits[:, -1, 3].sum() - logits[:, -1, 5].sum()

    value, attribution, acts = feature_attribution(ours_model, TOKENS, [ours], metric)
    kept = {}

    def keep(act, hook):
        act.retain_grad()
        kept["acts"] = act

    with tl.saes(saes=[theirs], use_error_term=True):
        ref_value = metric(tl.run_with_hooks(TOKENS, fwd_hooks=[(name, keep)]))
        ref_value.backward()
    ref = kept["acts"] * kept["acts"].grad
    assert abs(value - ref_value.item()) < 1e-5
    torch.testing.assert_close(acts[name], kept["acts"].detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(attribution[name], ref.detach(), atol=1e-5, rtol=0)
    assert attribution[name].abs().sum() > 0
