"""The MLP sublayer: `post = act(resid @ W_in + b_in)`, `out = post @ W_out + b_out`.

Activations (`cfg.act_fn`) are TransformerLens 3.9's: the GELUs, "relu", "silu",
"relu2" (`relu(x)**2`), "solu" (`x * softmax(x)`), "solu_ln" (SoLU followed by a
LayerNorm over d_mlp, `mlp.ln`, with `hook_mid` between them) and "xielu" (a module
with trainable `alpha_p`, `alpha_n`: `mlp.act_fn.alpha_p`, ...).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError
from lookingglass.hooks import HookPoint
from lookingglass.model.layer_config import as_config
from lookingglass.model.norm import LayerNorm, LayerNormPre
from lookingglass.utils import activations


class XIELU(nn.Module):
    """xIELU (https://arxiv.org/abs/2411.13010, Apertus) with trainable `alpha_p`,
    `alpha_n` stored softplus-inverted, and buffers `beta`, `eps`, as TransformerLens's
    and Hugging Face's `XIELUActivation` (`utils.activations.xielu` is the same with the
    parameters fixed)."""

    def __init__(
        self, alpha_p: float = 0.8, alpha_n: float = 0.8, beta: float = 0.5, eps: float = -1e-6
    ) -> None:
        super().__init__()
        inverse_softplus = lambda v: torch.log(torch.expm1(torch.tensor(v)))  # noqa: E731
        self.alpha_p = nn.Parameter(inverse_softplus(alpha_p))
        self.alpha_n = nn.Parameter(inverse_softplus(alpha_n - beta))
        self.register_buffer("beta", torch.tensor(beta))
        self.register_buffer("eps", torch.tensor(eps))

    def forward(self, x: Tensor) -> Tensor:
        alpha_p = F.softplus(self.alpha_p)
        alpha_n = self.beta + F.softplus(self.alpha_n)
        return torch.where(
            x > 0,
            alpha_p * x * x + self.beta * x,
            (torch.expm1(torch.min(x, self.eps)) - x) * alpha_n + self.beta * x,
        )


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": activations.gelu_fast,
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "relu2": activations.relu2,
    "solu": activations.solu,
    "solu_ln": activations.solu,  # the MLP adds its LayerNorm after it
}


def make_activation(act_fn: str) -> Callable[[Tensor], Tensor]:
    """The activation named `act_fn`: a function, or for "xielu" a fresh module (its
    parameters belong to the MLP, as `act_fn.alpha_p`...)."""
    return XIELU() if act_fn == "xielu" else ACTIVATIONS[act_fn]


class CanBeUsedAsMLP(nn.Module):
    """Base of every MLP-like sublayer (TransformerLens's `CanBeUsedAsMLP`): holds `cfg`
    and `d_mlp`; `select_activation_function()` sets `act_fn`, and for "solu_ln" also
    `hook_mid` and the LayerNorm `ln` (LN, else LNPre) applied after it."""

    def __init__(self, cfg: ModelConfig | dict) -> None:
        super().__init__()
        self.cfg = as_config(cfg)
        if self.cfg.d_mlp is None:
            raise ConfigError("d_mlp must be set to use an MLP: pass d_mlp in the config.")
        self.d_mlp: int = self.cfg.d_mlp

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        """Identity: subclasses compute the MLP."""
        return x

    def select_activation_function(self, default: str = "gelu_new") -> None:
        """Set `act_fn` from `cfg.act_fn` (`default` if unset); "solu_ln" adds `hook_mid`
        [batch pos d_mlp] and `ln` over d_mlp."""
        self.act_fn = make_activation(self.cfg.act_fn or default)
        if self.cfg.is_layer_norm_activation():  # "solu_ln": post = ln(act(pre))
            self.hook_mid = HookPoint()  # [batch, pos, d_mlp]
            norm = LayerNorm if self.cfg.normalization_type == "LN" else LayerNormPre
            self.ln = norm(self.cfg, self.d_mlp)

    def _activate(self, pre: Tensor) -> Tensor:
        """`act_fn(pre)`, then `ln(hook_mid(.))` for "solu_ln"."""
        if hasattr(self, "ln"):
            return self.ln(self.hook_mid(self.act_fn(pre)))
        return self.act_fn(pre)


class MLP(CanBeUsedAsMLP):
    """Dense two-layer MLP with `hook_pre` [batch pos d_mlp] and `hook_post` [batch pos d_mlp]."""

    def __init__(self, cfg: ModelConfig | dict) -> None:
        super().__init__(cfg)
        cfg = self.cfg
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.select_activation_function("gelu_new")
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(F.linear(x, self.W_in.T, self.b_in))
        post = self.hook_post(self._activate(pre))
        return F.linear(post, self.W_out.T, self.b_out)


class GatedMLP(CanBeUsedAsMLP):
    """Gated MLP (SwiGLU, GeGLU), as TransformerLens 3.9:
    `post = act(x @ W_gate) * (x @ W_in) + b_in`, `out = post @ W_out + b_out` (`b_in` is
    added after the product). Hooks: `hook_pre` (the gate pre-activation),
    `hook_pre_linear` (the linear branch), `hook_post`.

    Models with LayerNorms (StableLM) also have `b_gate` and `b_pre_linear`, biases of the
    two branches before the product (`act(x @ W_gate + b_gate) * (x @ W_in +
    b_pre_linear)`): folding a LayerNorm's bias into the branches (`fold_ln`) needs them.
    RMSNorm models (Llama) have neither."""

    def __init__(self, cfg: ModelConfig | dict, d_mlp: int | None = None) -> None:
        cfg = as_config(cfg)
        if d_mlp is not None and d_mlp != cfg.d_mlp:  # an expert's own width (MoE)
            cfg = cfg.replace(d_mlp=d_mlp)
        super().__init__(cfg)
        cfg = self.cfg
        d_mlp = self.d_mlp
        self.W_gate = nn.Parameter(torch.empty(cfg.d_model, d_mlp, dtype=cfg.dtype))
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, d_mlp, dtype=cfg.dtype))
        for name in ("b_gate", "b_pre_linear"):
            if cfg.normalization_type in ("LN", "LNPre"):
                setattr(self, name, nn.Parameter(torch.zeros(d_mlp, dtype=cfg.dtype)))
            else:
                self.register_parameter(name, None)
        self.b_in = nn.Parameter(torch.zeros(d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.select_activation_function("silu")
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_pre_linear = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(F.linear(x, self.W_gate.T, self.b_gate))
        pre_linear = self.hook_pre_linear(F.linear(x, self.W_in.T, self.b_pre_linear))
        post = self.hook_post(self._activate(pre) * pre_linear + self.b_in)
        return F.linear(post, self.W_out.T, self.b_out)


def make_mlp(cfg: ModelConfig) -> nn.Module:
    """The MLP the config asks for: dense, gated, or a mixture of gated experts."""
    if cfg.num_experts:
        from lookingglass.model.moe import MixtureOfExperts

        return MixtureOfExperts(cfg)
    return GatedMLP(cfg) if cfg.gated_mlp else MLP(cfg)
