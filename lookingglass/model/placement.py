"""One model over several devices: `from_pretrained(..., n_devices=N)` or `device_map=`.

Each top-level part of a `HookedTransformer` (the embeddings, every block, `ln_final`,
`unembed`) lives whole on one device. A forward pre-hook on each part moves what enters
it (the residual stream, the attention context, a KV-cache entry) to that part's device,
so every hook point sees its activation on the device of the layer that made it, the
logits come out on `unembed`'s device, and a `run_with_cache` cache holds each
activation where it was computed (pass `device=` to gather it on one device).

`n_devices` splits the blocks as TransformerLens 3.9's `get_device_for_block_index`
numbers them (block `i` on device `base + i * n_devices // n_layers`), with the
embeddings beside the first block and `ln_final`/`unembed` beside the last, which is
the split TransformerLens's comments describe. `device_map` is Hugging Face's idea with
this model's module names: "auto" or "balanced" (the blocks split evenly over every
visible CUDA device), or a dict from "embed", "pos_embed", "blocks.3", "blocks" (all
blocks), "ln_final", "unembed" (or "" for everything not named) to a device. A device
given as an int means that CUDA device. Disk and meta offload are refused: weights
must be materialised for the hooks to read them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from lookingglass.errors import ConfigError

DeviceMap = str | dict[str, str | int | torch.device]


def block_device(index: int, n_layers: int, n_devices: int, base: torch.device) -> torch.device:
    """The device of block `index` (TransformerLens's `get_device_for_block_index`)."""
    if base.type == "cpu":
        return base
    return torch.device(base.type, (base.index or 0) + (index * n_devices) // n_layers)


def parts(model: nn.Module) -> list[str]:
    """The names of the model's top-level parts that hold weights, in forward order."""
    names = [name for name in ("embed", "pos_embed") if hasattr(model, name)]
    names += [f"blocks.{i}" for i in range(len(model.blocks))]
    return names + [name for name in ("ln_final", "unembed") if hasattr(model, name)]


def plan_for_n_devices(
    model: nn.Module, n_devices: int, device: Any = None
) -> dict[str, torch.device]:
    """Where each part goes when the blocks are split over `n_devices` devices."""
    base = torch.device(device if device is not None else model.cfg.device or "cuda")
    if n_devices < 1:
        raise ConfigError(f"n_devices must be at least 1, got {n_devices}.")
    check_n_devices(base, n_devices)
    n_layers = len(model.blocks)
    first, last = (
        block_device(0, n_layers, n_devices, base),
        block_device(n_layers - 1, n_layers, n_devices, base),
    )
    plan = {}
    for name in parts(model):
        if name.startswith("blocks."):
            plan[name] = block_device(int(name.split(".")[1]), n_layers, n_devices, base)
        else:
            plan[name] = first if name in ("embed", "pos_embed") else last
    return plan


def plan_for_device_map(model: nn.Module, device_map: DeviceMap) -> dict[str, torch.device]:
    """Where each part goes under a Hugging Face-style `device_map`."""
    if isinstance(device_map, str):
        if device_map not in ("auto", "balanced"):
            raise ConfigError(
                f"device_map={device_map!r}: use 'auto', 'balanced' or a dict from module "
                f"names ({', '.join(parts(model)[:3])}, ..., 'unembed') to devices."
            )
        n = torch.cuda.device_count()
        if n == 0:
            return {name: torch.device("cpu") for name in parts(model)}
        return plan_for_n_devices(model, n, "cuda:0")
    known = set(parts(model)) | {"", "blocks"}
    unknown = sorted(set(device_map) - known)
    if unknown:
        raise ConfigError(
            f"device_map names {unknown}, which are not parts of this model; its parts are "
            f"{parts(model)} (plus 'blocks' for every block and '' for the rest)."
        )
    plan = {}
    for name in parts(model):
        group = "blocks" if name.startswith("blocks.") else None
        key = next((k for k in (name, group, "") if k is not None and k in device_map), None)
        if key is None:
            raise ConfigError(
                f"device_map does not place {name!r}: name it, 'blocks', or '' (everything else)."
            )
        plan[name] = _device(device_map[key], key)
    return plan


def place(model: nn.Module, plan: dict[str, torch.device]) -> nn.Module:
    """Move each part to its planned device and make its inputs follow it."""
    for handle in getattr(model, "_placement_handles", []):
        handle.remove()
    handles = []
    for name, device in plan.items():
        part = model.get_submodule(name)
        part.to(device)
        handles.append(part.register_forward_pre_hook(_inputs_to(device), with_kwargs=True))
    model._placement_handles = handles
    model.device_plan = dict(plan)
    model.cfg = model.cfg.replace(device=str(plan[parts(model)[0]]))
    return model


def _inputs_to(device: torch.device):
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return _moved(args, device), _moved(kwargs, device)

    return hook


def _moved(value: Any, device: torch.device) -> Any:
    """`value` with every tensor in it (through tuples, lists, dicts and dataclasses such
    as the attention context and KV-cache entries) on `device`. A KV-cache entry is
    updated in place, so the cache keeps growing on its layer's device."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_moved(v, device) for v in value)
    if isinstance(value, list):
        return [_moved(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            current = getattr(value, field.name)
            if isinstance(current, Tensor) and current.device != device:
                setattr(value, field.name, current.to(device))
        return value
    return value


def _device(value: Any, key: str) -> torch.device:
    if isinstance(value, int):
        value = torch.device("cuda", value)
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device_map[{key!r}]={value!r} is not a device ({error}).") from None
    if device.type in ("meta", "disk"):
        raise ConfigError(
            f"device_map[{key!r}]={value!r}: offloading to {device.type} is not supported; "
            "every weight must be on a real device for the hooks to read it."
        )
    if device.type == "cuda":
        check_n_devices(device, 1)
    return device


def check_n_devices(base: torch.device, n_devices: int) -> None:
    """Refuse a split over more CUDA devices than this machine has."""
    if base.type != "cuda":
        if n_devices > 1:
            raise ConfigError(
                f"n_devices={n_devices} splits the blocks over CUDA devices, but the device "
                f"is {base}. Use device='cuda' (or 'cuda:K' to start at device K)."
            )
        return
    available = torch.cuda.device_count()
    needed = (base.index or 0) + n_devices
    if available < needed:
        raise ConfigError(
            f"n_devices={n_devices} from {base} needs {needed} CUDA devices; this machine has "
            f"{available}. Use fewer devices, or device='cpu'."
        )
