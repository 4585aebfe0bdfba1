"""The `lookingglass` command line: `demo` (the main job), `info`, `explore`, `experiments`,
`replicate`, `train-default` and `harvest`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lookingglass.errors import LookingGlassError


def _info(args: argparse.Namespace) -> int:
    import platform

    import torch
    import transformers

    import lookingglass
    from lookingglass.loading.registry import list_models, packaged_models

    print(f"lookingglass {lookingglass.__version__}")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"known model names: {len(list_models())} (lookingglass.list_models())")
    shipped = packaged_models()
    print(f"shipped models (offline): {', '.join(shipped) or 'none'}")
    for name, folder in shipped.items():
        print(f"  {name}: {folder}")
    _print_gguf_models()
    return 0


def _print_gguf_models() -> None:
    """Registered GGUF models: licence, source package, file and conversion cache."""
    from lookingglass.errors import CheckpointError
    from lookingglass.loading import gguf, gguf_models

    print(f"registered GGUF models (converted on first load into {gguf.gguf_home()}):")
    for name, model in gguf_models.GGUF_MODELS.items():
        print(f"  {name} (also: {', '.join(model.aliases)})")
        print(f"    licence {model.licence}, from {model.distribution}=={model.version}")
        try:
            path = gguf_models.gguf_path(model)
        except CheckpointError:
            print(f"    file: not installed; install with: {model.install_command}")
            continue
        print(f"    file: {path}")
        sha256 = gguf.file_sha256(path)
        folder = gguf.cache_folder(path, sha256)
        state = "converted" if gguf.is_converted(folder, sha256) else "not converted yet"
        print(f"    cache: {folder} ({state})")


def _demo(args: argparse.Namespace) -> int:
    from lookingglass.demo import run_demo

    return run_demo(args.model, args.prompt, args.out)


def _nonempty_text(value: str) -> str:
    """An argparse type: text with at least one non-space character."""
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "must not be empty; leave --prompt out to use the built-in prompt"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands register themselves here)."""
    parser = argparse.ArgumentParser(prog="lookingglass", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, device and known models")
    info.set_defaults(func=_info)
    from lookingglass.demo import DEFAULT_MODEL

    demo = sub.add_parser("demo", help="look for induction and IOI heads in a real model")
    demo.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a model name or folder (default {DEFAULT_MODEL}; toy: lookingglass-attn2)",
    )
    demo.add_argument(
        "--prompt", default=None, type=_nonempty_text, help="text to analyze (default: built in)"
    )
    demo.add_argument("--out", default="reports/demo.html")
    demo.set_defaults(func=_demo)
    from lookingglass.bench.cli import add_experiments_parser

    add_experiments_parser(sub)
    from lookingglass.explorer.cli import add_explore_parser

    add_explore_parser(sub)
    from lookingglass.harvest.cli import add_harvest_parser

    add_harvest_parser(sub)
    from lookingglass.sae.cli import add_sae_parser

    add_sae_parser(sub)
    from lookingglass.training.default_models import add_train_default_parser
    from lookingglass.training.replicate_cli import add_replicate_parser

    add_replicate_parser(sub)
    add_train_default_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lookingglass` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LookingGlassError as error:  # bad input: the message says what to do
        print(f"lookingglass {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
