"""Read a checkpoint folder: its `config.json`, and its weights as tensors
(`load_checkpoint`) or as shapes only (`load_checkpoint_shapes`, from the safetensors
headers, so a config can be checked against its weights before any weight is read).

Safetensors is read first; `pytorch_model.bin` only with `torch.load(weights_only=True)`,
which never runs code from the file. Every file read, and every shard an index names,
must resolve to a place inside the folder (`checks.inside_folder`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from lookingglass.errors import CheckpointError
from lookingglass.loading import checks

CONFIG = "config.json"
SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
TORCH_BIN, TORCH_BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def load_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read `config.json` and every weight tensor of a checkpoint folder.

    Looks for, in order: `model.safetensors.index.json` (sharded), `model.safetensors`,
    `pytorch_model.bin.index.json` (sharded), `pytorch_model.bin`. A shard named in an
    index, or a weight file that is a link, must resolve to a file inside the folder.

    Returns:
        `(config dict, state dict)` with the checkpoint's own key names, on the CPU.

    Raises:
        CheckpointError: no config or weights, an unreadable or corrupt file (named),
            a shard missing or outside the folder, or a key in two shards.
    """
    folder = Path(folder)
    hf_config = read_config(folder)
    readers = {SAFETENSORS: _read_safetensors, TORCH_BIN: _read_torch}
    return hf_config, _read_files(_weight_files(folder), lambda path, kind: readers[kind](path))


def load_checkpoint_shapes(folder: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """As `load_checkpoint`, but the tensors are on the meta device: names, shapes and
    dtypes only. Safetensors files are read from their headers alone (no weight data);
    `pytorch_model.bin` files are memory-mapped, then dropped."""
    folder = Path(folder)
    hf_config = read_config(folder)

    def read(path: Path, kind: str) -> dict[str, Tensor]:
        if kind == SAFETENSORS:
            return checks.meta_tensors(path)
        return {name: t.to("meta") for name, t in _read_torch(path).items()}

    return hf_config, _read_files(_weight_files(folder), read)


def read_config(folder: Path) -> dict[str, Any]:
    """The `config.json` dict of a checkpoint folder.

    Raises:
        CheckpointError: no folder, no `config.json`, or not a JSON object.
    """
    if not folder.is_dir():
        raise CheckpointError(f"Checkpoint folder {folder} does not exist.")
    config_path = folder / CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"No {CONFIG} in {folder} (found: {_listing(folder)}).")
    checks.inside_folder(folder, CONFIG, "a link in the folder")
    try:
        hf_config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path} is not valid JSON: {error}.") from error
    if not isinstance(hf_config, dict):
        raise CheckpointError(
            f"{config_path} holds a JSON {type(hf_config).__name__}, not an object of fields."
        )
    return hf_config


def _weight_files(folder: Path) -> list[tuple[str, Path, str]]:
    """`(name as listed, path, kind)` for every weight file of the folder, in reading
    order; `kind` is `SAFETENSORS` or `TORCH_BIN`. Each path stays inside the folder."""
    for index, single in ((SAFETENSORS_INDEX, SAFETENSORS), (TORCH_BIN_INDEX, TORCH_BIN)):
        if (folder / index).is_file():
            return [(s, p, single) for s, p in _shards(folder / index)]
        if (folder / single).is_file():
            path = checks.inside_folder(folder, single, "a link in the folder")
            return [(single, path, single)]
    raise CheckpointError(
        f"No weights in {folder}: expected {SAFETENSORS} (or {SAFETENSORS_INDEX} with its "
        f"shards) or {TORCH_BIN}. Found: {_listing(folder)}."
    )


def _shards(index_path: Path) -> list[tuple[str, Path]]:
    """The shards a `*.index.json` lists, each checked to lie inside its folder."""
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()), key=str)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index_path} is not a valid shard index: {e!r}.") from e
    source = f"the weight_map of {index_path.name}"
    paths = [(s, checks.inside_folder(index_path.parent, s, source)) for s in shards]
    for shard, path in paths:
        if not path.is_file():
            raise CheckpointError(f"Shard {shard} listed in {index_path.name} is missing.")
    return paths


def _read_files(
    files: list[tuple[str, Path, str]], read: Callable[[Path, str], dict[str, Tensor]]
) -> dict[str, Tensor]:
    state_dict: dict[str, Tensor] = {}
    for shard, path, kind in files:
        tensors = read(path, kind)
        twice = sorted(set(tensors) & set(state_dict))
        if twice:
            raise CheckpointError(f"Keys {twice[:10]} occur in {shard} and in another shard.")
        state_dict.update(tensors)
    return state_dict


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    # Memory-mapped, copy-on-write (safetensors' default backend): a weight is read from
    # disk when first used, resident once (in the page cache), and writing into it (as
    # in-place weight processing does) copies only the pages written, never the file.
    # As with Hugging Face's loader, the file must not be rewritten in place while a
    # model loaded from it is alive (saving writes a new file and renames it: safe).
    try:
        return safetensors.torch.load_file(path)
    except Exception as error:  # the library raises several types for a bad file
        raise CheckpointError(
            f"Could not read {path}: {error}. The file is corrupt or truncated; "
            "download or save it again."
        ) from error


def _read_torch(path: Path) -> dict[str, Tensor]:
    try:
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):  # only files in the pre-1.6 format cannot be mapped
                raise
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"Could not read {path}: {error}. Only plain tensor files load (weights_only=True "
            "never runs code from a checkpoint); a corrupt file must be downloaded again."
        ) from error
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(v, Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors.")
    return dict(state_dict)


def _listing(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "nothing"
