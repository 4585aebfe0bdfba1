"""Correlation attention vs dot-product attention: same data, same size, same steps.

Trains the same small language model twice per seed on the King James Bible corpus (the
shipped models' data and 4,096-token tokenizer), once with ordinary dot-product
attention (`attention_score="dot"`) and once with correlation attention
(`attention_score="correlation"`, lags 0..3; see `lookingglass/model/key_mixing.py`), and
reports the held-out loss in nats and bits per token. Everything else is identical:
initialization seed (the correlation model's lag weights start at the dot product),
data order, schedule.

    python examples/compare_correlation_attention.py [--steps 500] [--seeds 0 1]
        [--out docs/correlation_attention.json] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from lookingglass import HookedTransformer, ModelConfig
from lookingglass.analysis.heads import induction_scores
from lookingglass.training.default_models import corpus_data
from lookingglass.training.train import TrainConfig, train

N_CTX = 128
MODEL = dict(n_layers=2, d_model=64, d_head=16, d_mlp=256, n_ctx=N_CTX, act_fn="gelu")


def run(attention_score: str, seed: int, steps: int, tokenizer, train_rows, heldout_rows) -> dict:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default="docs/correlation_attention.json")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    corpus, tokenizer, train_rows, heldout_rows = corpus_data(N_CTX)
    records = [
        run(kind, seed, args.steps, tokenizer, train_rows, heldout_rows)
        for seed in args.seeds
        for kind in ("dot", "correlation")
    ]
    summary = {}
    for kind in ("dot", "correlation"):
        losses = [r["heldout_loss"] for r in records if r["attention_score"] == kind]
        summary[kind] = {
            "mean_heldout_loss": round(sum(losses) / len(losses), 4),
            "mean_bits_per_token": round(sum(losses) / len(losses) / math.log(2), 4),
        }
    out = {
        "model": MODEL,
        "d_vocab": len(tokenizer),
        "corpus": corpus.version,
        "corpus_sha256": corpus.sha256,
        "heldout_tokens": int(heldout_rows.numel()),
        "runs": records,
        "summary": summary,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
