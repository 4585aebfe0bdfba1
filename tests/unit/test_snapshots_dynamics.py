"""Tests of snapshots (saving, loading, iterating) and of the training-dynamics measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.errors import CheckpointError, InputError
from lookingglass.training.dynamics import (
    Dynamics,
    analyze_snapshots,
    dynamics_summary,
    icl_score,
    icl_windows,
    loss_pca,
    phase_change,
    sample_tokens,
    windows_overlap,
)
from lookingglass.training.snapshots import Snapshots, SnapshotSaver, snapshot_steps
from lookingglass.training.train import TrainConfig, train

D_VOCAB, N_CTX = 30, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rows():
    return torch.randint(0, D_VOCAB, (48, N_CTX), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def run(rows, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "snapshots"
    cfg = ModelConfig(
        n_layers=2, d_model=16, d_head=8, n_ctx=N_CTX, d_vocab=D_VOCAB, attn_only=True, seed=0
    )
    model = HookedTransformer(cfg)
    steps = snapshot_steps(8, n_log=3, n_linear=2)
    result = train(
        model,
        rows,
        TrainConfig(n_steps=8, batch_size=8, eval_every=4, progress=False),
        eval_data=rows[:8],
        callbacks=[SnapshotSaver(folder, steps)],
    )
    return folder, steps, model, result


def test_snapshot_steps_mix_log_and_linear_spacing():
    steps = snapshot_steps(1000, n_log=4, n_linear=4)
    assert steps == [0, 1, 10, 100, 250, 500, 750, 1000]
    assert snapshot_steps(5, n_log=10, n_linear=10) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(InputError):
        snapshot_steps(0)


def test_snapshots_load_in_step_order_and_match_the_trained_model(run):
    folder, steps, model, result = run
    snapshots = Snapshots(folder)
    assert snapshots.steps == steps == [0, 1, 3, 4, 8]
    assert [step for step, _ in snapshots] == steps
    last = HookedTransformer.from_pretrained_no_processing(snapshots.path(8), device="cpu")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(last.state_dict()[name], value.cpu(), rtol=0, atol=0)
    processed = HookedTransformer.from_pretrained(snapshots.path(8), device="cpu")
    assert processed.cfg.n_layers == 2
    losses = snapshots.losses()
    assert losses["train_loss"][8] == pytest.approx(result.train_losses[-1])
    assert set(losses["eval_loss"]) == {0, 4, 8}


def test_snapshots_are_loaded_lazily_and_missing_ones_are_errors(run, tmp_path, monkeypatch):
    folder, *_ = run
    loaded = []
    original = Snapshots.load
    monkeypatch.setattr(
        Snapshots, "load", lambda self, step: loaded.append(step) or original(self, step)
    )
    snapshots = Snapshots(folder)
    iterator = iter(snapshots)
    assert len(snapshots) == 5 and loaded == []
    step, model = next(iterator)
    assert step == 0 and isinstance(model, HookedTransformer) and loaded == [0]
    with pytest.raises(InputError, match="No snapshot at step 2"):
        snapshots.load(2)
    with pytest.raises(CheckpointError):
        Snapshots(tmp_path)


def test_dynamics_have_the_documented_shapes_and_are_reproducible(run, rows):
    folder, steps, *_ = run
    sample = sample_tokens(rows, 20, seed=1)
    assert sample.tokens.shape == (20, N_CTX) and sample.positions.min() >= 1
    first = analyze_snapshots(Snapshots(folder), rows[:16], sample, probe_len=8, probe_rows=4)
    again = analyze_snapshots(Snapshots(folder), rows[:16], sample, probe_len=8, probe_rows=4)
    n = len(steps)
    assert first.loss_vectors.shape == (n, 20)
    assert first.induction.shape == first.previous_token.shape == (n, 2, 2)
    assert first.position_loss.shape == (n, N_CTX - 1)
    assert first.icl.shape == first.eval_loss.shape == (n,)
    for name in ("loss_vectors", "induction", "previous_token", "icl"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    pca = loss_pca(first.loss_vectors, k=2)
    assert pca.components.shape == (2, 20) and pca.trajectory.shape == (n, 2)
    summary = dynamics_summary(first)
    assert set(summary) >= {
        "induction_heads",
        "induction_phase",
        "icl_phase",
        "coincide",
        "midpoints_apart",
        "together_tolerance",
    }


def test_dynamics_round_trip_through_a_file(run, rows, tmp_path):
    folder, *_ = run
    dynamics = analyze_snapshots(
        Snapshots(folder), rows[:8], sample_tokens(rows, 8), probe_len=8, probe_rows=2
    )
    loaded = Dynamics.load(dynamics.save(tmp_path / "d.npz"))
    np.testing.assert_array_equal(loaded.induction, dynamics.induction)
    np.testing.assert_array_equal(loaded.steps, dynamics.steps)


def test_loss_pca_recovers_a_one_dimensional_path():
    direction = np.linspace(-1, 1, 50)
    coords = np.array([0.0, 1.0, 3.0, 3.5, 3.6])
    vectors = 2.0 + coords[:, None] * direction[None, :]
    pca = loss_pca(vectors, k=2)
    assert pca.explained_variance_ratio[0] == pytest.approx(1.0)
    np.testing.assert_allclose(
        np.abs(pca.components[0]), np.abs(direction) / np.linalg.norm(direction)
    )
    assert np.abs(pca.components[0]).argmax() == np.argmax(pca.components[0])  # sign convention
    np.testing.assert_allclose(
        np.diff(np.abs(pca.trajectory[:, 0] - pca.trajectory[0, 0])) >= 0, True
    )
    reconstructed = pca.mean + pca.trajectory @ pca.components
    np.testing.assert_allclose(reconstructed, vectors, atol=1e-10)
    with pytest.raises(InputError):
        loss_pca(vectors, k=6)


def test_icl_score_is_late_minus_early_window_loss():
    early, late = icl_windows(64)
    assert (early, late) == (range(3, 7), range(32, 64))
    curve = torch.arange(1, 64, dtype=torch.float32)  # entry t - 1 is token t: loss t
    assert float(icl_score(curve)) == pytest.approx((32 + 63) / 2 - (3 + 6) / 2)
    assert icl_score(torch.stack([curve, -curve])).shape == (2,)


def test_phase_change_finds_the_jump_and_its_overlap():
    steps = np.array([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    jump = np.array([0.0, 0.01, 0.02, 0.02, 0.1, 0.7, 0.9, 0.92, 0.93, 0.93, 0.94])
    found = phase_change(steps, jump, min_rise=0.3, smooth_width=1)
    assert found.detected and (found.start, found.end) == (30, 50)
    later = phase_change(
        steps, np.roll(jump, 3) * (np.arange(11) >= 3), min_rise=0.3, smooth_width=1
    )
    assert later.detected and later.start > found.start
    assert windows_overlap(found, phase_change(steps, jump * 0.5, min_rise=0.1, smooth_width=1))
    flat = phase_change(steps, 0.05 + 0.01 * np.sin(steps), min_rise=0.3)
    assert not flat.detected and not windows_overlap(found, flat)


def test_text_induction_attention_matches_a_direct_count(run):
    from lookingglass.training.dynamics import text_induction_attention

    *_, model, _ = run
    tokens = torch.tensor([[0, 5, 6, 7, 5, 6, 9, 5, 3, 3, 3, 6]])
    scores = text_induction_attention(model, tokens, ignore=(0,))
    _, cache = model.run_with_cache(tokens)
    expected = torch.zeros(2, 2)
    n = 0
    for q in range(tokens.shape[1]):
        keys = [j + 1 for j in range(q - 1) if tokens[0, j] == tokens[0, q]]
        if keys:
            n += 1
            for layer in range(2):
                expected[layer] += cache["pattern", layer][0, :, q, keys].sum(-1)
    torch.testing.assert_close(scores, expected / n)
    with pytest.raises(InputError, match="occurs twice"):
        text_induction_attention(model, torch.tensor([[1, 2, 3, 4]]))
