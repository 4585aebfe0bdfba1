"""`SAETrainer`: train one or several SAEs on one stream of activations, on N ranks.

Each step takes one global batch `{hook_name: [batch_size, d_in]}`; every SAE trains on
its hook's slice (several widths of one hook, or several hooks, from one pass of the
data). Under `torch.distributed` (torchrun; gloo on CPU, NCCL on GPUs) rank r keeps rows
[r B/N, (r+1) B/N) of the batch and gradients are averaged across ranks before the
(clipped, Adam) update, so N ranks follow the single-process run up to float rounding.

Per SAE, as SAELens's `SAETrainer`: Adam with a warm-up/decay learning-rate schedule,
a linear warm-up of the sparsity coefficient, gradient-norm clipping to 1, and dead-latent
tracking (`n_forward_passes_since_fired`, a latent is dead once it has not fired for
`dead_feature_window` steps; firing frequencies over `feature_sampling_window` steps).
`normalize_activations="expected_average_only_in"` scales inputs to mean norm √d_in during
training and folds the factor into the weights at the end, as SAELens does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from lookingglass.errors import ConfigError, InputError
from lookingglass.sae.sae import SAE
from lookingglass.sae.training.config import TrainConfig
from lookingglass.sae.training.losses import check_trainable, training_forward
from lookingglass.sae.training.schedule import coefficient, lr_factor


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def init_for_training(sae: SAE, cfg: TrainConfig, seed: int = 0) -> None:
    """SAELens's training initialisation: Kaiming-uniform W_dec with rows scaled to
    `decoder_init_norm`, W_enc = W_decᵀ, zero biases, JumpReLU threshold at
    `jumprelu_init_threshold`."""
    w_dec = torch.empty(sae.W_dec.shape)
    torch.nn.init.kaiming_uniform_(w_dec, generator=torch.Generator().manual_seed(seed))
    if cfg.decoder_init_norm is not None:
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * cfg.decoder_init_norm
    sae.W_dec.copy_(w_dec)
    sae.W_enc.copy_(w_dec.T)
    sae.b_dec.zero_()
    sae.b_enc.zero_()
    if sae.cfg.architecture == "jumprelu":
        sae.threshold.fill_(cfg.jumprelu_init_threshold)


@dataclass
class _Slot:
    """One SAE with its optimizer, schedule and firing statistics."""

    sae: SAE
    cfg: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    since_fired: Tensor
    act_freq: Tensor
    n_freq_tokens: int = 0
    scale: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def hook(self) -> str:
        return self.sae.cfg.hook_name

    def dead_mask(self) -> Tensor:
        return self.since_fired > self.cfg.dead_feature_window

    def feature_sparsity(self) -> Tensor:
        return self.act_freq / max(self.n_freq_tokens, 1)


class SAETrainer:
    """Train `saes` (each with its `TrainConfig`) for `total_steps` global batches.

    Args:
        saes: SAEs to train in place (architectures standard, topk, jumprelu); each
            reads the hook named by its `cfg.hook_name`.
        cfgs: one `TrainConfig` for all, or one per SAE.
        total_steps: optimizer steps (the learning-rate schedule's length).
        feature_sampling_window: steps over which firing frequencies are counted (then
            reset), as SAELens's.
        init: initialise the weights as SAELens's training SAEs do (else keep them).
    """

    def __init__(
        self,
        saes: Sequence[SAE],
        cfgs: TrainConfig | Sequence[TrainConfig],
        total_steps: int,
        feature_sampling_window: int = 2000,
        log_every: int = 100,
        init: bool = True,
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        cfgs = [cfgs] * len(saes) if isinstance(cfgs, TrainConfig) else list(cfgs)
        if not saes or len(cfgs) != len(saes):
            raise ConfigError(f"pass one TrainConfig or one per SAE ({len(saes)} SAEs).")
        if total_steps < 1:
            raise ConfigError(f"total_steps must be >= 1 (got {total_steps}).")
        self.rank, self.world = _world()
        self.total_steps, self.window, self.log_every = (
            total_steps,
            feature_sampling_window,
            log_every,
        )
        self.verbose = verbose and self.rank == 0
        self.n_steps, self.n_tokens, self.seconds = 0, 0, 0.0
        self.slots = [
            self._slot(s, c, i, init, seed) for i, (s, c) in enumerate(zip(saes, cfgs, strict=True))
        ]

    def _slot(self, sae: SAE, cfg: TrainConfig, i: int, init: bool, seed: int) -> _Slot:
        check_trainable(sae)
        if sae.cfg.hook_name is None:
            raise ConfigError("every SAE needs cfg.hook_name (the hook it is trained on).")
        if init:
            init_for_training(sae, cfg, seed + i)
        if self.world > 1:
            for p in sae.parameters():
                dist.broadcast(p.data, 0)
        opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
        schedule = lambda step, c=cfg: lr_factor(  # noqa: E731
            step,
            self.total_steps,
            c.lr_warm_up_steps,
            c.lr_decay_steps,
            c.lr_scheduler_name,
            c.lr_end_factor,
        )
        zeros = torch.zeros(sae.cfg.d_sae, device=sae.device)
        return _Slot(
            sae,
            cfg,
            opt,
            torch.optim.lr_scheduler.LambdaLR(opt, schedule),
            zeros.clone(),
            zeros.clone(),
        )

    # ------------------------------------------------------------------ one step
    def _local(self, x: Tensor) -> Tensor:
        if x.shape[0] % self.world:
            raise InputError(f"batch size {x.shape[0]} is not a multiple of {self.world} ranks")
        b = x.shape[0] // self.world
        return x[self.rank * b : (self.rank + 1) * b]

    def _all_reduce(self, t: Tensor, op=None) -> Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
        return t

    @torch.no_grad()
    def _prepare(self, slot: _Slot, x: Tensor) -> None:
        """First batch: the input scaling factor and the b_dec initialisation."""
        if slot.sae.cfg.normalize_activations == "expected_average_only_in":
            norm = self._all_reduce(x.norm(dim=-1).mean().reshape(1)) / self.world
            slot.scale = math.sqrt(x.shape[-1]) / float(norm)
        if slot.cfg.b_dec_init == "mean":
            mean = self._all_reduce(x.mean(0) * (slot.scale or 1.0)) / self.world
            slot.sae.b_dec.copy_(mean)

    def step(self, batch: dict[str, Tensor]) -> list[dict[str, float]]:
        """One optimizer step of every SAE on the global batch; returns their metrics."""
        out = []
        for slot in self.slots:
            if slot.hook not in batch:
                raise InputError(f"the batch holds no {slot.hook}; it has {sorted(batch)}")
            x = self._local(batch[slot.hook]).to(slot.sae.device, slot.sae.dtype)
            if self.n_steps == 0:
                self._prepare(slot, x)
            if slot.scale is not None:
                x = x * slot.scale
            out.append(self._step_one(slot, x, batch[slot.hook].shape[0]))
        self.n_steps += 1
        self.n_tokens += next(iter(batch.values())).shape[0]
        return out

    def _step_one(self, slot: _Slot, x: Tensor, global_batch: int) -> dict[str, float]:
        sae, cfg = slot.sae, slot.cfg
        if self.n_steps > 0 and self.n_steps % self.window == 0:
            slot.act_freq.zero_()
            slot.n_freq_tokens = 0
        if sae.cfg.architecture == "jumprelu":
            with torch.no_grad():
                sae.threshold.clamp_(min=0.0)
        coeffs = {
            "l1": coefficient(self.n_steps, cfg.l1_coefficient, cfg.l1_warm_up_steps),
            "l0": coefficient(self.n_steps, cfg.l0_coefficient, cfg.l0_warm_up_steps),
        }
        sae.train()
        result = training_forward(sae, x, cfg, coeffs, slot.dead_mask())
        with torch.no_grad():
            counts, _ = result.fired()
            counts = self._all_reduce(counts.float())
            slot.since_fired += 1
            slot.since_fired[counts > 0] = 0
            slot.act_freq += counts
            slot.n_freq_tokens += global_batch
        result.loss.backward()
        params = [p for p in sae.parameters() if p.grad is not None]
        if self.world > 1:
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            self._all_reduce(flat).div_(self.world)
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
                offset += p.numel()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip_norm)
        lr = slot.optimizer.param_groups[0]["lr"]
        slot.optimizer.step()
        slot.optimizer.zero_grad(set_to_none=True)
        slot.scheduler.step()
        metrics = self._metrics(slot, result, lr, coeffs)
        if self.log_every and (self.n_steps + 1) % self.log_every == 0:
            slot.history.append(metrics)
        return metrics

    @torch.no_grad()
    def _metrics(self, slot: _Slot, r: Any, lr: float, coeffs: dict) -> dict[str, float]:
        x, x_hat = r.sae_in.float(), r.sae_out.float()
        sums = torch.stack(
            [
                (x - x_hat).pow(2).sum(),
                x.pow(2).sum(),
                r.fired()[1].float(),
                torch.tensor(float(x.shape[0])),
                r.loss.detach().float() * x.shape[0],
            ]
        )
        mean_x = self._all_reduce(x.sum(0))
        sums = self._all_reduce(sums)
        n = float(sums[3])
        total_var = float(sums[1]) / n - float(mean_x.pow(2).sum()) / n**2
        mse = float(sums[0]) / n
        return {
            "step": self.n_steps,
            "loss": float(sums[4]) / n,
            "mse": mse,
            "explained_variance": 1 - mse / total_var if total_var > 0 else 0.0,
            "l0": float(sums[2]) / n,
            "dead": int(slot.dead_mask().sum()),
            "lr": lr,
            **{f"{k}_coefficient": v for k, v in coeffs.items()},
        }

    # ------------------------------------------------------------------ the loop
    def fit(self, batches: Iterable[dict[str, Tensor]]) -> list[SAE]:
        """Step through `batches` until `total_steps`; fold scalings; return the SAEs."""
        it = iter(batches)
        start = time.perf_counter()
        while self.n_steps < self.total_steps:
            try:
                batch = next(it)
            except StopIteration:
                raise InputError(
                    f"the data ran out after {self.n_steps} of {self.total_steps} steps; "
                    "pass more data, more epochs, or fewer steps"
                ) from None
            metrics = self.step(batch)
            if self.verbose and self.log_every and self.n_steps % self.log_every == 0:
                rate = self.n_tokens / (time.perf_counter() - start)
                for slot, m in zip(self.slots, metrics, strict=True):
                    print(
                        f"step {self.n_steps}/{self.total_steps} {slot.hook} "
                        f"d_sae={slot.sae.cfg.d_sae}: mse {m['mse']:.4g} "
                        f"ev {m['explained_variance']:.3f} "
                        f"l0 {m['l0']:.1f} dead {m['dead']} ({rate:.0f} tok/s)",
                        flush=True,
                    )
        self.seconds = time.perf_counter() - start
        for slot in self.slots:
            finalize(slot.sae, slot.scale)
        return [slot.sae for slot in self.slots]

    def log_feature_sparsity(self, i: int = 0) -> Tensor:
        """log10 firing frequency of SAE `i`'s latents over the last window (SAELens's
        `sparsity.safetensors`)."""
        return torch.log10(self.slots[i].feature_sparsity() + 1e-10).cpu()


@torch.no_grad()
def finalize(sae: SAE, scale: float | None) -> None:
    """Make a trained SAE an inference SAE: fold top-k decoder norms (SAELens's
    `_fold_norm_topk`, so W_dec rows have unit norm and rescaling is a no-op) and the
    input scaling factor into the weights (normalize_activations becomes 'none')."""
    if sae.cfg.architecture == "topk" and sae.cfg.rescale_acts_by_decoder_norm:
        norm = sae.W_dec.norm(dim=-1)
        sae.b_enc.mul_(norm)
        sae.W_enc.mul_(norm[None, :])
        sae.W_dec.div_(norm[:, None])
    if scale is not None:
        sae.W_enc.mul_(scale)
        sae.W_dec.div_(scale)
        sae.b_dec.div_(scale)
        sae.cfg.normalize_activations = "none"
