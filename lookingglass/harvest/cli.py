"""The `lookingglass harvest` subcommand."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from lookingglass.harvest.run import harvest

    manifest = harvest(
        args.model,
        args.hooks,
        args.data,
        args.out,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        shard_tokens=args.shard_tokens,
        seed=args.seed,
        dtype=args.dtype,
        device=args.device,
        progress=not args.quiet,
    )
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        print(
            f"harvest: {manifest['n_tokens']} tokens in {manifest['n_shards']} shards in {args.out}"
        )
    return 0


def add_harvest_parser(sub: argparse._SubParsersAction) -> None:
    """Register `harvest` on the `lookingglass` parser."""
    p = sub.add_parser(
        "harvest",
        help="cache hook activations over a dataset into sharded safetensors files",
        description="Run a model over a dataset and write the activations of the given hooks "
        "to shuffled safetensors shards with a manifest; rerun the same command to resume. "
        "Data-parallel with: torchrun --nproc_per_node N -m lookingglass.cli harvest ...",
    )
    p.add_argument(
        "--model", required=True, help="a model name (smollm2-135m, lookingglass-attn2) or folder"
    )
    p.add_argument(
        "--hooks", required=True, nargs="+", help="hook names, e.g. blocks.0.hook_resid_post"
    )
    p.add_argument(
        "--data", required=True, help="a .txt (one document per line) or .jsonl file, or corpus:kjv"
    )
    p.add_argument("--out", required=True, help="the harvest folder (new, or one to resume)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--shard-tokens", type=int, default=65536)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--device", default=None, help="default: this rank's GPU if any, else cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
