"""The experiment store under hostile records and faults (issue 17): attachment paths
that leave the blob folder, a full disk, garbage over the database, a reader while
another process writes, and a store that cannot be written. Every case ends in a
result or a `StoreError` that names the cause, never a raw SQLite or OS error, and the
store stays consistent and usable afterwards."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lookingglass.bench.blobs as blobs_module
from lookingglass.bench import Bench, SQLiteStore, StoreError
from lookingglass.errors import LookingGlassError

DIGEST = "ab" * 32


def _bench_with_runs(path: Path) -> Bench:
    """A store holding two finished runs of `scale` (results are tensors, i.e. blobs)."""
    bench = Bench(None, str(path), progress=False)

    @bench.log_experiment
    def scale(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32) * 2

    scale(3)
    scale(4)
    return bench


def test_store_error_is_a_lookingglass_error_and_a_runtime_error():
    assert issubclass(StoreError, LookingGlassError) and issubclass(StoreError, RuntimeError)


# --------------------------------------------------------- paths from the database
@pytest.mark.parametrize(
    "ext",
    [
        "/../../secret.txt",
        "/../../../secret.txt",
        "/../../../../../../etc/hostname",
        ".txt/../../../secret.txt",
        "\\..\\..\\secret.txt",
        ".png\x00",
        ".png\n",
        "." + "x" * 40,
    ],
)
def test_a_recorded_extension_that_leaves_the_blob_folder_is_refused(tmp_path, ext):
    bench = _bench_with_runs(tmp_path / "s.db")
    root = bench.store.blobs.root
    # What the old code read: the file the recorded path resolves to, given content.
    target = Path(os.path.normpath(root / DIGEST[:2] / f"{DIGEST}{ext}".replace("\x00", "")))
    if "\\" not in ext and "\n" not in ext and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"secret")
    with sqlite3.connect(bench.store.path) as conn:  # a tampered record
        conn.execute("INSERT INTO blobs VALUES (?, ?, 6)", (DIGEST, ext))
        conn.execute("INSERT INTO attachments VALUES (1, 'plot', 'image/png', ?, ?)", (DIGEST, ext))
    with pytest.raises(StoreError, match="not a plain file suffix"):
        bench.load_attachment(1, "plot")
    with pytest.raises(StoreError, match="not a plain file suffix"):
        bench.store.get_blob(DIGEST, ext)
    # `check` reports the record instead of raising; the other runs still read.
    assert any("not a plain file suffix" in p for p in bench.store.check())
    assert bench.load_result(2).tolist() == [0.0, 2.0, 4.0, 6.0]
    bench.close()


@pytest.mark.parametrize("ext", ["", ".npy", ".safetensors", ".plotly.json", ".tar.gz", ".a-b_c"])
def test_plain_extensions_still_work(tmp_path, ext):
    store = SQLiteStore(tmp_path / "s.db")
    digest = store.put_blob(b"data", ext)
    assert store.get_blob(digest, ext) == b"data"
    assert store.blobs.path(digest, ext).parent.parent == store.blobs.root


@pytest.mark.parametrize("digest", ["../" * 21 + "x", "AB" * 32, "ab" * 31, 12])
def test_a_bad_digest_is_refused(tmp_path, digest):
    with pytest.raises(StoreError, match="not a blob digest"):
        SQLiteStore(tmp_path / "s.db").get_blob(digest, ".npy")


# ------------------------------------------------------------------------ full disk
class _FullDisk:
    """A connection whose writes fail as SQLite's do when the disk is full, while
    `full` is set (statements that start with one of `verbs`)."""

    def __init__(self, conn: sqlite3.Connection, state: dict) -> None:
        self._conn, self._state = conn, state

    def execute(self, sql: str, *params):
        if self._state["full"] and sql.lstrip().upper().startswith(self._state["verbs"]):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *params)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.fixture
def full_disk(monkeypatch):
    """`full_disk(store, verbs)`: the store's database writes fail until `state["full"]`
    is cleared (space returns)."""

    def install(store: SQLiteStore, verbs: tuple[str, ...]) -> dict:
        state = {"full": False, "verbs": verbs}
        real = store._connection
        monkeypatch.setattr(store, "_connection", lambda: _FullDisk(real(), state))
        return state

    return install


@pytest.mark.parametrize(
    "where, verbs, runs_while_full",
    [
        # the run cannot even start: nothing is recorded
        ("start", ("INSERT",), []),
        # the run starts, its finish (and the small "failed" mark) cannot be written
        ("finish", ("UPDATE",), ["running"]),
        # every commit fails
        ("commit", ("COMMIT",), []),
    ],
)
def test_a_full_database_disk_is_a_store_error_and_the_store_recovers(
    tmp_path, full_disk, where, verbs, runs_while_full
):
    bench = _bench_with_runs(tmp_path / "s.db")
    state = full_disk(bench.store, verbs)

    @bench.log_experiment(name="scale")
    def scale(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32) * 2

    state["full"] = True
    with pytest.raises(StoreError, match="disk is full") as caught:
        scale(5)
    assert not isinstance(caught.value, sqlite3.Error)
    state["full"] = False  # space returns
    statuses = [r.status for r in bench.runs()]
    assert statuses[:2] == ["ok", "ok"] and statuses[2:] == runs_while_full
    assert scale(6).tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    runs = bench.runs()
    if where == "finish":  # the run that hit the full disk ends failed, with the reason
        assert runs[2].status == "error" and "disk is full" in runs[2].error
        assert "reads 'running' until" in str(caught.value)
    assert [r.status for r in runs][-1] == "ok" and bench.store.check(verify_blobs=True) == []
    assert bench.load_result(runs[-1].run_id).tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    bench.close()


def test_when_only_the_result_does_not_fit_the_run_is_marked_failed_at_once(tmp_path, full_disk):
    bench = _bench_with_runs(tmp_path / "s.db")
    state = full_disk(bench.store, ("UPDATE RUNS SET STATUS = ?",))  # the big finish only
    state["full"] = True

    @bench.log_experiment(name="scale")
    def scale(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32) * 2

    with pytest.raises(StoreError, match="is marked 'error'"):
        scale(5)
    run = bench.runs()[-1]
    assert run.status == "error" and "disk is full" in run.error
    bench.close()


@pytest.fixture
def full_blob_disk(monkeypatch):
    """Blob files cannot be written (ENOSPC) while `state["full"]` is set."""
    state = {"full": False}
    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        if state["full"] and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(blobs_module, "open", fake_open, raising=False)
    return state


def test_a_full_blob_disk_ends_the_run_failed_with_the_reason(tmp_path, full_blob_disk):
    bench = _bench_with_runs(tmp_path / "s.db")

    @bench.log_experiment(name="scale")
    def scale(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32) * 2

    full_blob_disk["full"] = True
    with pytest.raises(StoreError, match="the disk is full"):
        scale(7)
    run = bench.runs()[-1]
    assert run.status == "error" and "storing the result failed" in run.error
    assert "the disk is full" in run.error
    assert list((bench.store.blobs.root / "tmp").iterdir()) == []  # nothing half-written
    full_blob_disk["full"] = False
    assert scale(7).shape == (7,) and bench.store.check(verify_blobs=True) == []
    bench.close()


@pytest.mark.parametrize(
    "raised", [ValueError("bad"), KeyboardInterrupt(), RuntimeError("![x](http://x/t.png)")]
)
def test_a_run_interrupted_by_an_error_ends_failed_with_the_reason(tmp_path, raised):
    bench = Bench(None, str(tmp_path / "s.db"), progress=False)

    @bench.log_experiment
    def boom() -> None:
        raise raised

    with pytest.raises(type(raised)):
        boom()
    (run,) = bench.runs()
    assert run.status == "error" and run.error == f"{type(raised).__name__}: {raised}"
    assert run.effective_status == "error" and run.ended_at is not None
    bench.close()


def test_when_the_error_itself_cannot_be_stored_the_experiments_error_still_surfaces(
    tmp_path, full_disk
):
    bench = Bench(None, str(tmp_path / "s.db"), progress=False)

    @bench.log_experiment
    def boom() -> None:
        state["full"] = True
        raise ValueError("the experiment's own error")

    state = full_disk(bench.store, ("UPDATE",))
    with pytest.raises(ValueError, match="own error") as caught:
        boom()
    assert any("disk is full" in note for note in caught.value.__notes__)
    state["full"] = False
    bench.store.close()  # the next write (here: closing) marks the run failed
    (run,) = Bench(None, str(tmp_path / "s.db"), progress=False).runs()
    assert run.status == "error" and "disk is full" in run.error


def _can_mount_tmpfs(folder: Path) -> bool:
    if os.geteuid() != 0:
        return False
    folder.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


def test_a_real_full_then_read_only_file_system(tmp_path):
    """On a 1 MB tmpfs (needs root): a disk filled to the brim, then one with a little
    room, then the same file system remounted read-only."""
    mnt = tmp_path / "mnt"
    if not _can_mount_tmpfs(mnt):
        pytest.skip("mounting a tmpfs needs root; the monkeypatched tests above cover this")
    try:
        bench = _bench_with_runs(mnt / "s.db")

        @bench.log_experiment(name="scale")
        def scale(n: int) -> torch.Tensor:
            return torch.arange(n, dtype=torch.float32) * 2

        filler = mnt / "filler"
        with pytest.raises(OSError), open(filler, "wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        for room, started in ((0, False), (64 * 1024, True)):
            os.truncate(filler, filler.stat().st_size - room)
            before = len(bench.runs())
            with pytest.raises(StoreError, match="the disk is full"):
                scale(100_000)  # a 400 kB result
            runs = bench.runs()
            assert len(runs) == before + started
            if started:
                assert runs[-1].status == "error" and "the disk is full" in runs[-1].error
        assert list((bench.store.blobs.root / "tmp").iterdir()) == []
        filler.unlink()
        assert scale(5).tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
        assert bench.store.check(verify_blobs=True) == []
        bench.close()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with Bench(None, str(mnt / "s.db"), progress=False) as reader:
            assert reader.store.read_only
            assert [r.status for r in reader.runs()] == ["ok", "ok", "error", "ok"]
            assert reader.load_result(4).tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
            assert reader.store.check(verify_blobs=True) == []
            with pytest.raises(StoreError, match="read-only"):
                reader.log_experiment(lambda: 1, name="x")()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ----------------------------------------------------------------------- corruption
def _pages(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA page_size").fetchone()[0], conn.execute(
            "PRAGMA page_count"
        ).fetchone()[0]


def _sqlite_says_damaged(path: Path) -> bool:
    """SQLite's own verdict on the file (a fresh connection, no lookingglass code)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            return rows != [("ok",)]
    except sqlite3.DatabaseError:
        return True


@pytest.mark.parametrize("pages", ["first", "second", "last", "all but the first"])
def test_garbage_over_database_pages_is_reported_not_raised(tmp_path, pages):
    path = tmp_path / "s.db"
    _bench_with_runs(path).close()
    size, count = _pages(path)
    chosen = {
        "first": [0],
        "second": [1],
        "last": [count - 1],
        "all but the first": list(range(1, count)),
    }[pages]
    with open(path, "r+b") as handle:
        for page in chosen:
            handle.seek(page * size + (100 if page == 0 else 0))
            handle.write(os.urandom(size - (100 if page == 0 else 0)))
    damaged = _sqlite_says_damaged(path)
    assert damaged  # the reference: SQLite itself finds the damage
    try:
        store = SQLiteStore(path)
    except StoreError as error:  # too damaged to open: said plainly
        assert "damaged" in str(error) or "not a database" in str(error)
        return
    problems = store.check()
    assert problems and any("damaged" in p or "malformed" in p for p in problems), problems
    for read in (store.runs, store.experiment_names, lambda: store.get_run(1)):
        try:
            read()
        except StoreError:
            pass  # a clear error, never a raw sqlite3.DatabaseError
    store.close()


# ------------------------------------------------------------ a reader and a writer
_HOLD_WRITE_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE runs SET kind = 'uncommitted'")
print("locked", flush=True)
time.sleep(60)
"""


def test_a_reader_never_waits_for_another_processs_write_transaction(tmp_path):
    path = tmp_path / "s.db"
    _bench_with_runs(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_WRITE_LOCK, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        store = SQLiteStore(path, timeout=20)  # opening takes no lock
        kinds = [r.kind for r in store.runs()]
        assert store.check() == [] and store.get_run(2).status == "ok"
        elapsed = time.perf_counter() - started
        assert kinds == ["experiment", "experiment"]  # the committed state, at once
        assert elapsed < 2.0, elapsed
        writer = SQLiteStore(path, timeout=0.2)  # a writer does wait, then says why
        with pytest.raises(StoreError, match="write lock"):
            Bench(None, writer).log_experiment(lambda: 1, name="x")()
        store.close()
        writer.close()
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------ read-only
def _files(folder: Path) -> dict[str, int]:
    """Every file's modification time, except the WAL index and log that any SQLite
    reader of a WAL database may create beside it where it is allowed to."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if not p.name.endswith(("-wal", "-shm"))
    }


@pytest.mark.parametrize("how", ["read_only=True", "mode=ro URL", "chmod -w"])
def test_a_store_that_cannot_be_written_opens_for_reading(tmp_path, how):
    folder = tmp_path / "store"
    _bench_with_runs(folder / "s.db").close()
    before = _files(folder)
    if how == "chmod -w":
        if os.geteuid() == 0:
            pytest.skip("root ignores permission bits (the tmpfs test remounts read-only)")
        for path in [*folder.rglob("*"), folder]:
            path.chmod(path.stat().st_mode & ~0o222)
        store = folder / "s.db"
    else:
        store = (
            SQLiteStore(folder / "s.db", read_only=True)
            if how == "read_only=True"
            else f"sqlite:///{folder / 's.db'}?mode=ro"
        )
    try:
        with Bench(None, store, progress=False) as bench:
            assert bench.store.read_only
            assert [r.status for r in bench.runs()] == ["ok", "ok"]
            assert bench.load_result(1).tolist() == [0.0, 2.0, 4.0]
            assert bench.store.check(verify_blobs=True) == []
            with pytest.raises(StoreError, match="read-only"):
                bench.log_experiment(lambda: 1, name="x")()
            with pytest.raises(StoreError, match="read-only"):
                bench.store.put_blob(b"new", ".bin")
        assert _files(folder) == before  # nothing created or changed
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_read_only_needs_an_existing_store(tmp_path):
    with pytest.raises(StoreError, match="No experiment store"):
        SQLiteStore(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match="mode must be"):
        Bench(None, f"sqlite:///{tmp_path / 'x.db'}?mode=write")
