"""Correlation attention vs dot-product attention: same data, same size, same steps.

Two comparisons (`--data`):

- `kjv`: the same small language model (2 layers with MLPs) trained twice per seed on
  the King James Bible corpus (the shipped models' data and 4,096-token tokenizer), once
  with dot-product attention and once with correlation attention (lags 0..3; see
  `lookingglass/model/key_mixing.py`); reports the held-out loss. Writes
  docs/correlation_attention.json.
- `replication`: the induction-heads replication's data and models
  (`lookingglass replicate induction-heads`, default size: 2,500 steps, vocabulary 128,
  random tokens with copied segments): attention-only 1-layer correlation, 1-layer
  dot-product and 2-layer dot-product models, per seed; reports the best induction
  (prefix-matching) score through training, the final ICL score and held-out loss.
  Writes docs/correlation_attention_replication.json.

Everything else is identical within a seed: initialization (the correlation model's lag
weights start at the dot product), data, data order, schedule.

    python examples/compare_correlation_attention.py --data replication --seeds 0 1 2
    python examples/compare_correlation_attention.py --data kjv --steps 500 --seeds 0 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.analysis.heads import induction_scores
from lookingglass.training.dynamics import icl_score, per_position_losses
from lookingglass.training.replicate import DEFAULT, make_data, model_config
from lookingglass.training.train import TrainConfig, train

N_CTX = 128
MODEL = dict(n_layers=2, d_model=64, d_head=16, d_mlp=256, n_ctx=N_CTX, act_fn="gelu")
REPLICATION_MODELS = {
    "attn1-correlation": dict(n_layers=1, attention_score="correlation"),
    "attn1-dot": dict(n_layers=1),
    "attn2-dot": dict(n_layers=2),
}


# ------------------------------------------------------------------ replication data
def _probe_scores(model: Any) -> torch.Tensor:
    """Induction scores as the replication measures them (24-token halves, 20 rows, no BOS)."""
    half = min(50, model.cfg.n_ctx // 2)
    return induction_scores(model, seq_len=half, n_seq=20, prepend_bos=False)


def replication_run(
    overrides: dict[str, Any],
    seed: int,
    setup: Any = None,
    n_steps: int | None = None,
    every: int = 100,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Train one attention-only model on the replication's data (`DEFAULT` settings with
    this seed) and measure it.

    Args:
        overrides: `ModelConfig` fields replacing the replication's (e.g. `n_layers`).
        seed: the replication seed (initialization, data, data order).
        setup: called with the fresh model before training (e.g. to set the smear).
        n_steps: training steps (default: the replication's 2,500).
        every: measure the best induction score (and a smear's mean weight on the current
            key) every this many steps.
        stop_at: stop after this step; the schedule still spans `n_steps`.

    Returns:
        A JSON-serializable record: the best induction score every `every` steps, the first
        step it exceeded the replication's threshold (0.4), the final per-head scores,
        held-out loss, ICL score, and the key-mixing parameters.
    """
    settings = dataclasses.replace(DEFAULT, seed=seed, n_steps=n_steps or DEFAULT.n_steps)
    train_rows, eval_rows = make_data(settings)
    cfg = dataclasses.replace(model_config("attn1", settings), **overrides)
    model = HookedTransformer(cfg)
    if setup is not None:
        setup(model)
    curve: list[list[float]] = []
    smear_curve: list[list[float]] = []
    last = stop_at if stop_at is not None else settings.n_steps

    def measure(state: Any) -> None:
        if state.step % every == 0 or state.step == last:
            curve.append([state.step, round(float(_probe_scores(state.model).max()), 3)])
            mixer = state.model.blocks[0].attn.key_mixer
            if hasattr(mixer, "smear_logit"):
                weight = torch.sigmoid(mixer.smear_logit.detach()).mean()
                smear_curve.append([state.step, round(float(weight), 4)])

    config = TrainConfig(
        n_steps=settings.n_steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        warmup_steps=settings.warmup_steps,
        min_lr_ratio=settings.min_lr_ratio,
        eval_every=0,
        seed=seed,
        progress=False,
    )
    result = train(model, train_rows, config, callbacks=[measure], stop_at_step=stop_at)
    losses = per_position_losses(model, eval_rows).mean(0)
    final = _probe_scores(model)
    above = [step for step, score in curve if score > settings.induction_threshold]
    record = {
        "seed": seed,
        "steps": settings.n_steps,
        "stopped_at": last,
        "max_induction_score": round(float(final.max()), 3),
        "induction_scores": [[round(float(x), 3) for x in row] for row in final],
        "first_step_above_threshold": above[0] if above else None,
        "final_icl_score": round(float(icl_score(losses)), 3),
        "heldout_loss": round(float(losses.mean()), 4),
        "train_seconds": round(result.seconds, 1),
        "induction_curve": curve,
    }
    mixer = model.blocks[0].attn.key_mixer
    if hasattr(mixer, "lag_weights"):
        record["lag_weights"] = [
            [[round(float(w), 3) for w in head] for head in b.attn.key_mixer.lag_weights.detach()]
            for b in model.blocks
        ]
    if hasattr(mixer, "smear_logit"):
        record["smear_weight_curve"] = smear_curve
        record["smear_weight_on_current_key"] = [
            [round(float(w), 3) for w in torch.sigmoid(b.attn.key_mixer.smear_logit.detach())]
            for b in model.blocks
        ]
    return record


def compare_on_replication_data(
    seeds: list[int], n_steps: int | None, partial: Path | None = None
) -> dict[str, Any]:
    """`replication_run` of every model in `REPLICATION_MODELS` for every seed (model by
    model), writing the runs so far to `partial` after each."""
    runs = []
    for name, overrides in REPLICATION_MODELS.items():
        for seed in seeds:
            record = {"model": name, **replication_run(overrides, seed, n_steps=n_steps)}
            print(json.dumps({k: v for k, v in record.items() if k != "induction_curve"}))
            runs.append(record)
            if partial is not None:
                partial.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    summary = {}
    for name in REPLICATION_MODELS:
        scores = [r["max_induction_score"] for r in runs if r["model"] == name]
        summary[name] = {
            "max_induction_score_by_seed": scores,
            "seeds_with_induction_head": sum(s > DEFAULT.induction_threshold for s in scores),
            "final_icl_score_by_seed": [r["final_icl_score"] for r in runs if r["model"] == name],
            "heldout_loss_by_seed": [r["heldout_loss"] for r in runs if r["model"] == name],
        }
    return {
        "data": "the induction-heads replication's (lookingglass.training.replicate.DEFAULT, "
        "seed varied)",
        "settings": dataclasses.asdict(DEFAULT),
        "runs": runs,
        "summary": summary,
    }


# -------------------------------------------------------------------- King James Bible
def kjv_run(
    attention_score: str, seed: int, steps: int, tokenizer, train_rows, heldout_rows
) -> dict:
    """One language model on the corpus; its held-out loss and eval curve."""
    cfg = ModelConfig(d_vocab=len(tokenizer), seed=seed, attention_score=attention_score, **MODEL)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    config = TrainConfig(
        n_steps=steps,
        batch_size=16,
        lr=3e-3,
        warmup_steps=50,
        eval_every=max(1, steps // 5),
        eval_rows=len(heldout_rows),
        seed=seed,
        progress=False,
    )
    result = train(model, train_rows, config, eval_data=heldout_rows)
    loss = result.final_eval_loss
    record = {
        "attention_score": attention_score,
        "seed": seed,
        "steps": steps,
        "heldout_loss": round(loss, 4),
        "bits_per_token": round(loss / math.log(2), 4),
        "final_train_loss": round(result.final_train_loss, 4),
        "max_induction_score": round(float(induction_scores(model).max()), 3),
        "train_seconds": round(result.seconds, 1),
        "eval_curve": [
            [s, round(v, 4)] for s, v in zip(result.eval_steps, result.eval_losses, strict=True)
        ],
    }
    if attention_score == "correlation":
        weights = torch.stack([b.attn.key_mixer.lag_weights.detach() for b in model.blocks])
        record["lag_weights_mean_abs_by_lag"] = [
            round(float(w), 3) for w in weights.abs().mean(dim=(0, 1))
        ]
    print(json.dumps({k: v for k, v in record.items() if k != "eval_curve"}), flush=True)
    return record


def compare_on_kjv(seeds: list[int], steps: int) -> dict[str, Any]:
    """`kjv_run` with both kinds of attention for every seed, and the mean losses."""
    from lookingglass.training.default_models import corpus_data

    corpus, tokenizer, train_rows, heldout_rows = corpus_data(N_CTX)
    records = [
        kjv_run(kind, seed, steps, tokenizer, train_rows, heldout_rows)
        for seed in seeds
        for kind in ("dot", "correlation")
    ]
    summary = {}
    for kind in ("dot", "correlation"):
        losses = [r["heldout_loss"] for r in records if r["attention_score"] == kind]
        summary[kind] = {
            "mean_heldout_loss": round(sum(losses) / len(losses), 4),
            "mean_bits_per_token": round(sum(losses) / len(losses) / math.log(2), 4),
        }
    return {
        "model": MODEL,
        "d_vocab": len(tokenizer),
        "corpus": corpus.version,
        "corpus_sha256": corpus.sha256,
        "heldout_tokens": int(heldout_rows.numel()),
        "runs": records,
        "summary": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["kjv", "replication"], default="kjv")
    parser.add_argument("--steps", type=int, default=None, help="default: 500 (kjv), 2500")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default=None, help="default: docs/correlation_attention*.json")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.data == "kjv":
        out = compare_on_kjv(args.seeds, args.steps or 500)
        path = args.out or "docs/correlation_attention.json"
    else:
        path = args.out or "docs/correlation_attention_replication.json"
        out = compare_on_replication_data(args.seeds, args.steps, Path(path))
    out["total_seconds"] = round(time.perf_counter() - started, 1)
    out["command"] = "python examples/compare_correlation_attention.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if v is not None and k != "out"
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
