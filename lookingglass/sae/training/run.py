"""`train_saes`: build SAEs, train them from harvested shards or live from the model,
evaluate them on held-out text, and write each as an SAELens folder.

Each SAE goes to `out/<hook>-<architecture>-<d_sae>/` with `cfg.json`,
`sae_weights.safetensors`, `sparsity.safetensors` (log10 firing frequencies over the last
window, as SAELens) and `training.json` (the settings, the training curve every
`log_every` steps, tokens/s, and the evaluation: `evaluate_sae`'s metrics with a rank-L0
PCA baseline). Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from lookingglass.errors import InputError
from lookingglass.sae.config import SAEConfig
from lookingglass.sae.sae import SAE
from lookingglass.sae.training.config import TrainConfig
from lookingglass.sae.training.data import LiveActivations, ShardActivations
from lookingglass.sae.training.metrics import evaluate_sae, fit_pca, pca_baseline
from lookingglass.sae.training.trainer import SAETrainer
from lookingglass.utils.files import write_atomic


def sae_folder_name(sae: SAE) -> str:
    return f"{sae.cfg.hook_name}-{sae.cfg.architecture}-{sae.cfg.d_sae}"


def build_saes(
    hooks: list[str],
    widths: list[int],
    d_in: dict[str, int],
    architecture: str,
    k: int | None = None,
    model_name: str | None = None,
    normalize: bool = True,
    context_size: int | None = None,
) -> list[SAE]:
    """One SAE per (hook, width), in SAELens's config layout."""
    saes = []
    for hook in hooks:
        for width in widths:
            cfg = SAEConfig(
                d_in=d_in[hook],
                d_sae=width,
                architecture=architecture,
                hook_name=hook,
                k=k if architecture == "topk" else None,
                rescale_acts_by_decoder_norm=architecture == "topk",
                normalize_activations="expected_average_only_in" if normalize else "none",
                model_name=model_name,
                metadata={"context_size": context_size, "prepend_bos": True},
            )
            saes.append(SAE(cfg))
    return saes


def _sample(source: Any, hook: str, n: int) -> torch.Tensor:
    parts, have = [], 0
    for batch in source:
        parts.append(batch[hook])
        have += batch[hook].shape[0]
        if have >= n:
            break
    return torch.cat(parts)[:n]


def train_saes(
    saes: list[SAE],
    cfg: TrainConfig,
    source: ShardActivations | LiveActivations,
    total_steps: int,
    out: str | Path | None,
    eval_model: Any = None,
    eval_rows: torch.Tensor | None = None,
    pca_source: ShardActivations | LiveActivations | None = None,
    log_every: int = 50,
    seed: int = 0,
    settings: dict | None = None,
) -> tuple[SAETrainer, list[dict]]:
    """Train `saes` on `source` for `total_steps`; evaluate; write folders to `out`."""
    trainer = SAETrainer(saes, cfg, total_steps, log_every=log_every, seed=seed)
    trainer.fit(source)
    reports = []
    for i, slot in enumerate(trainer.slots):
        sae = slot.sae.eval()
        folder = Path(out) / sae_folder_name(sae) if out is not None and trainer.rank == 0 else None
        if folder is not None:  # the weights first: an evaluation failure loses nothing
            sae.save_model(folder, sparsity=trainer.log_feature_sparsity(i))
        report: dict[str, Any] = {
            "settings": settings or {},
            "train_config": cfg.to_dict(),
            "steps": trainer.n_steps,
            "tokens": trainer.n_tokens,
            "seconds": trainer.seconds,
            "tokens_per_second": trainer.n_tokens / max(trainer.seconds, 1e-9),
            "history": slot.history,
        }
        if eval_model is not None and eval_rows is not None:
            metrics = evaluate_sae(eval_model, sae, eval_rows)
            metrics.pop("feature_density")
            report["eval"] = metrics
            if pca_source is not None:
                k = max(1, round(metrics["l0"]))
                mean, comps = fit_pca(_sample(pca_source, sae.cfg.hook_name, 65536), k)
                baseline = pca_baseline(
                    eval_model, sae.cfg.hook_name, mean, comps, eval_rows, reference=metrics
                )
                report["pca_baseline"] = {"k": k, **baseline}
        reports.append(report)
        if folder is not None:
            write_atomic(folder / "training.json", json.dumps(report, indent=1) + "\n")
    return trainer, reports


def steps_for(tokens: int, batch_size: int) -> int:
    if tokens < batch_size:
        raise InputError(f"--tokens {tokens} is less than one batch of {batch_size}")
    return math.ceil(tokens / batch_size)
