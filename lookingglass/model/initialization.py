"""Fresh weights for a new model, by `cfg.init_mode`, as TransformerLens 3.9's
`HookedTransformer.init_weights` draws them (the same distributions, not the same draws).

Every weight matrix (a parameter named `W_...`) is drawn; biases are zero and norm
weights one. With `gain = cfg.initializer_range` (= `init_range`; unless set,
0.8 / sqrt(d_model) for "gpt2" and 1.0 for the other modes) and TransformerLens's fan
convention (`lookingglass.utils.init`):

- "gpt2": normal, std `gain`;
- "xavier_uniform" / "xavier_normal": uniform in +-gain*sqrt(6/(fan_in+fan_out)) /
  normal with std gain*sqrt(2/(fan_in+fan_out));
- "kaiming_uniform" / "kaiming_normal": for ReLU, fan_in: uniform in
  +-gain*sqrt(2)*sqrt(3/fan_in) / normal with std gain*sqrt(2)/sqrt(fan_in);
- "muP": normal with std 1/sqrt(fan_in), except parameters whose name contains "embed"
  (`W_E`, `W_pos` and, as TransformerLens matches names, `unembed.W_U` too): std 1.
"""

from __future__ import annotations

import torch
from torch import nn

from lookingglass.utils.init import (
    calc_fan_in_and_fan_out,
    init_kaiming_normal_,
    init_kaiming_uniform_,
    init_xavier_normal_,
    init_xavier_uniform_,
)


@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """Draw `model`'s weights in place by `model.cfg.init_mode` (see the module docstring);
    with `cfg.seed` set the draws are reproducible."""
    cfg = model.cfg
    generator = None
    if cfg.seed is not None and cfg.init_mode == "gpt2":
        generator = torch.Generator(device=model.W_E.device).manual_seed(cfg.seed)
    elif cfg.seed is not None:
        torch.manual_seed(cfg.seed)  # as TransformerLens (the utils draw from the global RNG)
    gain = cfg.init_range
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1].lstrip("_")
        if leaf.startswith("b_"):
            nn.init.zeros_(param)
        if not leaf.startswith("W_"):
            continue
        if cfg.init_mode == "gpt2":
            nn.init.normal_(param, std=gain, generator=generator)
        elif cfg.init_mode == "xavier_uniform":
            init_xavier_uniform_(param, gain=gain)
        elif cfg.init_mode == "xavier_normal":
            init_xavier_normal_(param, gain=gain)
        elif cfg.init_mode == "kaiming_uniform":
            init_kaiming_uniform_(param, gain=gain, nonlinearity="relu", mode="fan_in")
        elif cfg.init_mode == "kaiming_normal":
            init_kaiming_normal_(param, gain=gain, nonlinearity="relu", mode="fan_in")
        else:  # "muP"
            fan_in, _ = calc_fan_in_and_fan_out(param)
            nn.init.normal_(param, std=1.0 if "embed" in name else fan_in**-0.5)
