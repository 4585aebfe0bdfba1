"""Content-addressed blobs, and the codec that turns results into JSON plus blobs.

A run's arguments and result are stored as a small JSON *skeleton* in the database, in
which every tensor and array is a reference to a blob: a file named by the SHA-256 of
its bytes, in a folder beside the database. Tensors are safetensors files and NumPy
arrays `.npy` files (`allow_pickle=False`), so loading them never runs code, and a value
that is logged twice is stored once.

A blob is written to a temporary name, flushed to disk and renamed into place before the
database row that refers to it commits: a crash leaves at worst an unreferenced blob,
never a row that points at a missing or half-written file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from lookingglass.bench.faults import describe_os_error
from lookingglass.errors import LookingGlassError

TAG = "__lg__"
PutBlob = Callable[[bytes, str], str]
GetBlob = Callable[[str, str], bytes]


class StoreError(LookingGlassError, RuntimeError):
    """The experiment store is missing, corrupt, full, read-only, or was asked for
    something it lacks. The message names the cause (e.g. "the disk is full")."""


# A blob's extension: up to three dot-separated suffixes of letters, digits, "_" and "-"
# (".safetensors", ".plotly.json"); nothing that could name another folder.
_EXT = re.compile(r"(\.[A-Za-z0-9_-]{1,24}){0,3}")


class BlobStore:
    """A folder of immutable files, each named by the SHA-256 of its content.

    `root/ab/abcdef...<ext>`; temporary files live in `root/tmp` until renamed. A
    `read_only` one creates nothing and refuses `put`.
    """

    def __init__(self, root: str | Path, fsync: bool = True, read_only: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.read_only = read_only
        if not read_only:
            try:
                (self.root / "tmp").mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(
                    f"Cannot create the blob folder {self.root}: {describe_os_error(error)}. "
                    "Open the store read-only to read it."
                ) from error

    def path(self, digest: str, ext: str) -> Path:
        """Where the blob with this digest and extension lives.

        Raises:
            StoreError: a digest that is not 64 lowercase hex characters, or an extension
                (as recorded in the database) that is not a plain file suffix, so that the
                path would leave the blob folder (`/../../secret.txt`, an absolute path).
        """
        if (
            not isinstance(digest, str)
            or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
        ):
            raise StoreError(f"{digest!r} is not a blob digest (64 lowercase hex characters).")
        if not isinstance(ext, str) or not _EXT.fullmatch(ext):
            raise StoreError(
                f"Blob extension {ext!r} is not a plain file suffix such as '.npy' or "
                "'.plotly.json' (a record that names a path outside the blob folder is refused; "
                "the store may have been tampered with)."
            )
        path = self.root / digest[:2] / f"{digest}{ext}"
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise StoreError(f"Blob {digest[:12]}{ext} resolves outside {self.root}; refused.")
        return path

    def put(self, data: bytes, ext: str) -> str:
        """Store `data` (if not stored already) and return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        final = self.path(digest, ext)
        if final.exists() and final.stat().st_size == len(data):
            return digest
        if self.read_only:
            raise StoreError(f"The store at {self.root} is open read-only; nothing can be added.")
        temp = self.root / "tmp" / f"{digest[:16]}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            final.parent.mkdir(exist_ok=True)
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            os.replace(temp, final)
            if self.fsync:
                _fsync_dir(final.parent)
        except OSError as error:
            # Nothing half-written stays behind; the database was not touched.
            temp.unlink(missing_ok=True)
            raise StoreError(
                f"Could not write a {len(data)}-byte blob to {self.root}: "
                f"{describe_os_error(error)}. The blob was not stored; free space (or fix the "
                "permissions) and run again."
            ) from error
        return digest

    def get(self, digest: str, ext: str, verify: bool = True) -> bytes:
        """The bytes of a blob; with `verify`, checked against the digest."""
        path = self.path(digest, ext)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"Blob {digest[:12]}{ext} is missing from {self.root}.") from None
        except OSError as error:
            raise StoreError(f"Could not read blob {path}: {describe_os_error(error)}.") from error
        if verify and hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"Blob {path} is corrupt: its content does not match its name.")
        return data

    def temp_files(self) -> list[Path]:
        """Temporary files of blob writes that never finished (a process killed while
        writing); no record refers to them."""
        folder = self.root / "tmp"
        return sorted(p for p in folder.glob("*.tmp") if _writer_gone(p)) if folder.is_dir() else []

    def digests(self) -> set[tuple[str, str]]:
        """(digest, extension) of every blob in the folder."""
        found = set()
        for path in self.root.glob("??/*"):
            name = path.name
            found.add((name[:64], name[64:]))
        return found


def _writer_gone(temp: Path) -> bool:
    """Whether the process that named this temporary file (`<digest>.<pid>.<id>.tmp`)
    has ended, so the file will never be renamed into place."""
    parts = temp.name.split(".")
    if len(parts) != 4 or not parts[1].isdigit():
        return True
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ codec
@dataclasses.dataclass(frozen=True)
class Unstored:
    """Stands in for a value that could not be stored (e.g. an open file): its type and
    repr are kept so that the record says what it was."""

    type: str
    repr: str


def encode(value: Any, put_blob: PutBlob) -> tuple[Any, list[tuple[str, str]]]:
    """A JSON-serializable skeleton of `value`, storing tensors and arrays as blobs.

    Returns the skeleton and the (digest, extension) of every blob it refers to.
    """
    blobs: list[tuple[str, str]] = []

    def blob(data: bytes, ext: str) -> str:
        digest = put_blob(data, ext)
        blobs.append((digest, ext))
        return digest

    return _encode(value, blob, depth=0), blobs


def _encode(value: Any, blob: Callable[[bytes, str], str], depth: int) -> Any:
    if depth > 100:
        return _unstored(value)
    enc = lambda v: _encode(v, blob, depth + 1)  # noqa: E731
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int) and type(value) is int:
        return value
    if isinstance(value, float) and type(value) is float:
        return value if math.isfinite(value) else {TAG: "float", "value": repr(value)}
    if isinstance(value, torch.Tensor):
        return _encode_tensor(value, blob)
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return _unstored(value)
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {
            TAG: "ndarray",
            "digest": blob(buffer.getvalue(), ".npy"),
            "dtype": str(value.dtype),
            "shape": list(value.shape),
        }
    if isinstance(value, np.generic):
        return {TAG: "numpy_scalar", "dtype": str(value.dtype), "value": enc(value.item())}
    if isinstance(value, complex):
        return {TAG: "complex", "real": enc(value.real), "imag": enc(value.imag)}
    if isinstance(value, bytes | bytearray):
        return {TAG: "bytes", "digest": blob(bytes(value), ".bin")}
    if isinstance(value, list):
        return [enc(v) for v in value]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {
            TAG: "namedtuple",
            "type": _type_name(value),
            "fields": {k: enc(v) for k, v in zip(value._fields, value, strict=True)},
        }
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [enc(v) for v in value]}
    if isinstance(value, set | frozenset):
        items = sorted(value, key=repr)
        return {
            TAG: "set",
            "frozen": isinstance(value, frozenset),
            "items": [enc(v) for v in items],
        }
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: enc(v) for k, v in value.items()}
        return {TAG: "dict", "items": [[enc(k), enc(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: enc(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "type": _type_name(value), "fields": fields}
    if isinstance(value, torch.dtype):
        return {TAG: "torch_dtype", "name": str(value).removeprefix("torch.")}
    if isinstance(value, PurePath):
        return {TAG: "path", "value": str(value)}
    if isinstance(value, slice):
        return {TAG: "slice", "items": [enc(value.start), enc(value.stop), enc(value.step)]}
    return _unstored(value)


def _encode_tensor(tensor: torch.Tensor, blob: Callable[[bytes, str], str]) -> Any:
    if tensor.layout != torch.strided or tensor.is_quantized:
        return _unstored(tensor)
    data = save_safetensors({"tensor": tensor.detach().cpu().contiguous()})
    return {
        TAG: "tensor",
        "digest": blob(data, ".safetensors"),
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "shape": list(tensor.shape),
        "device": str(tensor.device),
    }


def _unstored(value: Any) -> dict[str, Any]:
    if isinstance(value, torch.nn.Module):
        cfg = getattr(value, "cfg", None)
        text = f"<{type(value).__name__} {getattr(cfg, 'model_name', '')}>".replace(" >", ">")
    else:
        try:
            text = repr(value)
        except Exception as error:  # a broken __repr__ must not lose the run
            text = f"<unrepresentable: {error}>"
    return {TAG: "unstored", "type": _type_name(value), "repr": text[:2000]}


def _type_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}:{cls.__qualname__}"


def decode(skeleton: Any, get_blob: GetBlob) -> Any:
    """Rebuild a value from its skeleton, reading tensors and arrays from blobs."""
    dec = lambda v: decode(v, get_blob)  # noqa: E731
    if isinstance(skeleton, list):
        return [dec(v) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    kind = skeleton.get(TAG)
    if kind is None:
        return {k: dec(v) for k, v in skeleton.items()}
    if kind == "tensor":
        return load_safetensors(get_blob(skeleton["digest"], ".safetensors"))["tensor"]
    if kind == "ndarray":
        return np.load(io.BytesIO(get_blob(skeleton["digest"], ".npy")), allow_pickle=False)
    if kind == "float":
        return float(skeleton["value"])
    if kind == "numpy_scalar":
        return np.dtype(skeleton["dtype"]).type(dec(skeleton["value"]))
    if kind == "complex":
        return complex(dec(skeleton["real"]), dec(skeleton["imag"]))
    if kind == "bytes":
        return get_blob(skeleton["digest"], ".bin")
    if kind == "tuple":
        return tuple(dec(v) for v in skeleton["items"])
    if kind == "set":
        items = [dec(v) for v in skeleton["items"]]
        return frozenset(items) if skeleton["frozen"] else set(items)
    if kind == "dict":
        return {_hashable(dec(k)): dec(v) for k, v in skeleton["items"]}
    if kind in ("dataclass", "namedtuple"):
        return _rebuild(skeleton["type"], {k: dec(v) for k, v in skeleton["fields"].items()}, kind)
    if kind == "torch_dtype":
        return getattr(torch, skeleton["name"])
    if kind == "path":
        return Path(skeleton["value"])
    if kind == "slice":
        return slice(*(dec(v) for v in skeleton["items"]))
    if kind == "unstored":
        return Unstored(skeleton["type"], skeleton["repr"])
    raise StoreError(
        f"Unknown value tag {kind!r} in a stored record (written by a newer version?)."
    )


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _rebuild(type_name: str, fields: dict[str, Any], kind: str) -> Any:
    """The original dataclass or named tuple, if its class is already imported (loading
    a record never imports a module it names); otherwise the fields as a dict."""
    module_name, _, qualname = type_name.partition(":")
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    try:
        if kind == "namedtuple" and isinstance(obj, type) and issubclass(obj, tuple):
            return obj(**fields)
        if kind == "dataclass" and dataclasses.is_dataclass(obj):
            init = {
                f.name: fields[f.name]
                for f in dataclasses.fields(obj)
                if f.init and f.name in fields
            }
            value = obj(**init)
            for name in set(fields) - set(init):
                object.__setattr__(value, name, fields[name])
            return value
    except (TypeError, ValueError):
        pass
    return fields


def blob_refs(skeleton: Any) -> list[tuple[str, str]]:
    """The (digest, extension) of every blob a skeleton refers to."""
    found: list[tuple[str, str]] = []
    extensions = {"tensor": ".safetensors", "ndarray": ".npy", "bytes": ".bin"}
    stack = [skeleton]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get(TAG) in extensions:
                found.append((item["digest"], extensions[item[TAG]]))
            else:
                stack.extend(item.values())
    return found
