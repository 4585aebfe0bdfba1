"""Tests of the training loop: schedule, determinism, accumulation, callbacks, exact resume."""

from __future__ import annotations

import pytest
import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.errors import CheckpointError, ConfigError
from lookingglass.training.train import TrainConfig, load_checkpoint, lr_factor, train

D_VOCAB, N_CTX = 40, 12


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models run fastest on one thread; several threads on a busy machine spin-wait.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0, **changes) -> HookedTransformer:
    fields = dict(
        n_layers=1, d_model=16, d_head=8, n_ctx=N_CTX, d_vocab=D_VOCAB, attn_only=True, seed=seed
    )
    return HookedTransformer(ModelConfig(**{**fields, **changes}))


@pytest.fixture(scope="module")
def rows():
    return torch.randint(0, D_VOCAB, (64, N_CTX), generator=torch.Generator().manual_seed(0))


def config(**changes) -> TrainConfig:
    base = dict(
        n_steps=10, batch_size=4, lr=1e-2, warmup_steps=3, eval_every=3, eval_rows=8, progress=False
    )
    return TrainConfig(**{**base, **changes})


def test_lr_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = config(n_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.55)  # halfway through the cosine
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_training_lowers_the_loss_and_records_eval_losses(rows):
    model = tiny_model()
    result = train(model, rows, config(n_steps=12), eval_data=rows[:8])
    assert len(result.train_losses) == 12 and result.step == 12
    assert result.eval_steps == [0, 3, 6, 9, 12]
    assert result.eval_losses[-1] < result.eval_losses[0]
    assert result.tokens_seen == 12 * 4 * N_CTX


def test_same_seed_same_run_and_another_seed_another_data_order(rows):
    first = train(tiny_model(), rows, config()).train_losses
    again = train(tiny_model(), rows, config()).train_losses
    other = train(tiny_model(), rows, config(seed=1)).train_losses
    assert first == again
    assert first != other


def test_gradient_accumulation_matches_one_big_batch(rows):
    big = train(tiny_model(), rows, config(batch_size=8))
    accumulated = train(tiny_model(), rows, config(batch_size=4, grad_accum_steps=2))
    torch.testing.assert_close(
        torch.tensor(accumulated.train_losses), torch.tensor(big.train_losses), atol=1e-5, rtol=0
    )


def test_resume_equals_uninterrupted_training(rows, tmp_path):
    cfg = config(n_steps=10, grad_accum_steps=2)
    straight_model = tiny_model()
    straight = train(straight_model, rows, cfg, eval_data=rows[:8])

    first_half = train(
        tiny_model(),
        rows,
        config(n_steps=10, grad_accum_steps=2, checkpoint_dir=str(tmp_path)),
        eval_data=rows[:8],
        stop_at_step=5,
    )
    assert first_half.step == 5 and load_checkpoint(tmp_path)["data_position"] == 10
    torch.manual_seed(12345)  # a fresh process would start from another RNG state
    resumed_model = tiny_model(seed=99)  # and from other weights: the checkpoint replaces them
    resumed = train(resumed_model, rows, cfg, eval_data=rows[:8], resume_from=tmp_path)

    assert resumed.step == 10
    torch.testing.assert_close(
        torch.tensor(resumed.train_losses), torch.tensor(straight.train_losses), atol=1e-6, rtol=0
    )
    assert resumed.eval_steps == straight.eval_steps
    torch.testing.assert_close(
        torch.tensor(resumed.eval_losses), torch.tensor(straight.eval_losses), atol=1e-6, rtol=0
    )
    for (name, a), b in zip(
        straight_model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)


def test_resume_refuses_another_schedule_or_architecture(rows, tmp_path):
    train(tiny_model(), rows, config(checkpoint_dir=str(tmp_path)), stop_at_step=2)
    with pytest.raises(CheckpointError, match="n_steps"):
        train(tiny_model(), rows, config(n_steps=20), resume_from=tmp_path)
    with pytest.raises(CheckpointError, match="another architecture"):
        train(tiny_model(d_head=4), rows, config(), resume_from=tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="Could not read"):
        train(tiny_model(), rows, config(), resume_from=tmp_path / "broken")


def test_callbacks_see_step_zero_and_every_step(rows):
    seen = []
    train(
        tiny_model(),
        rows,
        config(n_steps=4, eval_every=2),
        eval_data=rows[:8],
        callbacks=[lambda s: seen.append((s.step, s.train_loss is None, s.eval_loss is None))],
    )
    assert seen == [
        (0, True, False),
        (1, False, True),
        (2, False, False),
        (3, False, True),
        (4, False, False),
    ]


def test_bad_settings_name_the_field(rows):
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(n_steps=10, batch_size=0)
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        TrainConfig(n_steps=10, checkpoint_every=5)
    with pytest.raises(ConfigError, match="n_ctx"):
        train(tiny_model(), rows, config(seq_len=N_CTX + 1))
    with pytest.raises(ConfigError, match="stop_at_step"):
        train(tiny_model(), rows, config(), stop_at_step=11)


def test_repeated_spans_copy_an_earlier_span_of_the_same_row_and_keep_bos():
    from lookingglass.training.default_models import with_repeated_spans

    rows = torch.arange(40 * 64).reshape(40, 64)  # every token distinct
    rows[:, 0] = 0
    out = with_repeated_spans(rows, fraction=0.5, span=(4, 8), seed=0)
    changed = (out != rows).any(dim=1)
    assert int(changed.sum()) == 20 and (out[:, 0] == 0).all()
    for row, new in zip(rows[changed], out[changed], strict=True):
        moved = (new != row).nonzero()[:, 0]
        assert 4 <= len(moved) <= 8 and (moved.diff() == 1).all()
        source = int(new[moved[0]] - (row[1] - 1))  # a token is its position plus a row offset
        assert 1 <= source and source + len(moved) <= moved[0]
        assert (new[moved] == row[source : source + len(moved)]).all()


def test_a_non_finite_loss_stops_training_before_the_step_so_the_weights_stay_finite(rows):
    model = tiny_model()
    calls = []

    def poison_third_batch(resid, hook):
        calls.append(1)
        return resid * float("inf") if len(calls) == 3 else resid

    model.add_hook("hook_embed", poison_third_batch)
    with pytest.raises(FloatingPointError, match="at step 3; lower lr"):
        train(model, rows, config(eval_every=0))
    model.reset_hooks()
    assert all(torch.isfinite(p).all() for p in model.parameters())
