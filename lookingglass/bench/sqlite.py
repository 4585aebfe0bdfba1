"""The default experiment store: one SQLite file in WAL mode, and a blob folder beside it.

WAL mode lets readers work while one process writes, so several processes can log to one
store at once. Large values live in a content-addressed blob folder beside the database
(`experiments.db` -> `experiments.blobs/`). Every write is one transaction (`BEGIN
IMMEDIATE`, so two writers never deadlock), and blobs are renamed into place before the
row that refers to them commits: a process killed at any point leaves a readable store in
which every finished run is intact.
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

from lookingglass.bench.blobs import BlobStore, StoreError
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
    """

    def __init__(self, path: str | Path, synchronous: str = "full", timeout: float = 60.0) -> None:
        if synchronous.lower() not in ("full", "normal", "off"):
            raise StoreError(f"synchronous must be 'full', 'normal' or 'off', got {synchronous!r}.")
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite:///{self.path}"
        self.synchronous = synchronous.upper()
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.path.with_suffix(".blobs"), fsync=self.synchronous == "FULL")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._create_schema()

    # --------------------------------------------------------------- connections
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        _set_wal(conn)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction: `BEGIN IMMEDIATE` takes the write lock up front, so two
        processes never deadlock upgrading a read to a write. A non-`durable` one skips
        the disk flush: the next durable commit flushes the log up to and including it."""
        conn = self._connection()
        if not durable:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if not durable:
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")

    def _create_schema(self) -> None:
        with self._transaction() as conn:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer lookingglass (schema {found}, this one "
                    f"reads {SCHEMA_VERSION}); upgrade lookingglass to open it."
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
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
        with self._transaction(durable=False) as conn:
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
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, result = ?, error = ?, traceback = ?, ended_at = ?, "
                "duration = ? WHERE run_id = ? AND status = 'running'",
                (status, _dumps(result), error, traceback, ended_at, duration, run_id),
            ).rowcount
            if updated != 1:
                raise StoreError(f"Run {run_id} is not a running run of this store.")
            self._link_blobs(conn, run_id, blobs)
            for name, (media_type, digest, ext) in (attachments or {}).items():
                self._attach(conn, run_id, name, media_type, digest, ext)

    def attach(self, run_id, name, media_type, digest, ext) -> None:
        with self._transaction() as conn:
            self.get_run(run_id)
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
        rows = (
            self._connection()
            .execute("SELECT name FROM versions GROUP BY name ORDER BY MIN(created_at)")
            .fetchall()
        )
        return [r[0] for r in rows]

    def list_versions(self, name: str) -> list[str]:
        rows = (
            self._connection()
            .execute(
                "SELECT version FROM versions WHERE name = ? ORDER BY created_at, rowid", (name,)
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def get_version(self, name: str, version: str) -> VersionRecord:
        row = (
            self._connection()
            .execute(
                "SELECT name, version, source, dependencies, module, qualname, created_at "
                "FROM versions "
                "WHERE name = ? AND version = ?",
                (name, version),
            )
            .fetchone()
        )
        if row is None:
            known = self.list_versions(name)
            raise StoreError(f"Experiment {name!r} has no version {version!r}; known: {known}.")
        return VersionRecord(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])

    def get_run(self, run_id: int) -> RunRecord:
        row = (
            self._connection()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (int(run_id),))
            .fetchone()
        )
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
        rows = (
            self._connection()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY run_id", params)
            .fetchall()
        )
        return [self._run(row) for row in rows]

    def _run(self, row: tuple) -> RunRecord:
        attachments = {
            name: (media_type, digest, ext)
            for name, media_type, digest, ext in self._connection().execute(
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
        conn = self._connection()
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [
            f"foreign key violation in {r[0]}" for r in conn.execute("PRAGMA foreign_key_check")
        ]
        rows = conn.execute("SELECT digest, ext FROM blobs").fetchall()
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
        and committing its run); safe to delete."""
        known = set(self._connection().execute("SELECT digest, ext FROM blobs").fetchall())
        return [self.blobs.path(d, e) for d, e in sorted(self.blobs.digests() - known)]


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
