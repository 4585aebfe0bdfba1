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


def prefix_matching_by_hand(
    model: Any,
    seq_len: int,
    n_seq: int,
    vocab: tuple[int, int],
    bos: int | None = None,
    seed: int = 7,
) -> torch.Tensor:
    """[layer, head]: mean attention from each token of the second copy of a random
    sequence (tokens uniform in `vocab`, after a `bos` when given) to the token after
    the same token's first occurrence (Olsson et al. 2022), read from hooked patterns."""
    generator = torch.Generator().manual_seed(seed)
    half = torch.randint(*vocab, (n_seq, seq_len), generator=generator)
    prefix = [] if bos is None else [torch.full((n_seq, 1), bos)]
    tokens = torch.cat([*prefix, half, half], dim=1)
    patterns: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        model.run_with_hooks(
            tokens,
            fwd_hooks=[
                (
                    lambda name: name.endswith("hook_pattern"),
                    lambda p, hook: patterns.__setitem__(int(hook.name.split(".")[1]), p),
                )
            ],
        )
    offset = len(prefix)
    dest = torch.arange(offset + seq_len, offset + 2 * seq_len)
    src = dest - seq_len + 1
    return torch.stack(
        [patterns[layer][:, :, dest, src].mean((0, 2)) for layer in sorted(patterns)]
    )
