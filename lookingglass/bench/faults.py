"""What went wrong with a store's files, in words: a full disk, a read-only file system,
a damaged database, a held lock. Used to turn SQLite's and the OS's errors into
`StoreError` messages that name the cause and what to do."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path


def describe_os_error(error: OSError) -> str:
    """A short reason for a failed file operation, naming a full disk or a read-only
    file system plainly."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }
    reason = reasons.get(error.errno)
    detail = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    return f"{reason} ({detail})" if reason else detail


CORRUPT_ADVICE = (
    "the database file {path} is damaged: copy what still reads with "
    "`sqlite3 {path} .recover | sqlite3 recovered.db`, or restore it from a backup"
)


def sqlite_reason(error: sqlite3.Error, path: Path, timeout: float) -> str:
    """What an SQLite error means for the store, in words."""
    code = getattr(error, "sqlite_errorcode", None)
    text = str(error)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL or "disk is full" in text:
        return (
            f"the disk is full ({text}). The write was rolled back: the store is consistent; "
            "free space and run again."
        )
    if primary == sqlite3.SQLITE_READONLY or "readonly" in text:
        return (
            f"the store cannot be written ({text}): the file or file system is read-only. "
            "Open it with read_only=True to read it."
        )
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in text:
        return f"{text}: " + CORRUPT_ADVICE.format(path=path) + "."
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return (
            f"another process held the store's write lock for over {timeout:g} s "
            f"({text}); retry, or open the store with a longer timeout."
        )
    if primary == sqlite3.SQLITE_CANTOPEN:
        return f"the database file cannot be opened ({text})."
    return text


def cannot_write(path: Path) -> bool:
    """Whether an existing database (or its folder, where SQLite keeps its journal)
    cannot be written: a read-only file system or missing permissions."""
    if not path.exists():
        return False
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return True
    except (OSError, AttributeError):  # no statvfs (Windows)
        pass
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
