"""Feature views (`lookingglass.sae.features`) on SmolLM2-135M with a random SAE.

References: the dense feature activations from `run_with_cache_with_saes` (checked
against SAELens in test_sae_parity.py) searched by brute force for the top contexts,
numpy's histogram of the non-zero values, the SAE's W_dec @ the model's W_U for the
logits, and SAEDashboard's `NeuronpediaDashboardFeature.to_dict()` keys for the export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lookingglass.sae import SAE, SAEConfig, run_with_cache_with_saes
from lookingglass.sae.features import (
    FeatureActivations,
    export_neuronpedia,
    feature_contexts,
    feature_histogram,
    feature_logit_bars,
)

HOOK = "blocks.3.hook_resid_post"
# sae_dashboard/neuronpedia/neuronpedia_feature.py, NeuronpediaDashboardFeature.to_dict()
NP_FEATURE_KEYS = {
    "feature_index",
    "neuron_alignment_indices",
    "neuron_alignment_values",
    "neuron_alignment_l1",
    "correlated_neurons_indices",
    "correlated_neurons_l1",
    "correlated_neurons_pearson",
    "correlated_features_indices",
    "correlated_features_l1",
    "correlated_features_pearson",
    "neg_str",
    "neg_values",
    "pos_str",
    "pos_values",
    "frac_nonzero",
    "freq_hist_data_bar_values",
    "freq_hist_data_bar_heights",
    "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "num_tokens_for_dashboard",
    "activations",
}
NP_ACTIVATION_KEYS = {"bin_min", "bin_max", "bin_contains", "tokens", "values"}


@pytest.fixture(scope="module")
def setup(smollm2):
    sae = SAE(SAEConfig(d_in=576, d_sae=32, architecture="topk", k=4, hook_name=HOOK))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(576, 32, generator=gen) * 0.05)
        sae.W_dec.copy_(torch.randn(32, 576, generator=gen) * 0.05)
    rows = smollm2.to_tokens(
        [
            "In the beginning God created the heaven and the earth.",
            "And the earth was without form, and void; and darkness was upon the deep.",
        ],
    )[:, :14]
    acts = FeatureActivations.from_model(smollm2, sae, rows, batch_size=1)
    _, cache = run_with_cache_with_saes(smollm2, rows, saes=[sae])
    dense = cache[f"{HOOK}.hook_sae_acts_post"].clone()
    dense[:, 0] = 0  # the BOS is left out
    return smollm2, sae, rows, acts, dense


def test_top_contexts_histogram_density_match_dense_activations(setup):
    model, sae, rows, acts, dense = setup
    flat = dense.reshape(-1, sae.cfg.d_sae)
    torch.testing.assert_close(acts.density(), (flat != 0).float().mean(0))
    f = int((flat != 0).sum(0).argmax())
    top = torch.topk(flat[:, f], 5)
    contexts = acts.top_contexts(f, 5, left=3, right=1)
    assert [c.value for c in contexts] == pytest.approx(top.values.tolist(), abs=1e-5)
    for c, idx in zip(contexts, top.indices.tolist(), strict=True):
        row, pos = divmod(idx, rows.shape[1])
        assert (c.row, c.pos) == (row, pos)
        lo = max(0, pos - 3)
        assert c.token_ids == rows[row, lo : pos + 2].tolist()
        assert c.values == pytest.approx(dense[row, lo : pos + 2, f].tolist(), abs=1e-5)
    centres, counts = acts.histogram(f, bins=7)
    nz = flat[:, f][flat[:, f] != 0].numpy()
    want_counts, edges = np.histogram(nz, bins=7)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_allclose(centres, (edges[:-1] + edges[1:]) / 2, rtol=1e-6)
    groups = acts.quantile_contexts(f, n_groups=3, per_group=2)
    assert sum(g[2] for g in groups) == pytest.approx(1.0)
    for lo, hi, _, group in groups:
        assert all(lo < c.value <= hi + 1e-6 for c in group)


def test_figures_and_neuronpedia_export(setup, tmp_path):
    model, sae, rows, acts, dense = setup
    f = int(acts.density().argmax())
    effect = sae.W_dec[f] @ model.W_U
    fig = feature_logit_bars(model, sae, f, k=3)
    assert fig.panels[0].values.tolist() == pytest.approx(torch.topk(effect, 3).values.tolist())
    assert [p.title for p in fig.panels] == ["top logits", "bottom logits"]
    assert len(feature_contexts(model, acts, f, n=3).panels) >= 3
    assert feature_histogram(acts, f).panels[0].values.sum() == (dense[..., f] != 0).sum()
    batch = export_neuronpedia(model, sae, acts, [f, 0], tmp_path / "batch.json")
    loaded = json.loads((tmp_path / "batch.json").read_text())
    assert loaded == json.loads(json.dumps(batch))
    assert set(loaded) == {"model_id", "layer", "sae_set", "features", "settings"}
    assert loaded["layer"] == 3
    feature = loaded["features"][0]
    assert set(feature) == NP_FEATURE_KEYS
    assert feature["pos_str"][0] == model.to_single_str_token(int(effect.argmax()))
    assert feature["activations"] and all(
        set(a) == NP_ACTIVATION_KEYS for a in feature["activations"]
    )
    assert feature["activations"][0]["bin_min"] == -1
    assert max(feature["activations"][0]["values"]) == pytest.approx(
        acts.max_activation(f), abs=1e-3
    )


def test_from_harvest_equals_from_model(setup, tmp_path):
    """A shard in the harvest format (records shuffled, as `harvest` writes them) gives the
    same feature activations as running the model."""
    from lookingglass.harvest.manifest import write_manifest
    from lookingglass.harvest.shards import commit_shard, shard_permutation

    model, sae, rows, acts, dense = setup
    _, cache = model.run_with_cache(rows, names_filter=[HOOK])
    n, seq = rows.numel(), rows.shape[1]
    order = shard_permutation(0, 0, n)
    tensors = {
        "tokens": rows.reshape(-1)[order],
        "row": torch.arange(rows.shape[0]).repeat_interleave(seq)[order],
        "pos": torch.arange(seq).repeat(rows.shape[0])[order],
        HOOK: cache[HOOK].reshape(n, -1)[order],
    }
    entry = commit_shard(tmp_path, 0, tensors, {"row_start": 0, "row_stop": rows.shape[0]})
    write_manifest(tmp_path, {"hooks": {HOOK: [576]}, "seq_len": seq, "n_shards": 1,
                              "complete": True, "shards": [entry]})  # fmt: skip
    stored = FeatureActivations.from_harvest(tmp_path, sae)
    assert torch.equal(stored.rows, rows)
    torch.testing.assert_close(stored.density(), acts.density())
    f = int(acts.density().argmax())
    assert [c.value for c in stored.top_contexts(f, 4)] == pytest.approx(
        [c.value for c in acts.top_contexts(f, 4)], abs=1e-5
    )
