"""Atomic file writes: how the library writes every file a reader may open."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A file opened for writing at a temporary name beside `path` ("wb", or "w" for
    UTF-8 text), flushed to disk and renamed over `path` when the block ends. A reader
    sees the old file or the new one, never half of one; if the block raises, the old
    file is untouched and the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` all at once (`atomic_file`)."""
    with atomic_file(path, "w" if isinstance(data, str) else "wb") as file:
        file.write(data)
    return Path(path)
