"""The default experiment store: one SQLite file in WAL mode, and a blob folder beside it.

WAL mode lets readers work while one process writes, so several processes can log to one
store at once. Large values live in a content-addressed blob folder beside the database
(`experiments.db` -> `experiments.blobs/`). Every write is one transaction (`BEGIN
IMMEDIATE`, so two writers never deadlock), and blobs are renamed into place before the
row that refers to them commits: a process killed at any point leaves a readable store in
which every finished run is intact.

Faults: every SQLite or file-system error becomes a `StoreError` that names the cause (a
full disk, a read-only file system, a corrupt file). A write that fails is rolled back, so
the store stays consistent and usable once the cause is gone; a run whose finish could
not be written is marked "error" with the reason at the store's next successful write.
Opening an existing store takes no lock (readers never wait for a writer), and a store
that cannot be written (read-only file system or file) opens read-only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lookingglass.bench.blobs import BlobStore, StoreError
from lookingglass.bench.faults import (
    CORRUPT_ADVICE,
    cannot_write,
    describe_os_error,
    sqlite_reason,
)
from lookingglass.bench.store import RunRecord, Store, VersionRecord

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL, version TEXT NOT NULL, source TEXT NOT NULL,
    dependencies TEXT NOT NULL, module TEXT, qualname TEXT, created_at REAL NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error')),
    args TEXT NOT NULL, result TEXT, error TEXT, traceback TEXT,
    seed INTEGER, model TEXT NOT NULL, environment TEXT NOT NULL,
    started_at REAL NOT NULL, ended_at REAL, duration REAL,
    parent_run INTEGER REFERENCES runs (run_id),
    FOREIGN KEY (name, version) REFERENCES versions (name, version));
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (name, version);
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT NOT NULL, ext TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (digest, ext));
CREATE TABLE IF NOT EXISTS run_blobs (
    run_id INTEGER NOT NULL REFERENCES runs (run_id), digest TEXT NOT NULL, ext TEXT NOT NULL,
    PRIMARY KEY (run_id, digest, ext), FOREIGN KEY (digest, ext) REFERENCES blobs (digest, ext));
CREATE TABLE IF NOT EXISTS attachments (
    run_id INTEGER NOT NULL REFERENCES runs (run_id), name TEXT NOT NULL,
    media_type TEXT NOT NULL, digest TEXT NOT NULL, ext TEXT NOT NULL,
    PRIMARY KEY (run_id, name), FOREIGN KEY (digest, ext) REFERENCES blobs (digest, ext));
"""

_RUN_COLUMNS = (
    "run_id, name, version, kind, status, args, result, error, traceback, seed, "
    "model, environment, started_at, ended_at, duration, parent_run"
)


class SQLiteStore(Store):
    """The default backend: one SQLite file (WAL mode) and a blob folder beside it.

    Args:
        path: the database file (created with its folder if missing).
        synchronous: SQLite's `synchronous` setting: "full" (default; a commit survives
            power loss) or "normal" (faster; survives a process crash, not power loss).
        timeout: seconds a writer waits for another process's transaction.
        read_only: open an existing store for reading only (no file is created or
            changed; writes raise `StoreError`). Default (None): read-only exactly when
            the database or its folder cannot be written (e.g. a read-only file system).
    """

    def __init__(
        self,
        path: str | Path,
        synchronous: str = "full",
        timeout: float = 60.0,
        read_only: bool | None = None,
    ) -> None:
        if synchronous.lower() not in ("full", "normal", "off"):
            raise StoreError(f"synchronous must be 'full', 'normal' or 'off', got {synchronous!r}.")
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite:///{self.path}"
        self.synchronous = synchronous.upper()
        self.timeout = timeout
        self.read_only = cannot_write(self.path) if read_only is None else bool(read_only)
        if self.read_only and not self.path.is_file():
            raise StoreError(f"No experiment store at {self.path} to open read-only.")
        if not self.read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(
                    f"Cannot create the folder of {self.path}: {describe_os_error(error)}."
                ) from error
        self.blobs = BlobStore(
            self.path.with_suffix(".blobs"),
            fsync=self.synchronous == "FULL",
            read_only=self.read_only,
        )
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Runs whose finish could not be written: run_id -> (reason, ended_at, duration).
        self._unfinished: dict[int, tuple[str, float, float]] = {}
        self._create_schema()

    # --------------------------------------------------------------- connections
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        with self._errors("opening the store"):
            conn = self._open_read_only() if self.read_only else self._open_read_write()
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    def _open_read_write(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        _set_wal(conn)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """`mode=ro`; where SQLite cannot read a WAL database that way (no `-shm` file and
        no right to create one, as on a read-only file system), `immutable=1`: nobody can
        write such a file anyway."""
        uri = f"file:{quote(str(self.path))}?mode=ro"
        for options in ("", "&immutable=1"):
            conn = sqlite3.connect(
                uri + options,
                uri=True,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError:
                conn.close()
                if options:
                    raise
        raise AssertionError("not reached")

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn SQLite's and the file system's errors into a `StoreError` naming the
        cause and what was being done."""
        try:
            yield
        except sqlite3.Error as error:
            raise StoreError(
                f"{action} failed: {sqlite_reason(error, self.path, self.timeout)}"
            ) from error
        except OSError as error:
            raise StoreError(f"{action} failed: {describe_os_error(error)}.") from error

    def _query(self, sql: str, params: Any = ()) -> list[tuple]:
        """Rows of one read (autocommit: it takes no lock a writer holds)."""
        with self._errors(f"reading {self.path}"):
            return self._connection().execute(sql, params).fetchall()

    @contextmanager
    def _transaction(
        self, durable: bool = True, action: str = "writing to the store"
    ) -> Iterator[sqlite3.Connection]:
        """A write transaction: `BEGIN IMMEDIATE` takes the write lock up front, so two
        processes never deadlock upgrading a read to a write. A non-`durable` one skips
        the disk flush: the next durable commit flushes the log up to and including it.
        Any error rolls the whole transaction back; it also marks failed any run whose
        finish an earlier transaction could not write."""
        if self.read_only:
            raise StoreError(f"{self.url} is open read-only; {action} is not possible.")
        with self._errors(action):
            conn = self._connection()
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    pending = dict(self._unfinished)
                    for run_id, (reason, ended_at, duration) in pending.items():
                        conn.execute(
                            "UPDATE runs SET status = 'error', error = ?, ended_at = ?, "
                            "duration = ? WHERE run_id = ? AND status = 'running'",
                            (reason, ended_at, duration, run_id),
                        )
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (a full disk does that).
                    if conn.in_transaction:
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
                for run_id in pending:
                    self._unfinished.pop(run_id, None)
            finally:
                if not durable:
                    try:
                        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                    except sqlite3.Error:
                        pass

    def _create_schema(self) -> None:
        # Read first: an existing store needs no write, so opening it never waits for
        # another process's write transaction (and works on a read-only file system).
        found = self._query("PRAGMA user_version")[0][0]
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer lookingglass (schema {found}, this one "
                f"reads {SCHEMA_VERSION}); upgrade lookingglass to open it."
            )
        if found == SCHEMA_VERSION:
            return
        if self.read_only:
            raise StoreError(f"{self.path} is not an experiment store (it has no runs table).")
        with self._transaction(action=f"creating the store {self.path}") as conn:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found == SCHEMA_VERSION:
                return
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        if self._unfinished and not self.read_only:
            try:  # one more try at marking runs whose finish failed
                with self._transaction(action="marking unfinished runs failed"):
                    pass
            except StoreError:
                pass
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # closed from another thread already
                    pass
            self._connections.clear()
        self._local = threading.local()

    # -------------------------------------------------------------------- writes
    def put_blob(self, data: bytes, ext: str) -> str:
        return self.blobs.put(data, ext)

    def get_blob(self, digest: str, ext: str) -> bytes:
        return self.blobs.get(digest, ext)

    def start_run(
        self, version, kind, args, blobs, seed, model, environment, started_at, parent_run=None
    ) -> int:
        # Not flushed on its own: the run's finish (or any later commit) flushes it, and a
        # start lost to a power cut loses nothing a finished run needs.
        with self._transaction(durable=False, action="starting a run") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    version.name,
                    version.version,
                    version.source,
                    json.dumps(version.dependencies),
                    version.module,
                    version.qualname,
                    started_at,
                ),
            )
            cursor = conn.execute(
                "INSERT INTO runs (name, version, kind, status, args, seed, model, environment, "
                "started_at, parent_run) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (
                    version.name,
                    version.version,
                    kind,
                    _dumps(args),
                    seed,
                    _dumps(model),
                    _dumps(environment),
                    started_at,
                    parent_run,
                ),
            )
            run_id = int(cursor.lastrowid)
            self._link_blobs(conn, run_id, blobs)
        return run_id

    def finish_run(
        self, run_id, status, result, blobs, error, traceback, ended_at, duration, attachments=None
    ) -> None:
        if status not in ("ok", "error"):
            raise StoreError(f"A run finishes with status 'ok' or 'error', not {status!r}.")
        try:
            with self._transaction(action=f"finishing run {run_id}") as conn:
                updated = conn.execute(
                    "UPDATE runs SET status = ?, result = ?, error = ?, traceback = ?, "
                    "ended_at = ?, duration = ? WHERE run_id = ? AND status = 'running'",
                    (status, _dumps(result), error, traceback, ended_at, duration, run_id),
                ).rowcount
                if updated != 1:
                    raise StoreError(f"Run {run_id} is not a running run of this store.")
                self._link_blobs(conn, run_id, blobs)
                for name, (media_type, digest, ext) in (attachments or {}).items():
                    self._attach(conn, run_id, name, media_type, digest, ext)
        except StoreError as failure:
            if not isinstance(failure.__cause__, sqlite3.Error | OSError):
                raise
            note = self._mark_failed(run_id, failure, ended_at, duration)
            raise StoreError(f"{failure} {note}") from failure.__cause__

    def _mark_failed(self, run_id: int, failure: StoreError, ended_at, duration) -> str:
        """Record that run `run_id` could not be finished: now if a small write still
        succeeds, else at this store's next successful write. Says which."""
        reason = f"the run's record could not be finished: {failure}"
        self._unfinished[run_id] = (reason, ended_at, duration)
        try:
            with self._transaction(action=f"marking run {run_id} failed"):
                pass
        except StoreError:
            return (
                f"Run {run_id} reads 'running' until this store's next successful write, "
                "which marks it 'error' with this reason."
            )
        return f"Run {run_id} is marked 'error' with this reason."

    def attach(self, run_id, name, media_type, digest, ext) -> None:
        self.get_run(run_id)
        with self._transaction(action=f"attaching {name!r} to run {run_id}") as conn:
            self._attach(conn, run_id, name, media_type, digest, ext)

    def _attach(self, conn, run_id, name, media_type, digest, ext) -> None:
        self._link_blobs(conn, run_id, [(digest, ext)])
        conn.execute(
            "INSERT OR REPLACE INTO attachments VALUES (?, ?, ?, ?, ?)",
            (run_id, name, media_type, digest, ext),
        )

    def _link_blobs(self, conn, run_id: int, blobs: list[tuple[str, str]]) -> None:
        for digest, ext in set(blobs):
            size = self.blobs.path(digest, ext).stat().st_size
            conn.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)", (digest, ext, size))
            conn.execute("INSERT OR IGNORE INTO run_blobs VALUES (?, ?, ?)", (run_id, digest, ext))

    # --------------------------------------------------------------------- reads
    def experiment_names(self) -> list[str]:
        rows = self._query("SELECT name FROM versions GROUP BY name ORDER BY MIN(created_at)")
        return [r[0] for r in rows]

    def list_versions(self, name: str) -> list[str]:
        rows = self._query(
            "SELECT version FROM versions WHERE name = ? ORDER BY created_at, rowid", (name,)
        )
        return [r[0] for r in rows]

    def get_version(self, name: str, version: str) -> VersionRecord:
        rows = self._query(
            "SELECT name, version, source, dependencies, module, qualname, created_at "
            "FROM versions WHERE name = ? AND version = ?",
            (name, version),
        )
        row = rows[0] if rows else None
        if row is None:
            known = self.list_versions(name)
            raise StoreError(f"Experiment {name!r} has no version {version!r}; known: {known}.")
        return VersionRecord(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])

    def get_run(self, run_id: int) -> RunRecord:
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (int(run_id),))
        row = rows[0] if rows else None
        if row is None:
            raise StoreError(f"There is no run {run_id} in {self.url}.")
        return self._run(row)

    def runs(self, name=None, version=None, status=None) -> list[RunRecord]:
        clauses, params = [], []
        for column, value in (("name", name), ("version", version), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY run_id", params)
        return [self._run(row) for row in rows]

    def _run(self, row: tuple) -> RunRecord:
        attachments = {
            name: (media_type, digest, ext)
            for name, media_type, digest, ext in self._query(
                "SELECT name, media_type, digest, ext FROM attachments WHERE run_id = ? "
                "ORDER BY name",
                (row[0],),
            )
        }
        return RunRecord(
            run_id=row[0],
            name=row[1],
            version=row[2],
            kind=row[3],
            status=row[4],
            args=json.loads(row[5]),
            result=None if row[6] is None else json.loads(row[6]),
            error=row[7],
            traceback=row[8],
            seed=row[9],
            model=json.loads(row[10]),
            environment=json.loads(row[11]),
            started_at=row[12],
            ended_at=row[13],
            duration=row[14],
            parent_run=row[15],
            attachments=attachments,
        )

    def check(self, verify_blobs=False, progress=None) -> list[str]:
        """Problems found (empty if none). A database too damaged to read is reported as
        a problem (with what to do), not raised."""
        try:
            problems = [
                f"database: {r[0]}" for r in self._query("PRAGMA integrity_check") if r[0] != "ok"
            ]
            problems += [
                f"foreign key violation in {r[0]}" for r in self._query("PRAGMA foreign_key_check")
            ]
            rows = self._query("SELECT digest, ext FROM blobs")
        except StoreError as error:
            return [str(error)]
        if problems:
            problems.append(CORRUPT_ADVICE.format(path=self.path))
        for digest, ext in rows if progress is None else progress(rows):
            try:
                path = self.blobs.path(digest, ext)
                if not path.exists():
                    problems.append(f"blob {digest[:12]}{ext} is missing")
                elif verify_blobs:
                    self.blobs.get(digest, ext, verify=True)
            except StoreError as error:
                problems.append(str(error))
        return problems

    def orphan_blobs(self) -> list[Path]:
        """Blob files no run refers to (left by a process killed between writing a blob
        and committing its run), and temporary files of blob writes that never finished;
        safe to delete."""
        known = set(self._query("SELECT digest, ext FROM blobs"))
        orphans = [self.blobs.path(d, e) for d, e in sorted(self.blobs.digests() - known)]
        return orphans + self.blobs.temp_files()


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL needs a moment with no other transaction; retry while others write.
    for _ in range(200):
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError:
            mode = None
        if mode == "wal":
            return
        time.sleep(0.05)
    raise StoreError(
        "Could not switch the experiment database to WAL mode (is it on a network drive?)."
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))
