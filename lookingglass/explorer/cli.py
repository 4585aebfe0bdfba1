"""`lookingglass explore`: serve the explorer on this machine.

    lookingglass explore [--model NAME_OR_PATH] [--port 8501] [--host 127.0.0.1]
                         [--data FILE] [--store EXPERIMENTS.db] [--snapshots FOLDER]

Runs `streamlit run app.py` bound to 127.0.0.1 (only this machine can connect) unless
`--host` says otherwise, headless, without usage statistics, and with error details off
(pages show their own messages). The data, store and snapshots paths are checked here
and passed to the app through environment variables (`lookingglass.explorer.ENV`); the app reads no
other path. The model is loaded by the app, which reports on the page if it does not load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lookingglass.explorer import DEFAULT_MODEL, ENV

APP = Path(__file__).resolve().parent / "app.py"


def add_explore_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `explore` command to a subparsers object."""
    parser = subparsers.add_parser(
        "explore",
        help="serve the explorer (a local web app) for a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="model name or folder (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8501, help="port (default: %(default)s)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s, this machine only)",
    )
    parser.add_argument(
        "--data",
        help="texts to browse: a .txt (blank-line separated) or .jsonl file "
        "(default: the shipped corpus's held-out split)",
    )
    parser.add_argument("--store", help="a bench experiment store (.db) for the Experiments page")
    parser.add_argument("--snapshots", help="a snapshots folder for the Training dynamics page")
    parser.set_defaults(func=run_explore)
    return parser


def streamlit_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The `streamlit run` command line (through `serve`) and environment for `args`.

    Raises:
        SourceError: a data, store or snapshots path that is missing or unusable (the
            data file is read and the store opened here, so a bad one stops the command
            before the server starts).
        ValueError: a port outside 1..65535.
    """
    from lookingglass.explorer.sources import (  # here: `lookingglass --help` stays light
        check_data_file,
        check_snapshots_path,
        check_store,
    )

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}.")
    env = dict(os.environ)
    for name in ENV.values():
        env.pop(name, None)
    env[ENV["model"]] = _model_setting(args.model)
    checks = {"data": check_data_file, "store": check_store, "snapshots": check_snapshots_path}
    for name, check in checks.items():
        value = getattr(args, name)
        if value is not None:
            env[ENV[name]] = str(check(value))
    # The app imports lookingglass; make it importable also when it is not installed.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        "-m",
        "lookingglass.explorer.serve",  # `streamlit run`, with the model loading early
        "run",
        str(APP),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "viewer",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--global.developmentMode",
        "false",
    ]
    return command, env


def _model_setting(model: str) -> str:
    """A model folder as an absolute path (the app may run elsewhere); a name as is."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def run_explore(args: argparse.Namespace) -> int:
    """Replace this process by the Streamlit server (so stopping it stops the server)."""
    try:
        import streamlit  # noqa: F401
    except ImportError:
        print("error: the explorer needs Streamlit: pip install streamlit", file=sys.stderr)
        return 2
    from lookingglass.explorer.sources import SourceError

    try:
        command, env = streamlit_command(args)
    except (SourceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: serving on {args.host}: other machines can reach the explorer.",
            file=sys.stderr,
        )
    print(
        f"lookingglass explorer: http://{args.host}:{args.port}  (model: {env[ENV['model']]})",
        flush=True,
    )
    os.execve(sys.executable, command, env)
    return 0  # not reached
