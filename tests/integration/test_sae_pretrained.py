"""The shipped SAE (SmolLM2-135M, blocks.15.hook_resid_post, top-k, d_sae 2304) loads with
SAELens's own `SAE.load_from_disk` and with ours to the same encode/decode, and spliced
into the model with `run_with_saes` on held-out King James text it keeps most of the
loss (against zero-ablating the hook) and explains most of the variance. The numbers
it is held to are well below those measured in docs/sae.md."""

from __future__ import annotations

import warnings

import torch

from lookingglass.sae import run_with_hooks_with_saes
from lookingglass.sae.pretrained import load_pretrained_sae, shipped_saes

NAME = "smollm2-135m-l15-resid-topk-2304"


def test_shipped_sae_loads_in_saelens_and_splices(smollm2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sae_lens

        theirs = sae_lens.SAE.load_from_disk(str(shipped_saes()[NAME]))
    ours = load_pretrained_sae(NAME)
    assert ours.cfg.hook_name == "blocks.15.hook_resid_post" and ours.cfg.d_sae == 2304
    from lookingglass.training.corpus import load_corpus

    text = load_corpus("kjv").heldout[-1][:400]
    tokens = smollm2.to_tokens(text)[:, :64]
    clean, cache = smollm2.run_with_cache(
        tokens, names_filter=[ours.cfg.hook_name], return_type="loss"
    )
    x = cache[ours.cfg.hook_name][0, 1:]
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), atol=1e-5, rtol=1e-5)
        x_hat = ours.decode(ours.encode(x))
    explained = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert explained > 0.6
    ablated = smollm2.run_with_hooks(
        tokens, return_type="loss",
        fwd_hooks=[(ours.cfg.hook_name, lambda a, hook: torch.cat([a[:, :1], 0 * a[:, 1:]], 1))],
    )  # fmt: skip

    def keep_bos(act, hook):  # the BOS keeps its own (outlier) activation, as in evaluation
        act = act.clone()
        act[:, 0] = cache[ours.cfg.hook_name][:, 0]
        return act

    spliced = run_with_hooks_with_saes(
        smollm2, tokens, saes=[ours], return_type="loss",
        fwd_hooks=[(f"{ours.cfg.hook_name}.hook_sae_output", keep_bos)],
    )  # fmt: skip
    score = (ablated - spliced) / (ablated - clean)
    assert score > 0.5, (float(clean), float(spliced), float(ablated))
    l0 = (ours.encode(x) != 0).sum(-1).float()
    assert (l0 <= 32).all() and l0.mean() > 16
