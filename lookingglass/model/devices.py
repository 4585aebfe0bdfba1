"""Moving a `HookedTransformer` between devices and dtypes, TransformerLens's way:
`to`, `cuda`, `cpu`, `mps` also record the new device / dtype in `cfg`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class DeviceMethods:
    """Mixin for `HookedTransformer` (an `nn.Module` with a frozen `cfg`)."""

    def to(self, *args: Any, print_details: bool = False, **kwargs: Any) -> Any:
        """`nn.Module.to`, also recording the device / dtype in `cfg` (as TransformerLens's
        `to`, which prints the move unless `print_details=False`; we print only when asked)."""
        device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
        super().to(*args, **kwargs)
        changes: dict[str, Any] = {}
        if device is not None:
            changes["device"] = str(device)
        if dtype is not None and dtype.is_floating_point:
            changes["dtype"] = dtype
        if changes:
            self.cfg = self.cfg.replace(**changes)
            if print_details:
                print("Moving model to", changes)
        return self

    def cuda(self, device: int | torch.device | None = None) -> Any:
        return self.to(f"cuda:{device}" if isinstance(device, int) else (device or "cuda"))

    def cpu(self) -> Any:
        return self.to(torch.device("cpu"))

    def mps(self) -> Any:
        return self.to(torch.device("mps"))

    def move_model_modules_to_device(self) -> None:
        """Move every module to `cfg.device` (TransformerLens splits over `n_devices`; we
        run on one device)."""
        if self.cfg.device is not None:
            nn.Module.to(self, self.cfg.device)
