"""Weight initialization with TransformerLens's fan convention
(`transformer_lens.utilities.initialization_utils`): weights are `[d_in, d_out]`, and
attention weights `[n_heads, d_model, d_head]`, unlike PyTorch's `[d_out, d_in]`."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

NonlinearityType = Literal[
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]


def calc_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out): 1-D `[n]` -> (1, n); 2-D `[d_in, d_out]` -> (d_in, d_out);
    3-D `[n_heads, d_model, d_head]` -> (d_model, n_heads * d_head)."""
    shape = tensor.shape
    if len(shape) == 0:
        raise ValueError("Fan in and fan out can not be computed for scalars.")
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 3:
        return shape[1], shape[0] * shape[2]
    raise ValueError(f"Fan in and fan out can not be computed for shape {shape} tensors.")


def init_xavier_uniform_(param: Tensor, gain: float = 1.0) -> Tensor:
    """Uniform in +-gain * sqrt(6 / (fan_in + fan_out)), in place."""
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    bound = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return nn.init.uniform_(param, -bound, bound)


def init_xavier_normal_(param: Tensor, gain: float = 1.0) -> Tensor:
    """Normal with std gain * sqrt(2 / (fan_in + fan_out)), in place."""
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    return nn.init.normal_(param, mean=0.0, std=gain * np.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_scale(
    param: Tensor, a: float, nonlinearity: str, gain: float, mode: str
) -> tuple[float, int]:
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    fan = fan_in if mode == "fan_in" else fan_out
    return gain * nn.init.calculate_gain(nonlinearity, a), fan


def init_kaiming_uniform_(
    param: torch.Tensor,
    a: float = 0,
    nonlinearity: NonlinearityType = "relu",
    gain: float = 1.0,
    mode: str = "fan_in",
) -> torch.Tensor:
    """Uniform in +-gain * calculate_gain(nonlinearity, a) * sqrt(3 / fan), in place
    (fan: fan_in, or fan_out when `mode != "fan_in"`)."""
    gain, fan = _kaiming_scale(param, a, nonlinearity, gain, mode)
    bound = gain * np.sqrt(3.0 / fan)
    return nn.init.uniform_(param, -bound, bound)


def init_kaiming_normal_(
    param: torch.Tensor,
    a: float = 0,
    nonlinearity: NonlinearityType = "relu",
    gain: float = 1.0,
    mode: str = "fan_in",
) -> torch.Tensor:
    """Normal with std gain * calculate_gain(nonlinearity, a) / sqrt(fan), in place."""
    gain, fan = _kaiming_scale(param, a, nonlinearity, gain, mode)
    return nn.init.normal_(param, mean=0.0, std=gain * np.sqrt(1.0 / fan))
