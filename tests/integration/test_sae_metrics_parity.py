"""`evaluate_sae` equals SAELens's own evaluation functions on identical weights.

SAELens's `get_sparsity_and_variance_metrics` (l0, l1, mse, explained variance, cosine
similarity, feature density) and `get_downstream_reconstruction_metrics` (CE loss with
the SAE, without, zero-ablated, and the CE loss score), run on a TransformerLens 3.9
model holding our tiny model's weights, with the BOS token as `ignore_tokens`
(SAELens keeps the model's activation there and drops those losses, as our
`keep_positions=(0,)` does).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_sae_parity import models, random_sae, saelens_twin  # noqa: E402,F401,F811

from lookingglass.sae.training.metrics import evaluate_sae  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sae_lens.evals import (
        get_downstream_reconstruction_metrics,
        get_sparsity_and_variance_metrics,
    )
    from sae_lens.training.activation_scaler import ActivationScaler

BOS = 0
ROWS = torch.randint(1, 60, (6, 12), generator=torch.Generator().manual_seed(5))
ROWS[:, 0] = BOS


class _Store:
    """What SAELens's eval functions read of an ActivationsStore: token batches."""

    def __init__(self, rows: torch.Tensor, n: int) -> None:
        self.batches = [rows[i : i + n] for i in range(0, len(rows), n)]

    def get_batch_tokens(self, n: int) -> torch.Tensor:
        return self.batches.pop(0)


@pytest.mark.parametrize("arch,kw", [("standard", {}), ("topk", {"k": 6}), ("jumprelu", {})])
def test_evaluate_sae_matches_saelens_evals(models, arch, kw):  # noqa: F811
    ours_model, tl = models
    sae = random_sae(arch, seed=4, **kw)
    with torch.no_grad():
        sae.W_enc.mul_(0.5)  # a sparser, non-trivial SAE
    twin = saelens_twin(sae)
    mine = evaluate_sae(ours_model, sae, ROWS, batch_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse, features = get_sparsity_and_variance_metrics(
            twin,
            tl,
            _Store(ROWS, 3),
            ActivationScaler(),
            n_batches=2,
            compute_l2_norms=False,
            compute_sparsity_metrics=True,
            compute_variance_metrics=True,
            compute_featurewise_density_statistics=True,
            eval_batch_size_prompts=3,
            model_kwargs={},
            ignore_tokens=[BOS],
        )
        down = get_downstream_reconstruction_metrics(
            twin,
            tl,
            _Store(ROWS, 3),
            ActivationScaler(),
            compute_kl=False,
            compute_ce_loss=True,
            n_batches=2,
            eval_batch_size_prompts=3,
            ignore_tokens=[BOS],
        )
    assert 0 < mine["l0"] < sae.cfg.d_sae
    for key in ("l0", "l1", "mse", "explained_variance", "cossim"):
        assert mine[key] == pytest.approx(sparse[key], rel=1e-5, abs=1e-6), key
    torch.testing.assert_close(
        mine["feature_density"], torch.tensor(features["feature_density"]), atol=1e-6, rtol=0
    )
    for key in (
        "ce_loss_with_sae",
        "ce_loss_without_sae",
        "ce_loss_with_ablation",
        "ce_loss_score",
    ):
        assert mine[key] == pytest.approx(down[key], rel=1e-5, abs=1e-6), key


def test_full_rank_pca_baseline_is_the_identity(models):  # noqa: F811
    from lookingglass.sae.training import fit_pca, pca_baseline

    model, _ = models
    hook = "blocks.0.hook_resid_post"
    _, cache = model.run_with_cache(ROWS, names_filter=[hook])
    mean, comps = fit_pca(cache[hook].reshape(-1, 16), 16)
    full = pca_baseline(model, hook, mean, comps, ROWS, batch_size=4)
    assert full["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert full["ce_loss_with_sae"] == pytest.approx(full["ce_loss_without_sae"], abs=1e-5)
    mean, comps = fit_pca(cache[hook].reshape(-1, 16), 3)
    low = pca_baseline(model, hook, mean, comps, ROWS, batch_size=4)
    reused = pca_baseline(model, hook, mean, comps, ROWS, batch_size=4, reference=low)
    assert reused == pytest.approx(low)
    assert low["explained_variance"] < 0.9
