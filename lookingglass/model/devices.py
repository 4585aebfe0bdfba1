"""Moving a `HookedTransformer` between devices and dtypes, TransformerLens's way:
`to`, `cuda`, `cpu`, `mps` also record the new device / dtype in `cfg`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lookingglass.errors import ConfigError
from lookingglass.model import placement


class DeviceMethods:
    """Mixin for `HookedTransformer` (an `nn.Module` with a frozen `cfg`)."""

    def to(self, *args: Any, print_details: bool = False, **kwargs: Any) -> Any:
        """`nn.Module.to`, also recording the device / dtype in `cfg` (as TransformerLens's
        `to`, which prints the move unless `print_details=False`; we print only when asked)."""
        device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None:
            self._unplace()  # the whole model goes to one device
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
        """Move every module to `cfg.device`, or, with `cfg.n_devices` > 1, split the
        blocks over that many devices from `cfg.device` on (`lookingglass.model.placement`)."""
        if self.cfg.n_devices > 1:
            placement.place(self, placement.plan_for_n_devices(self, self.cfg.n_devices))
        elif self.cfg.device is not None:
            nn.Module.to(self, self.cfg.device)

    def place_on_devices(
        self, n_devices: int | None = None, device_map: placement.DeviceMap | None = None
    ) -> Any:
        """Spread the model over devices: `n_devices` CUDA devices from `cfg.device` on
        (TransformerLens's split), or a Hugging Face-style `device_map` (see
        `lookingglass.model.placement`). Returns the model; `device_plan` says where
        each part went, and `.to(device)` gathers it on one device again."""
        if (n_devices is None) == (device_map is None):
            raise ConfigError("place_on_devices takes one of n_devices= or device_map=.")
        if device_map is not None:
            plan = placement.plan_for_device_map(self, device_map)
        else:
            plan = placement.plan_for_n_devices(self, n_devices)
        placement.place(self, plan)
        if n_devices is not None:
            self.cfg = self.cfg.replace(n_devices=n_devices)
        return self

    def _unplace(self) -> None:
        for handle in self.__dict__.pop("_placement_handles", []):
            handle.remove()
        self.__dict__.pop("device_plan", None)
        if self.cfg.n_devices != 1:
            self.cfg = self.cfg.replace(n_devices=1)
