"""Learning-rate and coefficient schedules, as SAELens 6 steps them.

`lr_factor(step)` is the multiplier of the base learning rate at optimizer step `step`
(0-based), matching SAELens's `get_lr_scheduler` (a `SequentialLR` of a linear warm-up
from lr/warm_up_steps to lr over `warm_up_steps` steps, a constant or cosine main phase
down to `lr_end`, and a linear decay to 0 over the last `decay_steps` steps).
`coefficient(step)` is SAELens's `CoefficientScheduler`: the sparsity coefficient
(L1 or L0) ramps linearly from 0 to its final value over `warm_up_steps` steps.
"""

from __future__ import annotations

import math

from lookingglass.errors import ConfigError

LR_SCHEDULERS = ("constant", "cosineannealing")


def lr_factor(
    step: int,
    total_steps: int,
    warm_up_steps: int = 0,
    decay_steps: int = 0,
    scheduler: str = "constant",
    lr_end_factor: float | None = None,
) -> float:
    """The learning-rate multiplier at 0-based step `step` of `total_steps`.

    Args:
        lr_end_factor: lr_end / lr (the cosine phase's floor and where the decay starts);
            SAELens's default lr_end is lr / 10 for cosine, lr for constant.
    """
    if scheduler not in LR_SCHEDULERS:
        raise ConfigError(f"lr scheduler {scheduler!r} is not one of {LR_SCHEDULERS}.")
    if lr_end_factor is None:
        lr_end_factor = 1.0 if scheduler == "constant" else 0.1
    if scheduler == "constant":
        lr_end_factor = 1.0
    if warm_up_steps > 0 and step < warm_up_steps:
        # LinearLR(start_factor=1/w, end_factor=1, total_iters=w-1)
        if warm_up_steps == 1:
            return 1.0
        start = 1 / warm_up_steps
        return start + (1 - start) * step / (warm_up_steps - 1)
    decay_start = total_steps - decay_steps
    if decay_steps > 0 and step >= decay_start:
        # LinearLR(start_factor=lr_end/lr, end_factor=0, total_iters=decay_steps)
        frac = min(step - decay_start, decay_steps) / decay_steps
        return lr_end_factor * (1 - frac)
    if scheduler == "constant":
        return 1.0
    main_steps = max(total_steps - warm_up_steps - decay_steps, 1)
    t = step - warm_up_steps
    # CosineAnnealingLR(T_max=main_steps, eta_min=lr_end) in closed form
    return lr_end_factor + (1 - lr_end_factor) * (1 + math.cos(math.pi * t / main_steps)) / 2


def coefficient(step: int, final_value: float, warm_up_steps: int = 0) -> float:
    """The sparsity coefficient used at 0-based step `step` (0 at step 0 with warm-up)."""
    if warm_up_steps > 0 and step < warm_up_steps:
        return final_value * step / warm_up_steps
    return final_value
