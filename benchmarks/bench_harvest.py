"""`lookingglass harvest` throughput: against a plain Hugging Face forward loop, and 1 vs 2 ranks.

1. In one process, interleaved (median of repeats), the same rows of the shipped corpus:
   * Hugging Face: `hf(tokens, output_hidden_states=True)` per batch, the hidden state the
     hook names copied to a list in memory (nothing written); `hf` is the same weights
     (`from_pretrained_no_processing(M).to_hf()`, transformers' default attention);
   * `harvest(...)` end to end into a fresh folder: tokenizing, hashing the weights, the
     forward passes, shuffling and writing the shards with fsync, the manifest.
   Tokens/s = harvested tokens / seconds; the ratio is harvest / Hugging Face.
2. The CLI in fresh processes: one process with every core's threads, one process with
   one thread, and `torchrun --nproc_per_node 2` (gloo, one thread per rank, as torchrun
   sets). Reported: wall seconds of the whole command (model
   load included) and the shard loop's tokens/s (all ranks' tokens / rank 0's loop time).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_harvest.py --model smollm2-135m
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import format_table, interleaved_medians, set_threads

from lookingglass import HookedTransformer
from lookingglass.harvest import harvest
from lookingglass.harvest.data import load_rows

ROOT = Path(__file__).resolve().parents[1]


def in_process_table(args: argparse.Namespace, hook: str, layer: int) -> str:
    model = HookedTransformer.from_pretrained(args.model)
    hf = HookedTransformer.from_pretrained_no_processing(args.model).to_hf().eval()
    rows = load_rows(args.data, model.tokenizer, args.seq_len, args.tokens).rows
    scratch = Path(tempfile.mkdtemp(prefix="bench_harvest_"))
    counter = iter(range(10**6))

    def hf_loop():
        kept = []
        with torch.inference_mode():
            for start in range(0, len(rows), args.batch_size):
                out = hf(rows[start : start + args.batch_size], output_hidden_states=True)
                kept.append(out.hidden_states[layer + 1].clone())
        return kept

    def ours():
        out = scratch / f"run{next(counter)}"
        harvest(
            model, [hook], args.data, out, seq_len=args.seq_len, batch_size=args.batch_size,
            max_tokens=args.tokens, shard_tokens=args.shard_tokens, progress=False,
        )  # fmt: skip
        shutil.rmtree(out)

    times = interleaved_medians({"hf": hf_loop, "harvest": ours}, repeats=args.repeats, warmup=1)
    shutil.rmtree(scratch, ignore_errors=True)
    n = rows.numel()
    table = format_table(
        [
            [
                "Hugging Face forward, output_hidden_states (in memory)",
                f"{times['hf']:.2f}",
                f"{n / times['hf']:,.0f}",
                "1.00",
            ],
            [
                f"harvest {hook} to disk (end to end)",
                f"{times['harvest']:.2f}",
                f"{n / times['harvest']:,.0f}",
                f"{times['hf'] / times['harvest']:.2f}",
            ],
        ],  # fmt: skip
        ["run", "seconds", "tokens/s", "vs HF"],
    )
    return f"{table}\n\n{n} tokens, {args.seq_len} per row, batches of {args.batch_size} rows"


def cli_run(args: argparse.Namespace, hook: str, ranks: int, threads: str) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="bench_harvest_cli_")) / "out"
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    cmd = [
        sys.executable, *(launcher if ranks > 1 else []), "-m", "lookingglass.cli", "harvest",
        "--model", args.model, "--hooks", hook, "--data", args.data, "--out", str(out),
        "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size),
        "--max-tokens", str(args.tokens), "--shard-tokens", str(args.shard_tokens),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": threads}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - start
    shutil.rmtree(out.parent, ignore_errors=True)
    found = re.search(r"rank 0 wrote (\d+) tokens in ([\d.]+) s", done.stderr)
    return wall, args.tokens // args.seq_len * args.seq_len / float(found.group(2))


def ranks_table(args: argparse.Namespace, hook: str) -> str:
    cores = str(os.cpu_count() or 1)
    configs = {"1 rank, all cores": (1, cores), "1 rank, 1 thread": (1, "1"),
               "2 ranks, 1 thread each": (2, "1")}  # fmt: skip
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    for _ in range(args.cli_repeats):
        for name, (ranks, threads) in configs.items():
            results[name].append(cli_run(args, hook, ranks, threads))
    base = None
    rows = []
    for name, runs in results.items():
        wall = sorted(w for w, _ in runs)[len(runs) // 2]
        speed = sorted(s for _, s in runs)[len(runs) // 2]
        base = base or speed
        rows.append([name, f"{wall:.1f}", f"{speed:,.0f}", f"{speed / base:.2f}"])
    return format_table(rows, ["run", "command wall s", "shard loop tokens/s", "vs first"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layer", type=int, default=None, help="default: the last block")
    parser.add_argument("--data", default="corpus:kjv")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard-tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli-repeats", type=int, default=1)
    parser.add_argument("--skip-ranks", action="store_true", help="only the in-process table")
    parser.add_argument("--only-ranks", action="store_true", help="only the 1 vs 2 ranks table")
    args = parser.parse_args()
    set_threads()
    n_layers = HookedTransformer.from_pretrained(args.model).cfg.n_layers
    layer = n_layers - 1 if args.layer is None else args.layer
    hook = f"blocks.{layer}.hook_resid_post"
    load = os.getloadavg()
    print(
        f"## harvest vs Hugging Face ({args.model}, CPU fp32, {torch.get_num_threads()} threads, "
        f"load average {load[0]:.1f} on {os.cpu_count()} cores)\n"
    )
    if not args.only_ranks:
        print(in_process_table(args, hook, layer))
    if not args.skip_ranks:
        print("\n## 1 vs 2 ranks (CLI, gloo)\n")
        print(ranks_table(args, hook))
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
