"""Device helpers with TransformerLens's names (`transformer_lens.utilities.devices`,
`gpu_utils`, `library_utils`)."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import warnings
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

# MPS is chosen automatically only on request: it has given wrong results
# (TransformerLens issue 1178). Either variable opts in.
_ALLOW_MPS_VARIABLES = ("LOOKINGGLASS_ALLOW_MPS", "TRANSFORMERLENS_ALLOW_MPS")
_mps_warned = False


def _mps_allowed() -> bool:
    return any(os.environ.get(name, "") == "1" for name in _ALLOW_MPS_VARIABLES)


def get_device() -> str:
    """The best device name: "cuda" if available; "mps" only when available and
    LOOKINGGLASS_ALLOW_MPS=1 (or TRANSFORMERLENS_ALLOW_MPS=1); else "cpu"."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available() and torch.backends.mps.is_built():
        if _mps_allowed():
            return "mps"
        logging.info("MPS is available but not chosen; set LOOKINGGLASS_ALLOW_MPS=1 to use it.")
    return "cpu"


def warn_if_mps(device: str | torch.device) -> None:
    """Warn once when `device` is MPS and MPS was not explicitly allowed."""
    global _mps_warned
    if isinstance(device, torch.device):
        device = device.type
    if device != "mps" or _mps_warned or _mps_allowed():
        return
    _mps_warned = True
    warnings.warn(
        f"The MPS backend may give silently wrong results (PyTorch {torch.__version__}). "
        "Set LOOKINGGLASS_ALLOW_MPS=1 to silence this warning.",
        UserWarning,
        stacklevel=2,
    )


@runtime_checkable
class ModelWithCfg(Protocol):
    """A module with a `cfg` that can be moved between devices and dtypes."""

    cfg: Any

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def to(self, device_or_dtype: torch.device | str | torch.dtype) -> Any: ...


def move_to_and_update_config(
    model: ModelWithCfg,
    device_or_dtype: torch.device | str | torch.dtype,
    print_details: bool = True,
) -> Any:
    """`nn.Module.to(model, device_or_dtype)`, recording the new device or dtype in
    `model.cfg` (and printing it when `print_details`)."""
    if isinstance(device_or_dtype, torch.device | str):
        warn_if_mps(device_or_dtype)
        device = torch.device(device_or_dtype)
        model.cfg.device = (
            device.type if isinstance(device_or_dtype, torch.device) else (device_or_dtype)
        )
        if print_details:
            print("Moving model to device: ", model.cfg.device)
    elif isinstance(device_or_dtype, torch.dtype):
        if hasattr(model.cfg, "dtype"):
            model.cfg.dtype = device_or_dtype
        if print_details:
            print("Changing model dtype to", device_or_dtype)
    return nn.Module.to(model, device_or_dtype)


def print_gpu_mem(step_name: str = "") -> None:
    """Print the CUDA memory allocated, in GiB. (TransformerLens prints the same line
    but divides the bytes by 2e30 instead of 2**30, so its number is always ~0.)"""
    gib = np.round(torch.cuda.memory_allocated() / 2**30, 2)
    print(f"{step_name} ~ {gib} GiB allocated on GPU.")


def is_library_available(name: str) -> bool:
    """Whether a library is installed, without importing it."""
    return name in sys.modules or importlib.util.find_spec(name) is not None
