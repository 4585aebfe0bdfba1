"""The store under restarts, concurrency and crashes: nothing logged is lost.

- Three versions of an experiment survive a restart (a fresh interpreter lists them and
  loads every result bit for bit).
- Four processes logging 200 runs each at once lose none.
- A process killed with SIGKILL inside a blob write, between the blob and the row, in
  the middle of an SQLite transaction, or at a random moment, leaves a store that passes
  `PRAGMA integrity_check`, in which every completed run is intact, and that takes new runs.

Worker processes are forked from the test process (no second import of torch).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lookingglass.bench import Bench
from lookingglass.bench.sqlite import SQLiteStore

FORK = multiprocessing.get_context("fork")
ROOT = Path(__file__).resolve().parents[2]


def payload(worker: int, i: int) -> dict:
    """What every worker logs: a deterministic function of its arguments."""
    return {
        "worker": worker,
        "i": i,
        "values": torch.arange(4, dtype=torch.float64) + 1000 * worker + i,
    }


def expected_ok(bench: Bench, run) -> bool:
    args = bench.load_args(run)
    result = bench.load_result(run)
    want = payload(args["worker"], args["i"])
    return (
        result["worker"] == want["worker"]
        and result["i"] == want["i"]
        and result["values"].equal(want["values"])
    )


def log_runs(
    db: str, worker: int, n: int, conn=None, sabotage: str | None = None, after: int = 0
) -> None:
    """Log n runs of `payload`, reporting each finished run's id on `conn`; after `after`
    runs, arrange to be SIGKILLed at the point `sabotage` names."""
    bench = Bench(None, store=db, progress=False)
    log = bench.log_experiment(payload, name="payload", seed=False)
    for i in range(n):
        if sabotage is not None and i == after:
            _sabotage(bench.store, sabotage)
        log(worker, i)
        if conn is not None:
            conn.send(log.last_run_id)
    bench.close()


def _die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def _sabotage(store: SQLiteStore, where: str) -> None:
    if where == "blob_rename":  # the blob's bytes are in a temporary file, not yet renamed
        os.replace = _die
    elif where == "before_row":  # blobs renamed into place, the run's row not committed
        store.finish_run = _die
    elif where == "mid_transaction":  # the run's final UPDATE executed, its COMMIT not yet
        original, calls = store._link_blobs, []

        def link_then_die(*args):
            calls.append(1)
            if len(calls) == 2:  # the first call is start_run's, the second finish_run's
                _die()
            return original(*args)

        store._link_blobs = link_then_die


def check_store(db: str) -> tuple[Bench, list]:
    """Open the store fresh and check it from the ground up."""
    path = db.removeprefix("sqlite:///").split("?")[0]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    bench = Bench(None, store=db, progress=False)
    assert bench.store.check(verify_blobs=True) == []
    return bench, bench.runs("payload")


def test_three_versions_survive_a_restart(tmp_path):
    db = f"sqlite:///{tmp_path}/e.db"
    bench = Bench(None, store=db, progress=False)
    digests = {}
    for version in range(3):
        path = tmp_path / f"analysis_v{version}.py"
        path.write_text(
            textwrap.dedent(f"""
            import torch

            def analysis(n):
                generator = torch.Generator().manual_seed(n)
                weights = torch.randn(n, 3, generator=generator) * {version + 1}
                return {{"version": {version}, "weights": weights,
                         "half": torch.randn(5, generator=generator).to(torch.bfloat16)}}
        """)
        )
        namespace: dict = {}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        logged = bench.log_experiment(namespace["analysis"])
        for n in (2, 3):
            result = logged(n)
            digests[logged.last_run_id] = {
                k: hashlib.sha256(v.view(torch.uint8).numpy().tobytes()).hexdigest()
                for k, v in result.items()
                if isinstance(v, torch.Tensor)
            }
    versions = bench.list_versions("analysis")
    bench.close()
    assert len(versions) == 3
    script = textwrap.dedent(f"""
        import hashlib, json, torch
        from lookingglass.bench import Bench
        bench = Bench(None, store={db!r}, progress=False)
        out = {{"versions": bench.list_versions("analysis"), "runs": {{}}}}
        for version in out["versions"]:
            assert "def analysis(n):" in bench.get_version("analysis", version)["source"]
        for run in bench.runs("analysis"):
            result = bench.load_result(run.run_id)
            out["runs"][run.run_id] = {{"version": run.version, "status": run.status, "tensors": {{
                k: hashlib.sha256(v.view(torch.uint8).numpy().tobytes()).hexdigest()
                for k, v in result.items() if isinstance(v, torch.Tensor)}}}}
        print(json.dumps(out))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["versions"] == versions
    assert {int(k): v["tensors"] for k, v in seen["runs"].items()} == digests
    assert [v["version"] for v in seen["runs"].values()] == [v for v in versions for _ in (2, 3)]


def test_four_processes_lose_no_runs(tmp_path):
    db = f"sqlite:///{tmp_path}/e.db"
    Bench(None, store=db).close()
    start = time.perf_counter()
    workers = [FORK.Process(target=log_runs, args=(db, w, 200)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
    elapsed = time.perf_counter() - start
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    bench, runs = check_store(db)
    assert len(runs) == 800 and all(r.status == "ok" for r in runs)
    pairs = {(bench.load_args(r)["worker"], bench.load_args(r)["i"]) for r in runs}
    assert pairs == {(w, i) for w in range(4) for i in range(200)}
    assert all(expected_ok(bench, r) for r in runs[::20])
    print(f"800 runs from 4 processes in {elapsed:.1f}s ({800 / elapsed:.0f} runs/s)")


@pytest.mark.parametrize("where", ["blob_rename", "before_row", "mid_transaction"])
def test_sigkill_while_logging_leaves_a_consistent_store(tmp_path, where):
    db = f"sqlite:///{tmp_path}/e.db"
    receive, send = FORK.Pipe(duplex=False)
    child = FORK.Process(target=log_runs, args=(db, 0, 5, send, where, 3))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    completed = _received(receive)
    assert len(completed) == 3
    bench, runs = check_store(db)
    ok = [r for r in runs if r.status == "ok"]
    assert [r.run_id for r in ok] == completed and all(expected_ok(bench, r) for r in ok)
    (killed,) = [r for r in runs if r.status != "ok"]
    assert killed.effective_status == "interrupted"
    log_runs(db, 1, 2)  # the store takes new runs
    assert len(bench.runs("payload", status="ok")) == 5
    if where == "blob_rename":  # the killed write's temporary file is reported as an orphan
        left = list((tmp_path / "e.blobs" / "tmp").iterdir())
        assert left and bench.store.orphan_blobs() == left
    bench.close()


def test_sigkill_at_random_moments(tmp_path):
    db = f"sqlite:///{tmp_path}/e.db"
    Bench(None, store=db).close()
    rng = random.Random(0)
    completed: list[int] = []
    for attempt in range(4):
        receive, send = FORK.Pipe(duplex=False)
        child = FORK.Process(target=log_runs, args=(db, attempt, 10_000, send))
        child.start()
        time.sleep(0.3 + rng.random() * 0.5)
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=60)
        completed += _received(receive)
    bench, runs = check_store(db)
    by_id = {r.run_id: r for r in runs}
    assert completed and all(by_id[i].status == "ok" for i in completed)
    assert all(expected_ok(bench, r) for r in runs if r.status == "ok")
    assert all(r.effective_status == "interrupted" for r in runs if r.status != "ok")
    bench.close()


def _received(conn) -> list[int]:
    ids = []
    while conn.poll(0.5):
        try:
            ids.append(conn.recv())
        except EOFError:
            break
    return ids
