"""`TrainConfig`: how one SAE is trained (its loss, optimizer and schedules).

Field names follow SAELens 6's training configs (`l1_coefficient`, `l1_warm_up_steps`,
`lp_norm`, `aux_loss_coefficient`, `jumprelu_bandwidth`, `jumprelu_init_threshold`,
`l0_coefficient`, `l0_warm_up_steps`, `pre_act_loss_coefficient`, `decoder_init_norm`,
`lr`, `lr_warm_up_steps`, `lr_decay_steps`, `lr_scheduler_name`, `lr_end`,
`adam_beta1/2`, `dead_feature_window`) and mean what they mean there. The SAE's own
shape and hook live in its `SAEConfig`; one trainer can train several SAEs (different
hooks or widths), each with its own `TrainConfig`, from one stream of activations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lookingglass.errors import ConfigError
from lookingglass.sae.training.schedule import LR_SCHEDULERS

TRAINABLE = ("standard", "topk", "jumprelu")


@dataclass
class TrainConfig:
    """Loss and optimizer settings for one SAE.

    Losses (per token: summed over d_in / d_sae, then averaged over the batch):
      standard: ‖x - x̂‖² + λ_t ‖f ⊙ ‖W_dec‖‖_p (SAELens / Anthropic April 2024 update:
          the L1 penalty weighted by decoder row norms; λ ramps up over l1_warm_up_steps)
      topk:     ‖x - x̂‖² + α · min(n_dead / k_aux, 1) ‖e - ê_dead‖² (Gao et al. 2024 aux-k,
          k_aux = d_in / 2, ê_dead reconstructing the residual e from the top k_aux dead
          latents' pre-activations, without b_dec)
      jumprelu: ‖x - x̂‖² + λ_t Σ 1[h > θ] (Rajamanoharan et al. 2024: a rectangle-kernel
          straight-through estimator of width `jumprelu_bandwidth` gives θ its gradient)
          (+ Anthropic's pre-activation loss on dead latents if `pre_act_loss_coefficient`)
    Every step clips the gradient norm to 1 (as SAELens) and steps Adam.
    """

    lr: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    lr_scheduler_name: str = "constant"
    lr_warm_up_steps: int = 0
    lr_decay_steps: int = 0
    lr_end: float | None = None
    l1_coefficient: float = 1.0
    l1_warm_up_steps: int = 0
    lp_norm: float = 1.0
    aux_loss_coefficient: float = 1.0
    jumprelu_bandwidth: float = 0.05
    jumprelu_init_threshold: float = 0.01
    l0_coefficient: float = 1.0
    l0_warm_up_steps: int = 0
    pre_act_loss_coefficient: float | None = None
    decoder_init_norm: float | None = 0.1
    b_dec_init: str = "zeros"
    dead_feature_window: int = 1000
    grad_clip_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.lr_scheduler_name not in LR_SCHEDULERS:
            raise ConfigError(
                f"lr_scheduler_name={self.lr_scheduler_name!r}; use one of {LR_SCHEDULERS}."
            )
        if self.b_dec_init not in ("zeros", "mean"):
            raise ConfigError(f"b_dec_init={self.b_dec_init!r}; use 'zeros' or 'mean'.")
        if self.lr_decay_steps > 0 and self.lr_scheduler_name != "constant" and self.lr_end == 0:
            raise ConfigError("lr_decay_steps with lr_end=0 would decay from 0 to 0.")
        if self.jumprelu_bandwidth <= 0:
            raise ConfigError(f"jumprelu_bandwidth must be > 0 (got {self.jumprelu_bandwidth}).")

    @property
    def lr_end_factor(self) -> float | None:
        return None if self.lr_end is None else self.lr_end / self.lr

    def to_dict(self) -> dict:
        return asdict(self)
