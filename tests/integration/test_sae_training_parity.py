"""SAE training equals SAELens 6's on identical weights and batches.

- One training forward pass (`training_forward`) against SAELens's `StandardTrainingSAE`
  (L1 weighted by decoder norms), `TopKTrainingSAE` (aux-k loss on dead latents, with and
  without decoder-norm rescaling) and `JumpReLUTrainingSAE` (STE L0 loss, pre-activation
  loss): every loss term and every parameter's gradient.
- Whole runs: our `SAETrainer` and SAELens's `SAETrainer` for 40 steps on the same batches
  (learning-rate warm-up and decay, sparsity-coefficient warm-up, a short dead-latent
  window, gradient clipping, Adam): final weights and firing statistics.
- The learning-rate schedule against SAELens's `get_lr_scheduler` (torch's schedulers).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from lookingglass.sae import SAE, SAEConfig
from lookingglass.sae.training import SAETrainer, TrainConfig, lr_factor, training_forward

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.optim import get_lr_scheduler
    from sae_lens.training.sae_trainer import SAETrainer as LensTrainer

D_IN, D_SAE, HOOK = 16, 64, "blocks.0.hook_resid_post"
CASES = {
    "standard": (
        dict(l1_coefficient=0.3, l1_warm_up_steps=10),
        lambda tc: StandardTrainingSAEConfig(
            d_in=D_IN,
            d_sae=D_SAE,
            l1_coefficient=tc.l1_coefficient,
            l1_warm_up_steps=tc.l1_warm_up_steps,
        ),
        StandardTrainingSAE,
        {},
    ),
    "topk": (
        dict(aux_loss_coefficient=0.5),
        lambda tc: TopKTrainingSAEConfig(
            d_in=D_IN,
            d_sae=D_SAE,
            k=4,
            aux_loss_coefficient=tc.aux_loss_coefficient,
            rescale_acts_by_decoder_norm=True,
        ),
        TopKTrainingSAE,
        {"k": 4, "rescale_acts_by_decoder_norm": True},
    ),
    "topk-norescale": (
        dict(aux_loss_coefficient=1.0),
        lambda tc: TopKTrainingSAEConfig(
            d_in=D_IN, d_sae=D_SAE, k=3, rescale_acts_by_decoder_norm=False
        ),
        TopKTrainingSAE,
        {"k": 3},
    ),
    "jumprelu": (
        dict(
            l0_coefficient=0.02,
            l0_warm_up_steps=5,
            jumprelu_bandwidth=0.5,
            pre_act_loss_coefficient=0.1,
        ),
        lambda tc: JumpReLUTrainingSAEConfig(
            d_in=D_IN,
            d_sae=D_SAE,
            l0_coefficient=tc.l0_coefficient,
            l0_warm_up_steps=tc.l0_warm_up_steps,
            jumprelu_bandwidth=tc.jumprelu_bandwidth,
            pre_act_loss_coefficient=tc.pre_act_loss_coefficient,
        ),
        JumpReLUTrainingSAE,
        {},
    ),
}


def _pair(case: str, seed: int = 0):
    kw, lens_cfg, lens_cls, sae_kw = CASES[case]
    tc = TrainConfig(**kw)
    arch = case.split("-")[0]
    ours = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=arch, hook_name=HOOK, **sae_kw))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if name != "b_dec" else 0.1))
        if arch == "jumprelu":
            ours.threshold.copy_(torch.rand(D_SAE, generator=gen) * 0.6)
    lens = lens_cls(lens_cfg(tc))
    lens.load_state_dict({k: v.clone() for k, v in ours.state_dict().items()})
    return ours, lens, tc


def _batch(seed: int, n: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(n, D_IN, generator=gen) + 0.5


@pytest.mark.parametrize("case", list(CASES))
def test_training_forward_losses_and_gradients_equal_saelens(case):
    ours, lens, tc = _pair(case)
    x = _batch(0)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    coeffs = {"l1": 0.2, "l0": 0.01}
    mine = training_forward(ours, x, tc, coeffs, dead)
    theirs = lens.training_forward_pass(
        TrainStepInput(
            sae_in=x,
            coefficients=coeffs,
            dead_neuron_mask=dead,
            n_training_steps=0,
            is_logging_step=False,
        )
    )
    assert set(mine.losses) == set(theirs.losses)
    for name, value in theirs.losses.items():
        mine_value, their_value = float(mine.losses[name].detach()), float(value.detach())
        assert abs(mine_value - their_value) <= 1e-5 * max(1, abs(their_value))
    assert float(theirs.losses[next(k for k in theirs.losses if k != "mse_loss")].detach()) != 0
    torch.testing.assert_close(mine.feature_acts, theirs.feature_acts, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(mine.sae_out, theirs.sae_out, atol=1e-6, rtol=1e-6)
    mine.loss.backward()
    theirs.loss.backward()
    lens_params = dict(lens.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, lens_params[name].grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "case,extra",
    [
        ("standard", dict(lr_warm_up_steps=5, lr_decay_steps=10)),
        ("topk", dict(lr_scheduler_name="cosineannealing", lr_warm_up_steps=3, lr_end=1e-3)),
        ("jumprelu", dict(lr_warm_up_steps=4)),
    ],
)
def test_training_run_equals_saelens_trainer(case, extra):
    ours, lens, tc = _pair(case)
    steps, batch_size = 40, 32
    tc = TrainConfig(**{**tc.to_dict(), "lr": 1e-2, "dead_feature_window": 3, **extra})
    batches = [_batch(i, batch_size) for i in range(steps)]
    trainer = SAETrainer(
        [ours], tc, total_steps=steps, init=False, verbose=False, feature_sampling_window=1000
    )
    trainer.fit({HOOK: b} for b in batches)
    lens_trainer = LensTrainer(
        SAETrainerConfig(
            total_training_samples=steps * batch_size,
            train_batch_size_samples=batch_size,
            lr=tc.lr,
            lr_end=tc.lr_end if tc.lr_end is not None else tc.lr / 10,
            lr_scheduler_name=tc.lr_scheduler_name,
            lr_warm_up_steps=tc.lr_warm_up_steps,
            lr_decay_steps=tc.lr_decay_steps,
            dead_feature_window=3,
            feature_sampling_window=1000,
            logger=LoggingConfig(log_to_wandb=False),
        ),
        lens,
        iter(batches),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lens_trainer.fit()
    with torch.no_grad():  # compare inference weights: fold top-k decoder norms as ours does
        state = dict(lens.state_dict())
        if case == "topk":
            norm = state["W_dec"].norm(dim=-1)
            state = {
                **state,
                "b_enc": state["b_enc"] * norm,
                "W_enc": state["W_enc"] * norm,
                "W_dec": state["W_dec"] / norm[:, None],
            }
    for name, p in ours.state_dict().items():
        torch.testing.assert_close(p, state[name], atol=2e-4, rtol=2e-4, msg=name)
    torch.testing.assert_close(
        trainer.slots[0].since_fired, lens_trainer.n_forward_passes_since_fired
    )
    torch.testing.assert_close(trainer.slots[0].act_freq, lens_trainer.act_freq_scores)
    assert lens_trainer.dead_neurons.any() or case != "topk"  # the aux loss was exercised


@pytest.mark.parametrize(
    "name,kw",
    [
        ("constant", dict(warm_up_steps=7, decay_steps=11)),
        ("cosineannealing", dict(warm_up_steps=5, decay_steps=6, lr_end=0.02)),
        ("cosineannealing", dict(warm_up_steps=0, decay_steps=0, lr_end=0.01)),
    ],
)
def test_lr_schedule_equals_saelens(name, kw):
    total, lr = 50, 0.1
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    lr_end = kw.get("lr_end", lr)
    sched = get_lr_scheduler(
        name,
        opt,
        training_steps=total,
        lr=lr,
        warm_up_steps=kw["warm_up_steps"],
        decay_steps=kw["decay_steps"],
        lr_end=lr_end,
        num_cycles=1,
    )
    for step in range(total):
        want = opt.param_groups[0]["lr"]
        got = lr * lr_factor(step, total, kw["warm_up_steps"], kw["decay_steps"], name, lr_end / lr)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), step
        opt.step()
        sched.step()


def test_coefficient_warm_up_equals_saelens():
    from sae_lens.training.optim import CoefficientScheduler

    from lookingglass.sae.training import coefficient

    sched = CoefficientScheduler(warm_up_steps=7, final_value=2.5)
    for step in range(12):  # SAELens's trainer reads .value, then steps after the update
        assert coefficient(step, 2.5, 7) == pytest.approx(sched.value), step
        sched.step()
