"""The MLP sublayer: `post = act(resid @ W_in + b_in)`, `out = post @ W_out + b_out`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.layer_config import as_config


def gelu_new(x: Tensor) -> Tensor:
    """GPT-2's tanh approximation of GELU (`NewGELUActivation` in Hugging Face)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def gelu_fast(x: Tensor) -> Tensor:
    """The "fast" GELU variant of Hugging Face (`FastGELUActivation`)."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": gelu_fast,
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


class MLP(nn.Module):
    """Dense two-layer MLP with `hook_pre` [batch pos d_mlp] and `hook_post` [batch pos d_mlp]."""

    def __init__(self, cfg: ModelConfig | dict) -> None:
        super().__init__()
        self.cfg = cfg = as_config(cfg)
        assert cfg.d_mlp is not None
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.act_fn = ACTIVATIONS[cfg.act_fn or "gelu_new"]
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(F.linear(x, self.W_in.T, self.b_in))
        post = self.hook_post(self.act_fn(pre))
        return F.linear(post, self.W_out.T, self.b_out)


class GatedMLP(nn.Module):
    """Gated MLP (SwiGLU, GeGLU): `post = act(x @ W_gate + b_gate) * (x @ W_in + b_in)`,
    `out = post @ W_out + b_out`. Hooks: `hook_pre` (the gate pre-activation, as
    TransformerLens), `hook_pre_linear` (the linear branch), `hook_post`.

    `b_gate` exists only in models with LayerNorms (StableLM): folding a LayerNorm's bias
    into the gate (`fold_ln`) needs a bias there. RMSNorm models (Llama) have none."""

    def __init__(self, cfg: ModelConfig | dict, d_mlp: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg = as_config(cfg)
        d_mlp = d_mlp or cfg.d_mlp
        assert d_mlp is not None
        self.W_gate = nn.Parameter(torch.empty(cfg.d_model, d_mlp, dtype=cfg.dtype))
        if cfg.normalization_type in ("LN", "LNPre"):
            self.b_gate = nn.Parameter(torch.zeros(d_mlp, dtype=cfg.dtype))
        else:
            self.register_parameter("b_gate", None)
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, d_mlp, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.act_fn = ACTIVATIONS[cfg.act_fn or "silu"]
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_pre_linear = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(F.linear(x, self.W_gate.T, self.b_gate))
        pre_linear = self.hook_pre_linear(F.linear(x, self.W_in.T, self.b_in))
        post = self.hook_post(self.act_fn(pre) * pre_linear)
        return F.linear(post, self.W_out.T, self.b_out)


def make_mlp(cfg: ModelConfig) -> nn.Module:
    """The MLP the config asks for: dense, gated, or a mixture of gated experts."""
    if cfg.num_experts:
        from lookingglass.model.moe import MixtureOfExperts

        return MixtureOfExperts(cfg)
    return GatedMLP(cfg) if cfg.gated_mlp else MLP(cfg)
