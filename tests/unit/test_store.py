"""The experiment store: the value codec (exact round trips), content-addressed blobs,
store URLs, and the SQLite backend's bookkeeping."""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch

from lookingglass.bench.blobs import BlobStore, StoreError, Unstored, blob_refs, decode, encode
from lookingglass.bench.sqlite import SQLiteStore
from lookingglass.bench.store import BACKENDS, VersionRecord, open_store


@dataclasses.dataclass
class Point:
    x: float
    label: str


Pair = namedtuple("Pair", "left right")


def _roundtrip(value, tmp_path: Path):
    blobs = BlobStore(tmp_path / "blobs")
    skeleton, refs = encode(value, blobs.put)
    assert sorted(set(refs)) == sorted(set(blob_refs(skeleton)))
    import json

    skeleton = json.loads(json.dumps(skeleton, allow_nan=False))  # it really is plain JSON
    return decode(skeleton, blobs.get)


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int8,
        torch.bool,
        torch.complex64,
    ],
)
def test_tensors_round_trip_bit_identical(tmp_path, dtype):
    generator = torch.Generator().manual_seed(0)
    tensor = (torch.randn(3, 5, generator=generator) * 100).to(dtype)
    if dtype.is_floating_point:
        tensor[0, 0] = float("nan")
        tensor[0, 1] = float("-inf")
    out = _roundtrip({"t": tensor}, tmp_path)["t"]
    assert out.dtype == dtype and out.shape == tensor.shape
    assert out.view(torch.uint8).equal(tensor.view(torch.uint8))


def test_odd_tensors_and_arrays_round_trip(tmp_path):
    value = {
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
        "strided": torch.arange(12.0).reshape(3, 4).T,  # not contiguous
        "array": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "int_array": np.array([1, -2, 3], dtype=np.int16),
        "np_scalar": np.float32(1 / 3),
    }
    out = _roundtrip(value, tmp_path)
    assert out["scalar"].shape == () and out["scalar"].item() == 3.25
    assert out["empty"].shape == (0, 4)
    assert out["strided"].equal(value["strided"])
    assert out["array"].dtype == np.float32 and np.array_equal(out["array"], value["array"])
    assert out["int_array"].dtype == np.int16 and np.array_equal(
        out["int_array"], value["int_array"]
    )
    assert type(out["np_scalar"]) is np.float32 and out["np_scalar"] == value["np_scalar"]


def test_python_values_round_trip(tmp_path):
    value = {
        "floats": [0.1, 1e-300, float("inf"), -0.0],
        "nan": float("nan"),
        "tuple": (1, "two", (3.0,)),
        "set": {3, 1, 2},
        "int_keys": {1: "a", (2, 3): "b"},
        "tagged_key": {"__lg__": "looks like a tag"},
        "bytes": b"\x00\xff",
        "path": Path("/tmp/x"),
        "dtype": torch.bfloat16,
        "slice": slice(1, None, 2),
        "complex": 1 + 2j,
        "point": Point(1.5, "p"),
        "pair": Pair(torch.ones(2), 3),
        "big_int": 2**80,
    }
    out = _roundtrip(value, tmp_path)
    assert out["floats"][:3] == value["floats"][:3] and math.copysign(1, out["floats"][3]) == -1
    assert math.isnan(out["nan"])
    for key in (
        "tuple",
        "set",
        "int_keys",
        "tagged_key",
        "bytes",
        "path",
        "dtype",
        "slice",
        "complex",
        "big_int",
    ):
        assert out[key] == value[key], key
    assert isinstance(out["tuple"], tuple) and isinstance(out["set"], set)
    assert out["point"] == Point(1.5, "p")
    assert isinstance(out["pair"], Pair) and out["pair"].left.equal(torch.ones(2))


def test_unstorable_values_are_recorded_by_type_and_repr(tmp_path):
    class Opaque:
        def __repr__(self):
            return "<opaque thing>"

    out = _roundtrip({"obj": Opaque(), "module": torch.nn.Linear(2, 2)}, tmp_path)
    assert isinstance(out["obj"], Unstored) and out["obj"].repr == "<opaque thing>"
    assert out["obj"].type.endswith("Opaque")
    assert out["module"].repr == "<Linear>"


def test_blobs_are_content_addressed_and_verified(tmp_path):
    blobs = BlobStore(tmp_path / "b")
    tensor = torch.arange(10.0)
    first, refs_a = encode([tensor, tensor.clone()], blobs.put)
    assert len(set(refs_a)) == 1  # equal content, one file
    assert len(list((tmp_path / "b").glob("??/*"))) == 1
    assert not list((tmp_path / "b" / "tmp").iterdir())  # temporary files were renamed
    digest, ext = refs_a[0]
    path = blobs.path(digest, ext)
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    with pytest.raises(StoreError, match="corrupt"):
        decode(first, blobs.get)
    with pytest.raises(StoreError, match="not a blob digest"):
        blobs.path("../../etc/passwd", "")


def test_store_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///sub/runs.db")
    assert relative.path == tmp_path / "sub" / "runs.db" and relative.synchronous == "FULL"
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db?synchronous=normal")
    assert absolute.path == tmp_path / "abs.db" and absolute.synchronous == "NORMAL"
    plain = open_store(tmp_path / "plain.db")
    assert isinstance(plain, SQLiteStore) and open_store(plain) is plain
    assert (tmp_path / "plain.blobs").is_dir()
    with pytest.raises(StoreError, match="postgresql.*available: \\['sqlite'\\]"):
        open_store("postgresql://user@host/db")
    with pytest.raises(StoreError, match="Unknown SQLite store option"):
        open_store("sqlite:///x.db?journal=off")
    with pytest.raises(StoreError, match="no database file"):
        open_store("sqlite:///:memory:")
    assert "sqlite" in BACKENDS
    for store in (relative, absolute, plain):
        store.close()


def _version(name="exp", version="v1") -> VersionRecord:
    return VersionRecord(
        name, version, "def exp(): ...", {"helper": "def helper(): ..."}, "mod", "exp"
    )


def _start(store, version=None, environment=None, args=None):
    return store.start_run(
        version or _version(),
        "experiment",
        args or {"a": 1},
        [],
        7,
        {"name": "m"},
        environment or {"host": "h", "pid": os.getpid()},
        1000.0,
    )


def test_sqlite_store_records_runs_in_wal_mode(tmp_path):
    store = SQLiteStore(tmp_path / "e.db")
    run_id = _start(store)
    assert store.get_run(run_id).status == "running"
    store.finish_run(run_id, "ok", {"r": 2}, [], None, None, 1001.0, 1.0)
    run = store.get_run(run_id)
    assert (run.status, run.result, run.args, run.seed, run.duration) == (
        "ok",
        {"r": 2},
        {"a": 1},
        7,
        1.0,
    )
    assert store.list_versions("exp") == ["v1"]
    assert store.get_version("exp", "v1").dependencies == {"helper": "def helper(): ..."}
    with pytest.raises(StoreError, match="not a running run"):
        store.finish_run(run_id, "ok", None, [], None, None, 1002.0, 1.0)
    with pytest.raises(StoreError, match="no version 'v9'"):
        store.get_version("exp", "v9")
    with pytest.raises(StoreError, match="no run 99"):
        store.get_run(99)
    conn = sqlite3.connect(tmp_path / "e.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store.check() == []
    store.close()


def test_a_newer_schema_is_refused(tmp_path):
    SQLiteStore(tmp_path / "e.db").close()
    conn = sqlite3.connect(tmp_path / "e.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer lookingglass"):
        SQLiteStore(tmp_path / "e.db")


def test_missing_blobs_and_orphans_are_reported(tmp_path):
    store = SQLiteStore(tmp_path / "e.db", synchronous="normal")
    skeleton, refs = encode({"t": torch.ones(3)}, store.put_blob)
    run_id = _start(store)
    store.finish_run(run_id, "ok", skeleton, refs, None, None, 1.0, 1.0)
    orphan = store.put_blob(b"never referenced", ".bin")
    assert [p.name for p in store.orphan_blobs()] == [f"{orphan}.bin"]
    store.blobs.path(*refs[0]).unlink()
    assert any("missing" in p for p in store.check())
    store.close()


def test_a_run_whose_process_died_reads_interrupted(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    store = SQLiteStore(tmp_path / "e.db", synchronous="normal")
    alive = _start(store, environment={"host": socket.gethostname(), "pid": os.getpid()})
    gone = _start(store, environment={"host": socket.gethostname(), "pid": int(dead.stdout)})
    assert store.get_run(alive).effective_status == "running"
    assert store.get_run(gone).effective_status == "interrupted"
    store.close()
