"""`lookingglass sae train` end to end on a tiny saved model, live from the shipped
corpus: two widths from one pass, each written as a folder that SAELens's own
`SAE.load_from_disk` reads back to the same encoder, with its training curve and held-out
evaluation (against a PCA baseline) in training.json."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from lookingglass.cli import main
from lookingglass.sae import load_sae
from tests._explorer_helpers import save_tiny_model


@pytest.mark.slow  # ~10 s on an idle machine, minutes on the loaded one it was written on
def test_sae_train_cli_writes_saelens_folders(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    out = tmp_path / "saes"
    code = main([
        "sae", "train", "--data", "corpus:kjv", "--model", str(model_dir),
        "--hooks", "blocks.1.hook_resid_post", "--out", str(out), "--d-sae", "32", "64",
        "--k", "4", "--tokens", "2048", "--batch-size", "256", "--seq-len", "32",
        "--max-tokens", "2048", "--eval-data", "corpus:kjv", "--eval-tokens", "256",
        "--log-every", "2",
    ])  # fmt: skip
    assert code == 0
    assert "d_sae=64" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sae_lens
    for width in (32, 64):
        folder = out / f"blocks.1.hook_resid_post-topk-{width}"
        ours, theirs = load_sae(folder), sae_lens.SAE.load_from_disk(str(folder))
        assert ours.cfg.normalize_activations == "none"  # the scaling was folded in
        x = torch.randn(5, ours.cfg.d_in) * 3
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), atol=1e-5, rtol=1e-5)
        report = json.loads((folder / "training.json").read_text())
        assert report["steps"] == 8 and len(report["history"]) == 4
        assert report["eval"]["l0"] <= 4 and report["pca_baseline"]["k"] == round(
            report["eval"]["l0"]
        )
        assert set(report["eval"]) >= {"ce_loss_score", "delta_loss", "explained_variance"}
