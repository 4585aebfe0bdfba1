"""`lookingglass replicate induction-heads --quick`, end to end: it must reproduce the
published outcome (Olsson et al. 2022) and its report must agree with the snapshots it
saved, re-measured here by hand."""

from __future__ import annotations

import json

import torch

from lookingglass.cli import main
from lookingglass.training import Snapshots


def prefix_matching_by_hand(model, seq_len: int = 20, n_seq: int = 20) -> torch.Tensor:
    """[layer, head]: mean attention from each token of the second copy of a random
    sequence (no BOS, as in training) to the token after its first occurrence."""
    generator = torch.Generator().manual_seed(7)
    half = torch.randint(0, model.cfg.d_vocab, (n_seq, seq_len), generator=generator)
    tokens = torch.cat([half, half], dim=1)
    patterns = {}
    with torch.no_grad():
        model.run_with_hooks(
            tokens,
            fwd_hooks=[
                (
                    lambda name: name.endswith("hook_pattern"),
                    lambda p, hook: patterns.__setitem__(int(hook.name.split(".")[1]), p),
                )
            ],
        )
    dest = torch.arange(seq_len, 2 * seq_len - 1)
    return torch.stack(
        [patterns[layer][:, :, dest, dest - seq_len + 1].mean((0, 2)) for layer in sorted(patterns)]
    )


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
        final = prefix_matching_by_hand(last)
        assert prefix_matching_by_hand(first).max() < 0.2, name  # nothing at initialization
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
    attn2 = prefix_matching_by_hand(
        Snapshots(out / "attn2" / "snapshots")[results["settings"]["n_steps"]]
    )
    assert attn2[1].max() > 0.5 and attn2[0].max() < 0.2
