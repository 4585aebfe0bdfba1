"""Shard files: which rows each shard holds, and how one is written, committed and read.

Shard `k` holds rows `[k * rows_per_shard, (k + 1) * rows_per_shard)` of the data (the
last one may be shorter), whatever the number of ranks, so a shard's bytes never depend on
how the work was split. Its records (one per token) are in a seeded random order
("shuffled on write"), so a training reader can stream shards sequentially.

A shard is a safetensors file with, for `n` records:
    tokens [n] int64, row [n] int64, pos [n] int64, and one tensor [n, ...] per hook
    (named by the hook name), and metadata {"harvest": JSON of shard, row_start, row_stop, seed}.
It is committed in two atomic steps: the `.safetensors` file, then a small `.json`
sidecar holding its SHA-256 and record count. A shard exists for a reader (and for a
resumed run) only once its sidecar does and the file matches it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import Tensor

from lookingglass.utils.files import write_atomic

INDEX_KEYS = ("tokens", "row", "pos")


@dataclass(frozen=True)
class ShardPlan:
    """How `n_rows` rows are cut into shards of `rows_per_shard` rows."""

    n_rows: int
    rows_per_shard: int

    @property
    def n_shards(self) -> int:
        return -(-self.n_rows // self.rows_per_shard)

    def rows(self, k: int) -> range:
        """The data rows shard `k` holds."""
        start = k * self.rows_per_shard
        return range(start, min(start + self.rows_per_shard, self.n_rows))

    def for_rank(self, rank: int, world_size: int) -> list[int]:
        """Shards rank `rank` of `world_size` writes: `k % world_size == rank`."""
        return list(range(rank, self.n_shards, world_size))


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def sidecar_path(out: Path, k: int) -> Path:
    return out / f"shard-{k:05d}.json"


def shard_permutation(seed: int, k: int, n: int) -> Tensor:
    """The seeded record order of shard `k` (depends on `seed` and `k` only)."""
    digest = hashlib.sha256(f"lookingglass-harvest:{seed}:{k}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(n, generator=generator)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def commit_shard(out: Path, k: int, tensors: dict[str, Tensor], metadata: dict[str, str]) -> dict:
    """Write shard `k` and then its sidecar, each atomically; return the sidecar's entry."""
    # One metadata key: safetensors writes several in hash-map order, which varies by process.
    header = {"harvest": json.dumps(metadata, sort_keys=True)}
    data = save({name: t.contiguous() for name, t in tensors.items()}, metadata=header)
    write_atomic(out / shard_name(k), data)
    entry = {
        "index": k,
        "file": shard_name(k),
        "sha256": hashlib.sha256(data).hexdigest(),
        "n_tokens": int(tensors["tokens"].shape[0]),
        "rows": [int(metadata["row_start"]), int(metadata["row_stop"])],
    }
    write_atomic(sidecar_path(out, k), json.dumps(entry, indent=1) + "\n")
    return entry


def committed_entry(out: Path, k: int, verify: bool = True) -> dict | None:
    """Shard `k`'s sidecar entry if it is committed (and, with `verify`, its file matches)."""
    try:
        entry = json.loads(sidecar_path(out, k).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    path = out / entry["file"]
    if not path.is_file() or (verify and sha256_file(path) != entry["sha256"]):
        return None
    return entry


def read_shard(path: str | Path) -> dict[str, Tensor]:
    """All tensors of one shard file (index tensors and one per hook)."""
    return load_file(str(path))
