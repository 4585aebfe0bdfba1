"""Forward and `run_with_cache` timings: HF SDPA, HF eager, TransformerLens 3.9 and
lookingglass on the same weights, interleaved in one process (see `common`).

One result per (model, batch x seq, torch threads): the median seconds of each op, the
load average before and after, the largest log-probability difference of ours and
TransformerLens's from HF SDPA, and the bytes a full cache holds.
"""

from __future__ import annotations

import torch
from common import interleaved_timings, load_average, tensor_bytes

BASE = "HF SDPA forward"

# TransformerLens materializes every pattern and score in its forward; a full cache at
# 2048 tokens (scores + patterns, n_heads x 2048 x 2048 floats per layer each) of a
# 12-layer model is ~5 GB per library. Above this many bytes a full cache is left out.
MAX_FULL_CACHE_BYTES = 6 * 2**30


def full_cache_bytes(cfg, batch: int, seq: int) -> int:
    """Bytes of a full lookingglass cache, mostly scores and patterns, estimated from the
    config (without running it)."""
    per_layer_attn = 2 * cfg.n_heads * seq * seq
    per_layer_rest = seq * (14 * cfg.d_model + 4 * cfg.n_heads * cfg.d_head + 3 * cfg.d_mlp)
    return 4 * batch * cfg.n_layers * (per_layer_attn + per_layer_rest)


def forward_ops(peers: dict, tokens: torch.Tensor, with_full_cache: bool) -> dict:
    """The timed ops on `tokens`, by row label."""
    hf_sdpa, hf_eager, tl, ours = (peers[k] for k in ("hf_sdpa", "hf_eager", "tl", "ours"))
    ops = {
        BASE: lambda: hf_sdpa(tokens),
        "HF eager forward": lambda: hf_eager(tokens),
        "TransformerLens forward": lambda: tl(tokens),
        "lookingglass forward": lambda: ours(tokens),
        "lookingglass run_with_cache (resid_post only)": lambda: ours.run_with_cache(
            tokens, names_filter=lambda n: n.endswith("hook_resid_post")
        ),
    }
    if with_full_cache:
        ops["lookingglass run_with_cache (everything)"] = lambda: ours.run_with_cache(tokens)
        ops["TransformerLens run_with_cache (everything)"] = lambda: tl.run_with_cache(tokens)
    return ops


def log_prob_diffs(peers: dict, tokens: torch.Tensor) -> dict:
    """Largest |log p| difference of ours and of TransformerLens's from HF SDPA."""
    reference = peers["hf_sdpa"](tokens).logits.log_softmax(-1)
    return {
        name: (peers[name](tokens).log_softmax(-1) - reference).abs().max().item()
        for name in ("ours", "tl")
    }


def run(label: str, peers: dict, shapes, threads: int, repeats: int) -> list[dict]:
    """Results for one model at each `(batch, seq)` of `shapes`, with `threads` threads."""
    torch.set_num_threads(threads)
    vocab = peers["ours"].cfg.d_vocab
    results = []
    for batch, seq in shapes:
        tokens = torch.randint(
            1, vocab, (batch, seq), generator=torch.Generator().manual_seed(batch * seq)
        )
        cache_bytes = full_cache_bytes(peers["ours"].cfg, batch, seq)
        with_full_cache = cache_bytes <= MAX_FULL_CACHE_BYTES
        load_before = load_average()
        with torch.no_grad():
            diffs = log_prob_diffs(peers, tokens)
            if with_full_cache:
                _, cache = peers["ours"].run_with_cache(tokens)
                cache_bytes = tensor_bytes(cache.values())
                del cache
            timings = interleaved_timings(
                forward_ops(peers, tokens, with_full_cache),
                repeats if seq * batch <= 1024 else max(2, repeats // 2),
                warmup=1,
            )
        result = dict(
            model=label,
            shape=f"{batch}x{seq}",
            threads=threads,
            load_before=load_before,
            load_after=load_average(),
            median_s={name: t["wall"] for name, t in timings.items()},
            median_user_s={name: t["user"] for name, t in timings.items()},
            median_sys_s={name: t["sys"] for name, t in timings.items()},
            log_prob_diff=diffs,
            full_cache_mib=round(cache_bytes / 2**20, 1),
            full_cache_measured=with_full_cache,
        )
        print(_summary(result), flush=True)
        results.append(result)
    return results


def _summary(result: dict) -> str:
    base = result["median_s"][BASE]
    user = result["median_user_s"]
    ratios = ", ".join(
        f"{k}: {v / base:.2f}x (CPU {user[k] / user[BASE]:.2f}x)"
        for k, v in result["median_s"].items()
        if k != BASE
    )
    return (
        f"[forward] {result['model']} {result['shape']} threads={result['threads']} "
        f"HF SDPA {base * 1000:.1f} ms; {ratios} (load {result['load_before']})"
    )
