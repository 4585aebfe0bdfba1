"""Circuits read off the weights: full OV and QK circuits, composition and copying scores.

In TransformerLens's row-vector convention a head maps a residual vector x to
`x @ W_V @ W_O` (its OV circuit) and scores query x against key y as
`x @ W_Q @ W_K^T @ y^T` (its QK circuit). Through the embedding and unembedding:

    full OV circuit = W_E @ W_V @ W_O @ W_U     [d_vocab, d_vocab_out]: token -> logits
    full QK circuit = W_E @ W_Q @ W_K^T @ W_E^T [d_vocab, d_vocab]: query token x key token

Both are `FactoredMatrix`es with inner dimension d_head, for every layer and head at
once (`[n_layers, n_heads, ...]`), never formed unless you ask for `.AB`. They ignore
layer norms and MLPs: fold the norms into the weights first (`fold_ln`) for meaningful
numbers.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.factored_matrix import FactoredMatrix, composition_scores

__all__ = [
    "all_composition_scores",
    "composition_scores",
    "copying_score",
    "full_ov_circuit",
    "full_qk_circuit",
    "get_comp_score",
    "ov_copying_scores",
]


def full_ov_circuit(
    model,
    embed: Float[Tensor, "d_vocab d_model"] | None = None,
    unembed: Float[Tensor, "d_model d_vocab_out"] | None = None,
) -> FactoredMatrix:
    """`embed @ W_V @ W_O @ unembed` for every head, `[n_layers, n_heads, d_vocab, d_vocab_out]`:
    row t is how attending to token t changes each output logit (directly).

    Args:
        model: a `HookedTransformer`.
        embed: the token-side embedding (default `model.W_E`).
        unembed: the output-side unembedding (default `model.W_U`).
    """
    embed = model.W_E if embed is None else embed
    unembed = model.W_U if unembed is None else unembed
    return embed @ model.OV @ unembed


def full_qk_circuit(
    model,
    query_embed: Float[Tensor, "n_query d_model"] | None = None,
    key_embed: Float[Tensor, "n_key d_model"] | None = None,
) -> FactoredMatrix:
    """`query_embed @ W_Q @ W_K^T @ key_embed^T` for every head, `[n_layers, n_heads,
    n_query, n_key]`: the attention score (before scaling by 1/attn_scale) of each query
    token for each key token. Defaults: `model.W_E` for both (use `model.W_pos` for the
    positional QK circuit)."""
    query_embed = model.W_E if query_embed is None else query_embed
    key_embed = model.W_E if key_embed is None else key_embed
    return query_embed @ model.QK @ key_embed.T


def get_comp_score(
    W_A: Float[Tensor, "... d_a d_model"] | FactoredMatrix,
    W_B: Float[Tensor, "... d_model d_b"] | FactoredMatrix,
) -> Float[Tensor, "..."]:
    """The composition score `||W_A @ W_B||_F / (||W_A||_F ||W_B||_F)` of a writing
    matrix W_A (a head's OV) into a reading matrix W_B (a later head's QK, QK^T or OV), as
    in "A Mathematical Framework for Transformer Circuits" and TransformerLens's
    `utils.composition_scores`. Leading dims broadcast as in a matmul (for all pairs of
    heads use `composition_scores` or `all_composition_scores`)."""
    if isinstance(W_A, FactoredMatrix) or isinstance(W_B, FactoredMatrix):
        return composition_scores(_factored(W_A), _factored(W_B), broadcast_dims=False)
    norms = W_A.norm(dim=(-2, -1)) * W_B.norm(dim=(-2, -1))
    return (W_A @ W_B).norm(dim=(-2, -1)) / norms


def all_composition_scores(model, mode: str) -> Float[Tensor, "n_layers n_heads n_layers n_heads"]:
    """Q-, K- or V-composition scores of every head (first two dims, writing with its OV)
    into every head of a later layer (last two dims); other pairs are 0. Same numbers as
    TransformerLens's `model.all_composition_scores(mode)`."""
    return model.all_composition_scores(mode)


def copying_score(matrix: FactoredMatrix | Float[Tensor, "... n n"]) -> Float[Tensor, "..."]:
    """`Re(sum_i lambda_i) / sum_i |lambda_i|` over the eigenvalues of a square circuit,
    in [-1, 1] ("A Mathematical Framework", the OV copying summary statistic).

    Near 1: the circuit maps tokens mostly to themselves (copying); near -1: it
    suppresses them (negative copying); near 0: neither. For a FactoredMatrix the
    eigenvalues are those of the small `B @ A` (the others are 0 and add nothing). Complex
    eigenvalues come in conjugate pairs, so the sum is real.
    """
    if isinstance(matrix, FactoredMatrix):
        eigenvalues = matrix.eigenvalues
    else:
        if matrix.shape[-1] != matrix.shape[-2]:
            raise InputError(f"copying_score needs square matrices, got {tuple(matrix.shape)}.")
        eigenvalues = torch.linalg.eigvals(matrix.float())
    return eigenvalues.sum(dim=-1).real / eigenvalues.abs().sum(dim=-1)


def ov_copying_scores(model) -> Float[Tensor, "n_layers n_heads"]:
    """`copying_score` of every head's full OV circuit `W_E @ W_V @ W_O @ W_U` (which
    needs d_vocab == d_vocab_out)."""
    if model.cfg.d_vocab != model.cfg.d_vocab_out:
        raise InputError("The full OV circuit is square only when d_vocab == d_vocab_out.")
    # A layer at a time: the factors of all heads' full OV circuits at once take
    # 2 x n_layers x n_heads x d_vocab x d_head floats (7 GB on SmolLM2-135M).
    return torch.stack(
        [
            copying_score(model.W_E @ model.OV[layer] @ model.W_U)
            for layer in range(model.cfg.n_layers)
        ]
    )


def _factored(matrix: Tensor | FactoredMatrix) -> FactoredMatrix:
    if isinstance(matrix, FactoredMatrix):
        return matrix
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    return FactoredMatrix(matrix, eye)
