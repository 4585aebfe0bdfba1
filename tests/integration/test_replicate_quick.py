"""`lookingglass replicate induction-heads --quick`, end to end: it must reproduce the
published outcome (Olsson et al. 2022) and its report must agree with the snapshots it
saved, re-measured here by hand."""

from __future__ import annotations

import json

import torch

from lookingglass.cli import main
from lookingglass.training import Snapshots
from tests._analysis_helpers import prefix_matching_by_hand


def by_hand(model) -> torch.Tensor:
    """Prefix-matching on random tokens without BOS, as the models were trained."""
    return prefix_matching_by_hand(model, 20, 20, vocab=(0, model.cfg.d_vocab))


def test_quick_replication_reproduces_the_finding_and_its_report_is_true(tmp_path):
    out = tmp_path / "run"
    argv = ["replicate", "induction-heads", "--quick", "--no-progress", "--out", str(out)]
    assert main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["verdict"]["replicated"], results["verdict"]
    assert "**Outcome: replicated**" in (out / "report.md").read_text()
    for plot in ("scores.png", "loss_curves.png", "loss_pca.png", "heads.png"):
        assert (out / plot).stat().st_size > 10_000, plot

    for name, forms in (("attn2", True), ("attn1-smeared", True), ("attn1", False)):
        snapshots = Snapshots(out / name / "snapshots")
        assert snapshots.steps[0] == 0 and snapshots.steps[-1] == results["settings"]["n_steps"]
        first, last = snapshots[snapshots.steps[0]], snapshots[snapshots.steps[-1]]
        final = by_hand(last)
        assert by_hand(first).max() < 0.2, name  # nothing at initialization
        reported = results["models"][name]
        assert abs(float(final.max()) - reported["max_induction_score"]) < 0.1, (name, final)
        if reported["induction_heads"]:  # the strongest head is the one the report names
            layer, head = divmod(int(final.argmax()), final.shape[1])
            assert reported["induction_heads"][0]["head"] == f"L{layer}H{head}", (name, final)
        if forms:
            assert final.max() > 0.5, (name, final)
        else:
            assert final.max() < 0.2, (name, final)
    # In the 2-layer model the induction heads are in layer 1 (layer 0 cannot do it).
    attn2 = by_hand(Snapshots(out / "attn2" / "snapshots")[results["settings"]["n_steps"]])
    assert attn2[1].max() > 0.5 and attn2[0].max() < 0.2
