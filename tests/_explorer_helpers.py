"""Builders for the explorer's tests: a small model on disk with a tokenizer trained on the
shipped corpus, a bench store with a logged run and its plots, and a snapshots folder.

Everything is built offline from fixed seeds in a few seconds. `shipped_or_tiny_model`
gives the shipped default model when it exists (the end-to-end test checks real
findings on it) and the small random model otherwise.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.loading.registry import packaged_models
from lookingglass.training import load_corpus, train_tokenizer

SHIPPED = "lookingglass-attn2"
TINY = dict(
    n_layers=2,
    d_model=64,
    n_heads=4,
    d_head=16,
    n_ctx=128,
    attn_only=True,
    normalization_type="LN",
    seed=0,
    model_name="explorer-test",
)


@functools.cache
def tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on 30 chapters of the shipped corpus."""
    return train_tokenizer(load_corpus().train[:30], vocab_size=vocab_size)


def tiny_model(vocab_size: int = 512, seed: int = 0) -> HookedTransformer:
    """A random 2-layer attention-only model with `tiny_tokenizer`. Weights are drawn
    wider than GPT-2's initialization, so attention is not uniform."""
    tokenizer = tiny_tokenizer(vocab_size)
    model = HookedTransformer(
        ModelConfig(**{**TINY, "seed": seed}, d_vocab=len(tokenizer)), tokenizer
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("W_"):
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return model


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Save `tiny_model` to `folder` (lookingglass's own format)."""
    tiny_model(seed=seed).save_pretrained(folder)
    return folder


def shipped_or_tiny_model(folder: Path) -> str:
    """The shipped model's name if it is installed, else a tiny model saved in `folder`."""
    if SHIPPED in packaged_models():
        return SHIPPED
    return str(save_tiny_model(folder))


def make_store(path: Path) -> Path:
    """A bench store with one logged run of `toy_losses`, whose result is plotted."""
    from lookingglass import plot
    from lookingglass.bench import Bench, PlotSpec

    def curve(result):
        return plot.training_curves({"step": [1, 2, 3], "loss": result["loss"]}, title="toy losses")

    with Bench(None, str(path), progress=False) as bench:

        @bench.plot_results(PlotSpec(curve, name="curve", formats=("plotly", "png")))
        def toy_losses(scale: float) -> dict:
            return {"loss": [3.0 * scale, 2.0 * scale, 1.5 * scale], "note": "toy"}

        toy_losses(1.0)
    return path


def make_dynamics_folder(folder: Path, n_layers: int = 2, n_heads: int = 4) -> Path:
    """A run folder with `dynamics.npz` as `lookingglass replicate` writes: an induction
    head (L1H2) forming between steps 20 and 40."""
    from lookingglass.training.dynamics import Dynamics

    folder.mkdir(parents=True, exist_ok=True)
    steps = np.array([0, 10, 20, 40, 80, 160])
    induction = np.full((len(steps), n_layers, n_heads), 0.02)
    induction[:, 1, 2] = [0.02, 0.03, 0.05, 0.6, 0.8, 0.85]
    previous = np.full((len(steps), n_layers, n_heads), 0.1)
    rng = np.random.default_rng(0)
    loss_vectors = (
        5.0 - np.linspace(0, 2, len(steps))[:, None] + 0.1 * rng.standard_normal((len(steps), 50))
    )
    position_loss = np.tile(np.linspace(4.0, 3.0, 63), (len(steps), 1))
    dynamics = Dynamics(
        steps,
        loss_vectors,
        induction,
        previous,
        position_loss,
        position_loss.mean(1),
        position_loss[:, -1] - position_loss[:, 5],
    )
    dynamics.save(folder / "dynamics.npz")
    return folder


def make_snapshots(folder: Path, steps=(0, 10, 20)) -> Path:
    """A snapshots folder of the tiny model at a few "steps" (different seeds), with
    an index.json of losses, as `SnapshotSaver` writes."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(steps):
        tiny_model(seed=i).save_pretrained(folder / f"step_{step:06d}")
    index = {
        "steps": list(steps),
        "train_loss": {str(s): 6.0 - i for i, s in enumerate(steps)},
        "eval_loss": {},
    }
    (folder / "index.json").write_text(json.dumps(index))
    return folder
