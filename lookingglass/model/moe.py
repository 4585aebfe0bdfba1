"""Sparse mixture of experts (Mixtral): each token goes to its top-k gated MLP experts.

    router_logits = x @ W_gate                          [batch pos num_experts]
    weights       = softmax(router_logits) (fp32), keep the top k, renormalize to sum 1
    out           = sum over the chosen experts e of weights_e * expert_e(x)

Hooks: `hook_expert_weights` [batch pos num_experts] (the softmax over all experts, as
TransformerLens), `hook_expert_indices` [batch pos k]; each expert is a `GatedMLP` with
its own `experts.{e}.hook_pre/hook_pre_linear/hook_post`, seeing only its tokens
([n_routed_tokens, 1, d_mlp]).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.layer_config import as_config
from lookingglass.model.mlp import GatedMLP


class MixtureOfExperts(nn.Module):
    """Top-k routed gated MLP experts."""

    def __init__(self, cfg: ModelConfig | dict) -> None:
        super().__init__()
        self.cfg = cfg = as_config(cfg)
        self.num_experts, self.k = cfg.num_experts, cfg.experts_per_token
        self.W_gate = nn.Parameter(torch.empty(cfg.d_model, cfg.num_experts, dtype=cfg.dtype))
        self.experts = nn.ModuleList(GatedMLP(cfg) for _ in range(cfg.num_experts))
        self.hook_expert_weights = HookPoint()  # [batch, pos, num_experts]
        self.hook_expert_indices = HookPoint()  # [batch, pos, experts_per_token]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        batch, pos, d_model = x.shape
        weights = self.hook_expert_weights((x @ self.W_gate).float().softmax(dim=-1))
        top_weights, top_experts = weights.topk(self.k, dim=-1)
        top_experts = self.hook_expert_indices(top_experts)
        top_weights = (top_weights / top_weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        flat_x = x.reshape(-1, d_model)
        out = torch.zeros_like(flat_x)
        flat_experts, flat_weights = (
            top_experts.reshape(-1, self.k),
            top_weights.reshape(-1, self.k),
        )
        for e, expert in enumerate(self.experts):
            token, slot = (flat_experts == e).nonzero(as_tuple=True)
            if token.numel() == 0:
                continue
            expert_out = expert(flat_x[token][:, None])[:, 0]
            out.index_add_(0, token, expert_out * flat_weights[token, slot, None])
        return out.reshape(batch, pos, d_model)
