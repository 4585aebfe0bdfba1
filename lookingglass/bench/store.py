"""Where experiments are kept: the `Store` interface, its records, and store URLs.

`open_store("sqlite:///experiments.db")` (or a plain path) gives a `Store`. Callers use
only the `Store` interface, so another backend (a team's PostgreSQL server) is one more
class registered in `BACKENDS`, with no change to `Bench` or the CLI. The default
backend, SQLite, is in `sqlite.py`.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from lookingglass.bench.blobs import StoreError

STATUSES = ("running", "ok", "error")


@dataclass(frozen=True)
class VersionRecord:
    """One version of an experiment: its source and the same-module code it calls."""

    name: str
    version: str
    source: str
    dependencies: dict[str, str]
    module: str | None = None
    qualname: str | None = None
    created_at: float = 0.0


@dataclass
class RunRecord:
    """One run of an experiment, as stored. `args` and `result` are JSON skeletons
    (decode them with `Bench.load_args` / `Bench.load_result`)."""

    run_id: int
    name: str
    version: str
    kind: str
    status: str
    args: Any
    result: Any
    error: str | None
    traceback: str | None
    seed: int | None
    model: dict[str, Any]
    environment: dict[str, Any]
    started_at: float
    ended_at: float | None
    duration: float | None
    parent_run: int | None = None
    attachments: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    @property
    def effective_status(self) -> str:
        """`status`, except that a run still marked running whose process on this host
        is gone reads "interrupted" (it was killed before it could finish)."""
        if self.status != "running":
            return self.status
        env = self.environment
        if env.get("host") == socket.gethostname() and not _pid_alive(env.get("pid")):
            return "interrupted"
        return "running"


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store(ABC):
    """The experiment store interface that `Bench` and the CLI use."""

    url: str

    @abstractmethod
    def start_run(
        self,
        version: VersionRecord,
        kind: str,
        args: Any,
        blobs: list[tuple[str, str]],
        seed: int | None,
        model: dict[str, Any],
        environment: dict[str, Any],
        started_at: float,
        parent_run: int | None = None,
    ) -> int:
        """Record the version (if new) and a run in status "running"; returns its id."""

    @abstractmethod
    def finish_run(
        self,
        run_id: int,
        status: str,
        result: Any,
        blobs: list[tuple[str, str]],
        error: str | None,
        traceback: str | None,
        ended_at: float,
        duration: float,
        attachments: dict[str, tuple[str, str, str]] | None = None,
    ) -> None:
        """Mark a run finished ("ok" or "error") with its result or error."""

    @abstractmethod
    def attach(self, run_id: int, name: str, media_type: str, digest: str, ext: str) -> None:
        """Attach a stored blob (e.g. a plot) to a run under `name`."""

    @abstractmethod
    def put_blob(self, data: bytes, ext: str) -> str:
        """Store bytes; returns their digest."""

    @abstractmethod
    def get_blob(self, digest: str, ext: str) -> bytes:
        """The bytes of a stored blob."""

    @abstractmethod
    def experiment_names(self) -> list[str]:
        """Names of every experiment with at least one version."""

    @abstractmethod
    def list_versions(self, name: str) -> list[str]:
        """Version ids of an experiment, oldest first."""

    @abstractmethod
    def get_version(self, name: str, version: str) -> VersionRecord:
        """One version (raises `StoreError` if unknown)."""

    @abstractmethod
    def get_run(self, run_id: int) -> RunRecord:
        """One run (raises `StoreError` if unknown)."""

    @abstractmethod
    def runs(
        self, name: str | None = None, version: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Runs, oldest first, optionally of one experiment, version or status."""

    @abstractmethod
    def check(
        self, verify_blobs: bool = False, progress: Callable[[Any], Any] | None = None
    ) -> list[str]:
        """Problems found (empty if none): database integrity, missing or corrupt blobs."""

    def close(self) -> None:  # noqa: B027 (a backend without connections has nothing to close)
        """Release connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------ URLs
def _open_sqlite(url: str) -> Store:
    parts = urlsplit(url)
    if parts.netloc:
        raise StoreError(
            f"{url!r}: an SQLite URL has no host; write sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db."
        )
    path = unquote(parts.path[1:])
    if not path or path == ":memory:":
        raise StoreError(f"{url!r} names no database file (an in-memory store would lose runs).")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"synchronous", "timeout", "mode"}
    if unknown:
        raise StoreError(
            f"Unknown SQLite store option(s) {sorted(unknown)}; known: synchronous, timeout, mode."
        )
    if options.get("mode", "rw") not in ("ro", "rw"):
        raise StoreError(
            f"{url!r}: mode must be 'ro' (read only) or 'rw', not {options['mode']!r}."
        )
    try:
        timeout = float(options.get("timeout", 60.0))
    except ValueError:
        raise StoreError(f"{url!r}: timeout must be a number of seconds.") from None
    from lookingglass.bench.sqlite import SQLiteStore

    return SQLiteStore(
        path,
        synchronous=options.get("synchronous", "full"),
        timeout=timeout,
        read_only=True if options.get("mode") == "ro" else None,
    )


BACKENDS: dict[str, Callable[[str], Store]] = {"sqlite": _open_sqlite}


def open_store(url: str | Path | Store) -> Store:
    """Open the store at `url`: `sqlite:///path/to/experiments.db` (relative path),
    `sqlite:////absolute/path.db`, a plain file path, or an already open `Store`.

    Options go in the query string, e.g. `sqlite:///runs.db?synchronous=normal`, or
    `?mode=ro` to open an existing store read-only (a store that cannot be written, e.g.
    on a read-only file system, opens read-only by itself).
    Backends register an opener in `BACKENDS` under their URL scheme.
    """
    if isinstance(url, Store):
        return url
    text = str(url)
    scheme = urlsplit(text).scheme if "://" in text else ""
    if not scheme:
        from lookingglass.bench.sqlite import SQLiteStore

        return SQLiteStore(text)
    opener = BACKENDS.get(scheme.split("+")[0])
    if opener is None:
        raise StoreError(
            f"No experiment-store backend for {scheme!r} URLs; available: {sorted(BACKENDS)}. "
            "A shared PostgreSQL store is planned; until then point several processes at one "
            "SQLite file on a local disk."
        )
    return opener(text)
