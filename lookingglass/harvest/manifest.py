"""The harvest manifest (`manifest.json`): what was harvested, how, and which shards hold it.

It is written atomically twice: at the start with `"complete": false` (the settings a
resumed run must match) and, after every shard is committed, with `"complete": true` and
the shard list (file, SHA-256, token count, row range). It holds no timestamps, host
names or rank counts, so the same harvest gives the same bytes however it was run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from lookingglass.errors import InputError, LookingGlassError
from lookingglass.harvest.shards import sha256_file
from lookingglass.utils.files import write_atomic

FORMAT = "lookingglass-harvest/1"
MANIFEST = "manifest.json"


class HarvestError(LookingGlassError):
    """A harvest folder is incomplete or its files do not match its manifest."""


def weights_sha256(model: Any) -> str:
    """SHA-256 over the model's parameters and buffers (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}\0".encode())
        digest.update(tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_manifest(out: Path, manifest: dict) -> None:
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(out: str | Path) -> dict:
    """The manifest of the harvest folder `out`."""
    path = Path(out) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarvestError(f"{path} does not exist: {out} is not a harvest folder") from None


def check_same_settings(old: dict, new: dict, out: Path) -> None:
    """Refuse to resume a harvest whose settings differ from this run's."""
    keys = sorted((set(old) | set(new)) - {"complete", "shards"})
    different = [k for k in keys if old.get(k) != new.get(k)]
    if different:
        key = different[0]
        raise InputError(
            f"{out} holds a harvest with other settings ({key}: {old.get(key)!r} there, "
            f"{new.get(key)!r} now); resume with the same arguments, or choose a new --out"
        )


def verify(out: str | Path) -> dict:
    """Check a complete harvest: every listed shard exists with its SHA-256 and token count.

    Returns:
        The manifest.

    Raises:
        HarvestError: the harvest is incomplete, a shard is missing, or a hash differs.
    """
    out = Path(out)
    manifest = read_manifest(out)
    if not manifest.get("complete"):
        raise HarvestError(f"the harvest in {out} is not complete; rerun the command to resume")
    if len(manifest["shards"]) != manifest["n_shards"]:
        raise HarvestError(
            f"{out}: manifest lists {len(manifest['shards'])} shards of {manifest['n_shards']}"
        )
    if sum(s["n_tokens"] for s in manifest["shards"]) != manifest["n_tokens"]:
        raise HarvestError(f"{out}: shard token counts do not add up to n_tokens")
    for shard in manifest["shards"]:
        path = out / shard["file"]
        if not path.is_file():
            raise HarvestError(f"{path} is missing")
        if sha256_file(path) != shard["sha256"]:
            raise HarvestError(f"{path} does not match the SHA-256 in the manifest")
    return manifest
