"""Training SAEs: top-k (aux-k), JumpReLU and standard (L1) losses as SAELens 6 computes
them, several SAEs from one pass of activations, data-parallel over `torch.distributed`.

    from lookingglass.sae.training import SAETrainer, TrainConfig, ShardActivations
    sae = SAE(SAEConfig(d_in=576, d_sae=4608, architecture="topk", k=32,
                        rescale_acts_by_decoder_norm=True,
                        hook_name="blocks.15.hook_resid_post"))
    data = ShardActivations("acts/", [sae.cfg.hook_name], batch_size=4096)
    SAETrainer([sae], TrainConfig(lr=4e-4), total_steps=2000).fit(data)

See docs/sae.md ("Training").
"""

from lookingglass.sae.training.config import TRAINABLE, TrainConfig
from lookingglass.sae.training.data import LiveActivations, ShardActivations
from lookingglass.sae.training.losses import StepOutput, training_forward
from lookingglass.sae.training.metrics import evaluate_sae, fit_pca, pca_baseline
from lookingglass.sae.training.schedule import coefficient, lr_factor
from lookingglass.sae.training.trainer import SAETrainer, finalize, init_for_training

__all__ = [
    "TRAINABLE",
    "LiveActivations",
    "SAETrainer",
    "ShardActivations",
    "StepOutput",
    "TrainConfig",
    "coefficient",
    "evaluate_sae",
    "fit_pca",
    "pca_baseline",
    "finalize",
    "init_for_training",
    "lr_factor",
    "training_forward",
]
