"""SAE training refuses what it cannot do, before any work, saying how to fix it."""

from __future__ import annotations

import pytest
import torch

from lookingglass.errors import ConfigError, InputError
from lookingglass.sae import SAE, SAEConfig
from lookingglass.sae.training import SAETrainer, TrainConfig


def _sae(arch: str = "topk", **kw) -> SAE:
    kw = {"k": 2, **kw} if arch == "topk" else kw
    return SAE(SAEConfig(d_in=4, d_sae=8, architecture=arch, hook_name="h", **kw))


def test_untrainable_architectures_and_settings_are_refused():
    with pytest.raises(ConfigError, match="training supports"):
        SAETrainer([_sae("gated")], TrainConfig(), total_steps=1)
    with pytest.raises(ConfigError, match="aux loss"):
        SAETrainer([_sae(normalize_activations="layer_norm")], TrainConfig(), total_steps=1)
    with pytest.raises(ConfigError, match="one TrainConfig or one per SAE"):
        SAETrainer([_sae(), _sae()], [TrainConfig()] * 3, total_steps=1)
    with pytest.raises(ConfigError, match="lr_scheduler_name"):
        TrainConfig(lr_scheduler_name="linear")


def test_running_out_of_data_and_missing_hooks_are_reported():
    trainer = SAETrainer([_sae()], TrainConfig(), total_steps=3, verbose=False)
    with pytest.raises(InputError, match="ran out after 1 of 3 steps"):
        trainer.fit([{"h": torch.randn(8, 4)}])
    with pytest.raises(InputError, match="holds no h"):
        trainer.step({"other": torch.randn(8, 4)})
