"""`lookingglass experiments ...`: read a bench store from the command line.

    lookingglass experiments list    [--store PATH] [NAME]       experiments, or runs of one
    lookingglass experiments show    [--store PATH] RUN | NAME [VERSION]
    lookingglass experiments compare [--store PATH] RUN_A RUN_B
    lookingglass experiments export  [--store PATH] OUT.jsonl [--name NAME] [--tensors]
    lookingglass experiments verify  [--store PATH] [--blobs]

The store defaults to `$LOOKINGGLASS_STORE`, else `experiments.db` in the current folder.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookingglass.bench.blobs import StoreError, Unstored
from lookingglass.bench.compare import summarize
from lookingglass.bench.faults import describe_os_error
from lookingglass.errors import InputError, LookingGlassError
from lookingglass.utils import atomic_file


def add_experiments_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `experiments` command (with its subcommands) to a subparsers object."""
    parser = subparsers.add_parser(
        "experiments", help="list, show, compare and export logged experiments"
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])
    sub = parser.add_subparsers(dest="experiments_command")

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument(
            "--store",
            default=os.environ.get("LOOKINGGLASS_STORE", "experiments.db"),
            help="store URL or path (default: $LOOKINGGLASS_STORE or experiments.db)",
        )
        p.set_defaults(func=_reporting_errors(func))
        return p

    p = command("list", "experiments with their versions and runs, or the runs of one", _list)
    p.add_argument("name", nargs="?", help="an experiment: list its runs")
    p = command("show", "a run (by id), or an experiment's versions and source", _show)
    p.add_argument("target", help="a run id, or an experiment name")
    p.add_argument("version", nargs="?", help="with a name: the version whose source to print")
    p.add_argument("--save-attachments", metavar="DIR", help="write the run's plots into DIR")
    p = command("compare", "differences between two runs", _compare)
    p.add_argument("run_a", type=int)
    p.add_argument("run_b", type=int)
    p = command("export", "write runs as JSON lines", _export)
    p.add_argument("out", help="output file (.jsonl)")
    p.add_argument("--name", help="only this experiment")
    p.add_argument("--tensors", action="store_true", help="include tensor values (else summaries)")
    p = command("verify", "check the database and the blob files", _verify)
    p.add_argument("--blobs", action="store_true", help="also re-hash every blob")
    return parser


def _reporting_errors(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except LookingGlassError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    return run


def _bench(args: argparse.Namespace):
    from lookingglass.bench.sqlite import SQLiteStore
    from lookingglass.bench.workspace import Bench

    store = args.store
    if "://" not in str(store):
        if not Path(store).is_file():
            raise StoreError(
                f"No experiment store at {store!r} (pass --store or set LOOKINGGLASS_STORE)."
            )
        store = SQLiteStore(store, read_only=True)  # these commands only read
    return Bench(None, store, progress=True)


def _time(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _list(args: argparse.Namespace) -> int:
    with _bench(args) as bench:
        if args.name is None:
            rows = []
            for name in bench.experiments():
                runs = bench.runs(name)
                ok = sum(r.status == "ok" for r in runs)
                rows.append(
                    [
                        name,
                        str(len(bench.list_versions(name))),
                        str(len(runs)),
                        str(ok),
                        str(len(runs) - ok),
                        _time(runs[-1].started_at) if runs else "-",
                    ]
                )
            print(_table(["experiment", "versions", "runs", "ok", "not ok", "last run"], rows))
            return 0
        rows = [
            [
                str(r.run_id),
                r.version,
                r.kind,
                r.effective_status,
                _time(r.started_at),
                f"{r.duration:.3f}s" if r.duration is not None else "-",
                str(r.seed),
                r.model.get("name", "-"),
                ", ".join(r.attachments),
            ]
            for r in bench.runs(args.name)
        ]
        if not rows:
            raise StoreError(f"No runs of {args.name!r}; experiments: {bench.experiments()}.")
        print(
            _table(
                [
                    "run",
                    "version",
                    "kind",
                    "status",
                    "started",
                    "duration",
                    "seed",
                    "model",
                    "plots",
                ],
                rows,
            )
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    with _bench(args) as bench:
        if not args.target.isdigit():
            versions = bench.list_versions(args.target)
            if not versions:
                raise StoreError(
                    f"No experiment {args.target!r}; experiments: {bench.experiments()}."
                )
            for version in [args.version] if args.version else versions:
                info = bench.get_version(args.target, version)
                print(
                    f"# {args.target}@{version}  ({len(info['runs'])} runs, "
                    f"first {_time(info['created_at'])})"
                )
                print(info["source"])
                for dep, source in info["dependencies"].items():
                    print(f"# calls {dep}:\n{source}")
            return 0
        run = bench.get_run(int(args.target))
        env = run.environment
        print(f"run {run.run_id}: {run.name}@{run.version} ({run.kind}) {run.effective_status}")
        print(
            f"started {_time(run.started_at)}, ended {_time(run.ended_at)}, "
            f"duration {run.duration if run.duration is None else f'{run.duration:.4f}s'}"
        )
        print(f"seed {run.seed}; model {json.dumps(run.model)}")
        print(
            f"lookingglass {env.get('lookingglass')}, torch {env.get('torch')}, "
            f"python {env.get('python')}, "
            f"git {env.get('git') or '-'}, host {env.get('host')} pid {env.get('pid')}"
        )
        print("args:")
        for key, value in bench.load_args(run).items():
            print(f"  {key} = {summarize(value, 100)}")
        if run.status == "ok":
            print("result:")
            print(_indent(_describe(bench.load_result(run))))
        elif run.error:
            print(f"error: {run.error}\n{run.traceback or ''}")
        if run.attachments:
            print("attachments: " + ", ".join(run.attachments))
        if args.save_attachments:
            folder = _output_folder(args.save_attachments)
            for name in run.attachments:
                _save_attachment(bench, run.run_id, name, folder)
    return 0


def _output_folder(path: str) -> Path:
    """The `--save-attachments` folder, created if missing; an error if it is a file."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(
            f"--save-attachments {path!r} is an existing file, not a folder; name a folder "
            "(it is created if missing)."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"Cannot create --save-attachments folder {path!r}: {error}.") from None
    return folder


def _save_attachment(bench, run_id: int, name: str, folder: Path) -> None:
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or ":" in name:
        raise StoreError(
            f"Run {run_id} has an attachment named {name!r}, which is not a plain file name; "
            "it is not written (it would land outside the folder)."
        )
    target = name.removesuffix(".plotly.json") + ".html" if name.endswith(".plotly.json") else name
    print(f"wrote {bench.save_attachment(run_id, name, folder / f'run{run_id}_{target}')}")


def _describe(value: Any, depth: int = 0) -> str:
    if isinstance(value, dict) and depth < 3:
        return "\n".join(
            f"{k}: {_describe(v, depth + 1)}"
            if not isinstance(v, dict)
            else f"{k}:\n{_indent(_describe(v, depth + 1))}"
            for k, v in value.items()
        )
    if hasattr(value, "__dataclass_fields__") and depth < 3:
        return _describe({f: getattr(value, f) for f in value.__dataclass_fields__}, depth)
    return summarize(value, 100)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _compare(args: argparse.Namespace) -> int:
    with _bench(args) as bench:
        print(bench.compare(args.run_a, args.run_b))
    return 0


def _export(args: argparse.Namespace) -> int:
    # Lines go to a temporary file renamed at the end: an export that fails part-way
    # leaves no partial file (and an older export at that path untouched).
    out_path = Path(args.out)
    if out_path.is_dir() or not out_path.parent.is_dir():
        raise InputError(
            f"Cannot write the export to {args.out!r}: "
            + ("it is a folder." if out_path.is_dir() else "its folder does not exist.")
        )
    with _bench(args) as bench:
        runs = bench.runs(args.name)
        if args.name is not None and not runs:
            raise StoreError(
                f"No runs of {args.name!r} to export (nothing written); "
                f"experiments: {bench.experiments()}."
            )
        try:
            _write_export(bench, runs, args)
        except OSError as error:
            raise InputError(
                f"Cannot write the export to {args.out!r}: {describe_os_error(error)}."
            ) from None
    print(f"wrote {len(runs)} run(s) to {args.out}")
    return 0


def _write_export(bench, runs: list, args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    with atomic_file(args.out, "w") as out:
        for run in tqdm(runs, desc="export", unit="run"):
            record = {
                "run_id": run.run_id,
                "name": run.name,
                "version": run.version,
                "kind": run.kind,
                "status": run.effective_status,
                "started_at": run.started_at,
                "ended_at": run.ended_at,
                "duration": run.duration,
                "seed": run.seed,
                "model": run.model,
                "environment": run.environment,
                "error": run.error,
                "args": _jsonable(bench.load_args(run), args.tensors),
                "result": _jsonable(bench.load_result(run), args.tensors)
                if run.status == "ok"
                else None,
                "attachments": sorted(run.attachments),
            }
            out.write(json.dumps(record) + "\n")


def _jsonable(value: Any, tensors: bool) -> Any:
    if isinstance(value, torch.Tensor | np.ndarray):
        if not tensors:
            return {"summary": summarize(value, 200)}
        array = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else value
        return {
            "dtype": str(value.dtype),
            "shape": list(array.shape),
            "values": _finite(array.tolist()),
        }
    if isinstance(value, dict):
        return {str(k): _jsonable(v, tensors) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, tensors) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f: _jsonable(getattr(value, f), tensors) for f in value.__dataclass_fields__}
    if isinstance(value, float | np.floating):
        return _finite(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Unstored) or not isinstance(value, str | int | bool | type(None)):
        return repr(value)
    return value


def _finite(value: Any) -> Any:
    # JSON has no NaN or infinity: write them as strings.
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    return value


def _verify(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    with _bench(args) as bench:
        problems = bench.store.check(
            verify_blobs=args.blobs, progress=lambda rows: tqdm(rows, desc="blobs", unit="blob")
        )
        orphans = bench.store.orphan_blobs() if hasattr(bench.store, "orphan_blobs") else []
        runs = bench.runs()
        interrupted = sum(r.effective_status == "interrupted" for r in runs)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(
        f"{len(runs)} runs ({interrupted} interrupted), {len(orphans)} unreferenced blob(s) "
        f"(left by interrupted writes; harmless); "
        f"{'OK' if not problems else f'{len(problems)} problem(s)'}"
    )
    return 0 if not problems else 1
