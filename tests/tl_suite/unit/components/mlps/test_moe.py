# Ported from TransformerLens tests/unit/components/mlps/test_moe.py at dev-3.x (MIT licence, see NOTICE.md).
# Changes: import only (transformer_lens -> lookingglass). Hub model names resolve to
# tiny local random stand-ins of the same family (tests/tl_suite/conftest.py).
import torch

from lookingglass.components import MoE


def test_forward():
    cfg = {
        "d_model": 32,
        "d_mlp": 14336,
        "d_head": 4,
        "num_experts": 32,
        "n_layers": 16,
        "n_ctx": 2048,
        "experts_per_token": 4,
        "gated_mlp": True,
        "act_fn": "silu",
    }
    moe = MoE(cfg)

    x = torch.rand((1, 4, 32))
    moe(x)
