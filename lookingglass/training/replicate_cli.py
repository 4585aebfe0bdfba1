"""The `lookingglass replicate induction-heads` command: `--data synthetic` runs
`replicate.run_replication`, `--data text` runs `replicate_text.run_text_replication`."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from lookingglass.errors import InputError
from lookingglass.training.cli_args import output_folder, positive_int


def add_replicate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `lookingglass replicate induction-heads [--quick] [--out DIR]`."""
    parser = subparsers.add_parser(
        "replicate",
        help="reproduce a published training-dynamics finding",
        description="Train attention-only models of 1 layer, 1 layer with smeared keys and 2 "
        "layers, snapshot them through training, and report when induction heads "
        "form and whether in-context learning jumps at the same time.",
    )
    parser.add_argument("experiment", choices=["induction-heads"])
    parser.add_argument("--quick", action="store_true", help="a smaller run (CI, about a minute)")
    parser.add_argument(
        "--data",
        choices=["synthetic", "text"],
        default="synthetic",
        help="synthetic: random tokens with repeated segments (default); text: the King James "
        "Bible only, by character, several seeds, plus synthetic mixtures (replicate_text.py)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: reports/induction-heads, or reports/induction-heads-text)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="--data text: start no new training chunk after this many minutes; the same "
        "command continues the run",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=(),
        metavar="RUN",
        help="--data text: train only these runs (e.g. attn2-seed0), to run several commands "
        "side by side; the report is written when all runs are done",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="--data text: write the report over the runs finished so far, listing the rest",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads (default 1: these small models train fastest on one thread, "
        "and several threads on a busy machine spin-wait)",
    )
    parser.set_defaults(func=_run_cli)
    return parser


def _run_cli(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.data == "text":
        return _run_text_cli(args)
    if args.minutes is not None or args.only or args.partial:
        raise InputError("--minutes, --only and --partial apply to --data text only.")
    from lookingglass.training.replicate import run_replication

    out = output_folder(args.out or ("reports/induction-heads" + ("-quick" if args.quick else "")))
    results = run_replication(out, quick=args.quick, progress=not args.no_progress)
    print(
        f"\n{'replicated' if results['verdict']['replicated'] else 'NOT replicated'} "
        f"in {results['total_seconds']:.0f} s; report: {out / 'report.md'}"
    )
    return 0


def _run_text_cli(args: argparse.Namespace) -> int:
    from lookingglass.training.replicate_text import run_text_replication

    default = "reports/induction-heads-text" + ("-quick" if args.quick else "")
    out = output_folder(args.out or default)
    results = run_text_replication(
        out,
        args.quick,
        only=tuple(args.only),
        minutes=args.minutes,
        progress=not args.no_progress,
        partial=args.partial,
    )
    if not results["complete"] and "verdict" not in results:
        print(
            f"\nfinished {len(results['finished'])} run(s); left: {', '.join(results['left'])}. "
            "Run the same command again to continue."
        )
        return 0
    outcome = results["verdict"]["replicated_on_natural_text"]
    print(
        f"\n{'replicated' if outcome else 'NOT replicated'} on natural text; "
        f"report: {out / 'report.md'}"
    )
    return 0
