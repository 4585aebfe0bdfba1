"""Checks on a checkpoint folder made before any weight is read or any model is built.

- `inside_folder`: a path read from a file in the folder (a shard named in
  `model.safetensors.index.json`) or a weight file that is a symbolic link must stay
  inside the folder once resolved, so a hostile folder cannot make us read elsewhere.
  The one exception is the Hugging Face cache, whose snapshot folders hold links into
  the repository's `blobs` folder.
- `meta_tensors`: a safetensors file's tensor names, shapes and dtypes from its header,
  as tensors on the meta device (no data read), so the converters can check a config
  against its weights before the weights are loaded.
- `check_layer_count`: the config's `n_layers` against the layers the checkpoint holds,
  counted from tensor names. It runs first because every other check lists tensors per
  layer: a config claiming ten million layers must fail in microseconds, not after
  building ten million layers' worth of names (or modules).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import safetensors
import torch
from torch import Tensor

from lookingglass.errors import CheckpointError

# safetensors dtype names -> torch dtypes (the ones torch has).
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
# The block index in a tensor name: `h.3.` (GPT-2 line), `layers.3.` (Llama line, NeoX,
# OPT's `decoder.layers.3.`), `layer.3.` (BERT), `blocks.3.` (lookingglass's own format).
_LAYER = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks)\.(\d+)\.")


def inside_folder(folder: Path, entry: object, source: str) -> Path:
    """`folder / entry`, refused unless it resolves (links followed) to a place inside
    `folder` (or, in the Hugging Face cache, inside the repository's `blobs` folder).

    Args:
        folder: the checkpoint folder.
        entry: the relative path as read (from an index file, or a file name).
        source: where the entry was read, for the message.

    Raises:
        CheckpointError: naming the entry, when it is not a relative path (absolute,
            empty, not a string) or leads outside the folder.
    """
    if not isinstance(entry, str) or not entry or Path(entry).is_absolute():
        raise CheckpointError(
            f"The file {entry!r} (from {source}) is not a relative path inside {folder}; "
            "a checkpoint's files are named relative to its folder, and nothing outside it "
            "is read."
        )
    path = folder / entry
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in _allowed_roots(folder)):
        raise CheckpointError(
            f"The file {entry!r} (from {source}) resolves to {resolved}, outside the "
            f"checkpoint folder {folder}. Refusing to read it: copy the file into the folder "
            "if it belongs to this checkpoint."
        )
    return path


def _allowed_roots(folder: Path) -> list[Path]:
    root = folder.resolve()
    roots = [root]
    # Hugging Face cache: models--org--name/snapshots/<revision>/file -> ../../blobs/<hash>
    if root.parent.name == "snapshots" and (root.parent.parent / "blobs").is_dir():
        roots.append(root.parent.parent / "blobs")
    return roots


def meta_tensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a safetensors file as a meta tensor of its shape and dtype; only
    the header is read.

    Raises:
        CheckpointError: the file is not a readable safetensors file.
    """
    try:
        with safetensors.safe_open(path, framework="pt") as file:
            return {
                name: torch.empty(
                    (shape := file.get_slice(name)).get_shape(),
                    dtype=_DTYPES.get(shape.get_dtype(), torch.float32),
                    device="meta",
                )
                for name in file.keys()  # noqa: SIM118 (safe_open has no __iter__)
            }
    except Exception as error:  # the library raises several types for a bad file
        raise CheckpointError(
            f"Could not read {path}: {error}. The file is corrupt or truncated; "
            "download or save it again."
        ) from error


def layers_in(names: Iterable[str]) -> list[int]:
    """The block indices that occur in tensor names, sorted."""
    return sorted({int(m.group(1)) for name in names if (m := _LAYER.search(name))})


def check_layer_count(n_layers: int, names: Iterable[str], source: str) -> None:
    """Raise `CheckpointError` when the config's `n_layers` is not the number of blocks
    the checkpoint's tensor names hold (checkpoints without numbered blocks pass).

    Args:
        n_layers: the config's number of layers.
        names: the checkpoint's tensor names.
        source: what was read, for the message.
    """
    layers = layers_in(names)
    if not layers or len(layers) == n_layers:
        return
    plural = "layer" if len(layers) == 1 else "layers"
    span = f"{len(layers)} {plural} (blocks {layers[0]}..{layers[-1]})"
    raise CheckpointError(
        f"The config of {source} says n_layers={n_layers}, but its weights hold {span}. "
        "Check that config.json belongs to these weights (its layer count field: n_layer, "
        "num_hidden_layers or n_layers) and that the folder holds every shard."
    )
