"""`lookingglass replicate induction-heads --data text --quick`, end to end on the pinned
corpus: the report's structure, resuming a partial command, chunked training equal to
one uninterrupted run, the replayed dense snapshots equal to the run they refine, and
the bigram baseline equal to a dense count model computed here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lookingglass.cli import main
from lookingglass.training.replicate_text import (
    TEXT_QUICK,
    load_text_data,
    mixed_rows,
    replay_snapshots,
    run_model,
    run_names,
    train_config,
)
from lookingglass.training.train import load_checkpoint, train


def dense_witten_bell(train_rows: torch.Tensor, heldout_rows: torch.Tensor, d_vocab: int):
    """Interpolated (Witten-Bell) bigram with a full count matrix."""
    counts = np.zeros((d_vocab, d_vocab))
    np.add.at(counts, (train_rows[:, :-1].numpy(), train_rows[:, 1:].numpy()), 1)
    unigram = (counts.sum(0) + 1) / (counts.sum() + d_vocab)
    types = (counts > 0).sum(1, keepdims=True)
    context = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = np.where(context > 0, (counts + types * unigram) / (context + types), unigram)
    a, b = heldout_rows[:, :-1].numpy(), heldout_rows[:, 1:].numpy()
    return float(-np.log(table[a, b]).mean())


def test_text_replication_quick_resumes_and_reports_true_numbers(tmp_path):
    out = tmp_path / "text"
    base = ["replicate", "induction-heads", "--data", "text", "--quick", "--no-progress"]
    # A partial command: one run only; the report waits for the rest.
    assert main([*base, "--out", str(out), "--only", "attn1-seed0"]) == 0
    assert (out / "attn1-seed0" / "summary.json").is_file()
    assert not (out / "report.md").exists()
    first_summary = (out / "attn1-seed0" / "summary.json").stat().st_mtime_ns
    # The full command continues: the finished run is read back, not trained again.
    assert main([*base, "--out", str(out)]) == 0
    assert (out / "attn1-seed0" / "summary.json").stat().st_mtime_ns == first_summary

    results = json.loads((out / "results.json").read_text())
    names = run_names(TEXT_QUICK)
    assert sorted(results["runs"]) == sorted(names)
    assert set(results["per_model"]) == {"attn1", "attn1-smeared", "attn2"}
    report = (out / "report.md").read_text()
    assert "# Induction heads on natural text" in report and "Outcome:" in report
    for name in names:
        assert f"| {name} |" in report
    for plot in ("scores.png", "loss_curves.png", "mixture/scores.png"):
        assert (out / plot).stat().st_size > 10_000, plot

    data = load_text_data(TEXT_QUICK)
    assert len(data.tokenizer) == 75  # 73 characters in the KJV, plus BOS/EOS and unknown
    bigram = dense_witten_bell(data.train_rows, data.heldout_rows, len(data.tokenizer))
    assert results["baselines_heldout_nats"]["bigram"] == pytest.approx(bigram, abs=1e-4)

    # Chunked training (30-step chunks, resumed from checkpoints) = one uninterrupted run.
    name = "attn1-seed0"
    state = load_checkpoint(out / name / "checkpoint")
    model = run_model("attn1", TEXT_QUICK, data, seed=0)
    config = train_config(TEXT_QUICK, 0, tmp_path / "unchunked", progress=False)
    whole = train(model, mixed_rows(data, 0.0, TEXT_QUICK, 0), config)
    torch.testing.assert_close(
        torch.tensor(whole.train_losses, dtype=torch.float64),
        state["train_losses"],
        atol=1e-6,
        rtol=0,
    )

    # Replayed snapshots (dense steps inside a jump) lie on the run's own trajectory:
    # those the analysis added, and more replayed here from the checkpoint at step 30.
    from lookingglass.training.snapshots import Snapshots

    name = "attn2-seed0"
    existing = set(Snapshots(out / name / "snapshots").steps)
    added = replay_snapshots(name, out, TEXT_QUICK, data, (31, 59), existing)
    assert added and not set(added) & existing and min(added) >= 31
    for name in names:
        summary = json.loads((out / name / "summary.json").read_text())
        losses = load_checkpoint(out / name / "checkpoint")["train_losses"]
        index = json.loads((out / name / "snapshots" / "index.json").read_text())
        steps = summary["refined_steps"] + (added if name == "attn2-seed0" else [])
        for step in steps:
            assert index["train_loss"][str(step)] == pytest.approx(
                float(losses[step - 1]), abs=1e-6
            )
