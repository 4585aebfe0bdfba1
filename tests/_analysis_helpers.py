"""Builders for the analysis tests: a TransformerLens twin of a lookingglass model.

The twin is TransformerLens 3.9's `HookedTransformer` built from the same config fields
and loaded with our `state_dict()` (its extra keys, attention masks and rotary tables,
are buffers).
"""

from __future__ import annotations

from typing import Any

import torch

TWIN_FIELDS = (
    "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "d_vocab_out", "n_ctx",
    "act_fn", "normalization_type", "attn_only", "eps", "positional_embedding_type",
    "rotary_dim", "rotary_base", "rotary_adjacent_pairs", "n_key_value_heads",
)  # fmt: skip


def tl_twin(model: Any, tokenizer: Any = None) -> Any:
    """TransformerLens's model with `model`'s architecture and weights."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    fields = {name: getattr(model.cfg, name) for name in TWIN_FIELDS}
    twin = HookedTransformer(HookedTransformerConfig(**fields, device="cpu"), tokenizer)
    missing, unexpected = twin.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected, unexpected
    buffers = (".mask", ".IGNORE", ".rotary_sin", ".rotary_cos")
    assert all(key.endswith(buffers) for key in missing), missing
    return twin.eval()


@torch.no_grad()
def twin_caches(model: Any, twin: Any, tokens: torch.Tensor) -> tuple[Any, Any]:
    """Both models' full caches on `tokens`."""
    return model.run_with_cache(tokens)[1], twin.run_with_cache(tokens)[1]
