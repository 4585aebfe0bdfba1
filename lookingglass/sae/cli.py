"""The `lookingglass sae` subcommands: `sae train` (more views live in
`lookingglass.sae.features`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _rows(model, data: str, seq_len: int, max_tokens: int | None):
    from lookingglass.harvest.data import load_rows

    return load_rows(data, model.tokenizer, seq_len, max_tokens).rows


def _train(args: argparse.Namespace) -> int:
    import torch

    from lookingglass.harvest.run import _distributed
    from lookingglass.sae.training.config import TrainConfig
    from lookingglass.sae.training.data import LiveActivations, ShardActivations
    from lookingglass.sae.training.run import build_saes, steps_for, train_saes

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rank, _, _ = _distributed()
    model = None
    if args.model:
        from lookingglass import HookedTransformer

        model = HookedTransformer.from_pretrained(args.model)
    is_harvest = Path(args.data, "manifest.json").is_file()
    kw = dict(batch_size=args.batch_size, seed=args.seed, epochs=args.epochs)
    if is_harvest:
        manifest = json.loads(Path(args.data, "manifest.json").read_text())
        hooks = args.hooks or sorted(manifest["hooks"])
        source = ShardActivations(
            args.data, hooks, allow_incomplete=args.allow_incomplete, max_norm=args.max_norm, **kw
        )
        pca = ShardActivations(
            args.data,
            hooks,
            args.batch_size,
            seed=args.seed + 1,
            allow_incomplete=args.allow_incomplete,
            max_norm=args.max_norm,
        )
        model_name = args.model or manifest["model"].get("name")
        seq_len = manifest["seq_len"]
    else:
        if model is None or not args.hooks:
            raise SystemExit("training live from text needs --model and --hooks")
        rows = _rows(model, args.data, args.seq_len, args.max_tokens)
        source = LiveActivations(model, args.hooks, rows, **kw)
        pca = LiveActivations(model, args.hooks, rows, args.batch_size, seed=args.seed + 1)
        hooks, model_name, seq_len = source.hooks, args.model, args.seq_len
    d_in = {h: source.d_in(h) for h in hooks}
    saes = build_saes(
        hooks,
        args.d_sae,
        d_in,
        args.architecture,
        args.k,
        model_name,
        normalize=not args.no_normalize,
        context_size=seq_len,
    )
    cfg = TrainConfig(
        lr=args.lr,
        lr_warm_up_steps=args.lr_warm_up_steps,
        lr_decay_steps=args.lr_decay_steps,
        lr_scheduler_name=args.lr_scheduler,
        l1_coefficient=args.l1_coefficient,
        l1_warm_up_steps=args.l1_warm_up_steps,
        l0_coefficient=args.l0_coefficient,
        l0_warm_up_steps=args.l0_warm_up_steps,
        jumprelu_bandwidth=args.jumprelu_bandwidth,
        aux_loss_coefficient=args.aux_loss_coefficient,
        b_dec_init=args.b_dec_init,
        dead_feature_window=args.dead_feature_window,
    )
    eval_rows = None
    if args.eval_data and model is not None:
        eval_rows = _rows(model, args.eval_data, seq_len, args.eval_tokens)
    _, reports = train_saes(
        saes,
        cfg,
        source,
        steps_for(args.tokens, args.batch_size),
        args.out,
        eval_model=model,
        eval_rows=eval_rows,
        pca_source=pca if eval_rows is not None else None,
        log_every=args.log_every,
        seed=args.seed,
        settings=vars(args) | {"func": None},
    )
    if rank == 0:
        for sae, report in zip(saes, reports, strict=True):
            line = {
                k: round(v, 4) for k, v in report.get("eval", {}).items() if isinstance(v, float)
            }
            print(
                f"{sae.cfg.hook_name} d_sae={sae.cfg.d_sae}: "
                f"{report['tokens_per_second']:.0f} tok/s {line}"
            )
    return 0


def add_sae_parser(sub: argparse._SubParsersAction) -> None:
    """Register `sae train` on the `lookingglass` parser."""
    sae = sub.add_parser("sae", help="train sparse autoencoders (SAELens folder format)")
    sae_sub = sae.add_subparsers(dest="sae_command", required=True)
    p = sae_sub.add_parser(
        "train",
        help="train SAEs from a harvest folder or live from a model",
        description="Train one SAE per (hook, --d-sae) from one pass of activations: a "
        "`lookingglass harvest` folder, or text run through --model. Writes SAELens "
        "folders to --out. Data-parallel with torchrun --nproc_per_node N -m "
        "lookingglass.cli sae train ...",
    )
    p.add_argument("--data", required=True, help="a harvest folder, or .txt/.jsonl/corpus:kjv")
    p.add_argument("--model", help="model for live activations and for evaluation")
    p.add_argument("--hooks", nargs="+", help="hook names (default: all in the harvest)")
    p.add_argument("--out", required=True)
    p.add_argument("--architecture", default="topk", choices=["topk", "standard", "jumprelu"])
    p.add_argument("--d-sae", type=int, nargs="+", default=[2304])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--tokens", type=int, required=True, help="training tokens (steps x batch)")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=None, help="passes over the data (default: cycle)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--lr-warm-up-steps", type=int, default=0)
    p.add_argument("--lr-decay-steps", type=int, default=0)
    p.add_argument("--lr-scheduler", default="constant", choices=["constant", "cosineannealing"])
    p.add_argument("--l1-coefficient", type=float, default=5.0)
    p.add_argument("--l1-warm-up-steps", type=int, default=0)
    p.add_argument("--l0-coefficient", type=float, default=1.0)
    p.add_argument("--l0-warm-up-steps", type=int, default=0)
    p.add_argument("--jumprelu-bandwidth", type=float, default=0.05)
    p.add_argument("--aux-loss-coefficient", type=float, default=1 / 32)
    p.add_argument("--b-dec-init", default="mean", choices=["zeros", "mean"])
    p.add_argument("--dead-feature-window", type=int, default=1000)
    p.add_argument(
        "--no-normalize",
        action="store_true",
        help="do not scale inputs to mean norm sqrt(d_in) during training",
    )
    p.add_argument(
        "--max-norm",
        type=float,
        default=None,
        help="leave out records with a larger norm (massive activations)",
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="train on the shards of an unfinished harvest",
    )
    p.add_argument("--seq-len", type=int, default=128, help="live data: tokens per row")
    p.add_argument("--max-tokens", type=int, default=None, help="live data: tokens to read")
    p.add_argument("--eval-data", help="held-out .txt/.jsonl/corpus:kjv for the evaluation")
    p.add_argument("--eval-tokens", type=int, default=4096)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train)
