"""Activation functions and the soft-cap, with TransformerLens's names and formulas
(`transformer_lens.utilities.activation_functions`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

ActivationFunction = Callable[..., Tensor]
SOFTCAP_DISABLED: float = -1.0


def gelu_new(input: Float[Tensor, "batch pos d_mlp"]) -> Float[Tensor, "batch pos d_mlp"]:
    """GPT-2's tanh approximation of GELU (Hugging Face's `NewGELUActivation`)."""
    inner = np.sqrt(2.0 / np.pi) * (input + 0.044715 * torch.pow(input, 3.0))
    return 0.5 * input * (1.0 + torch.tanh(inner))


def gelu_fast(input: Float[Tensor, "batch pos d_mlp"]) -> Float[Tensor, "batch pos d_mlp"]:
    """The "fast" GELU variant (Hugging Face's `FastGELUActivation`)."""
    return 0.5 * input * (1.0 + torch.tanh(input * 0.7978845608 * (1.0 + 0.044715 * input * input)))


def gelu_pytorch_tanh(input: Tensor) -> Tensor:
    """PyTorch's tanh-approximate GELU."""
    return F.gelu(input, approximate="tanh")


def solu(input: Float[Tensor, "batch pos d_mlp"]) -> Float[Tensor, "batch pos d_mlp"]:
    """SoLU, `x * softmax(x)` over the last dimension
    (https://transformer-circuits.pub/2022/solu/index.html); the LayerNorm that
    "solu_ln" adds after it belongs to the MLP, not to this function."""
    return input * F.softmax(input, dim=-1)


def relu2(input: Tensor) -> Tensor:
    """Squared ReLU, `relu(x) ** 2`."""
    relu = F.relu(input)
    return relu * relu


def xielu(input: Tensor) -> Tensor:
    """xIELU with its default fixed parameters (https://arxiv.org/abs/2411.13010)."""
    alpha_p, alpha_n, beta = 0.8, 0.8, 0.5
    eps = torch.tensor(-1e-6)
    return torch.where(
        input > 0,
        alpha_p * input * input + beta * input,
        (torch.expm1(torch.min(input, eps)) - input) * alpha_n + beta * input,
    )


def softcap_enabled(cap: float | None) -> bool:
    """A soft-cap is active only for a strictly positive value (-1.0, 0, None: off)."""
    return cap is not None and cap > 0


def apply_softcap(x: Tensor, cap: float | None) -> Tensor:
    """Gemma's `cap * tanh(x / cap)` when the cap is enabled, else `x` unchanged."""
    if not softcap_enabled(cap):
        return x
    return cap * torch.tanh(x / cap)


SUPPORTED_ACTIVATIONS: dict[str, ActivationFunction] = {
    "solu": solu,
    "solu_ln": solu,
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "silu": F.silu,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": gelu_pytorch_tanh,
    "xielu": xielu,
    "relu2": relu2,
}
