"""The SVD interpreter: read a weight matrix's top singular directions as tokens.

Following "The Singular Value Decompositions of Transformer Weight Matrices are Highly
Interpretable" (Millidge and Black, 2022) and TransformerLens's `SVDInterpreter`: take
the right singular vectors of a head's OV circuit (or of an MLP's W_in / W_out), project
each onto the unembedding, and look at the tokens it favours. Singular vectors have an
arbitrary sign, so a direction's meaning may sit at either end (`largest=False`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.factored_matrix import FactoredMatrix

VectorType = Literal["OV", "w_in", "w_out"]
VECTOR_TYPES = ("OV", "w_in", "w_out")


@dataclass
class TopTokens:
    """The top tokens of each singular direction: `values` and `indices` are
    `[num_vectors, k]`; `str_tokens[i][j]` is token `indices[i, j]` as text (None when
    the model has no tokenizer)."""

    values: Float[Tensor, "num_vectors k"]
    indices: Int[Tensor, "num_vectors k"]
    str_tokens: list[list[str]] | None


class SVDInterpreter:
    """Singular directions of a model's weights, projected to the vocabulary."""

    def __init__(self, model) -> None:
        self.model = model
        self.cfg = model.cfg

    @torch.no_grad()
    def get_singular_vectors(
        self,
        vector_type: VectorType,
        layer_index: int,
        num_vectors: int = 10,
        head_index: int | None = None,
    ) -> Float[Tensor, "d_vocab 1 num_vectors"]:
        """The top `num_vectors` right singular vectors, each dotted with every token's
        unembedding, as TransformerLens's `SVDInterpreter.get_singular_vectors`.

        Args:
            vector_type: "OV" (a head's W_V W_O; needs `head_index`), "w_in" (an MLP's
                W_in^T, times ln2's weight when the norm is not folded) or "w_out" (W_out).
            layer_index: the layer.
            num_vectors: how many directions, by decreasing singular value.
            head_index: the head, for "OV".

        Returns:
            `[d_vocab, 1, num_vectors]`: column i scores every token on direction i.
        """
        if vector_type not in VECTOR_TYPES:
            raise InputError(
                f"vector_type must be one of {list(VECTOR_TYPES)}, got {vector_type!r}."
            )
        self._check_index("Layer index", layer_index, self.cfg.n_layers)
        if vector_type == "OV":
            if head_index is None:
                raise InputError("vector_type='OV' needs a head_index.")
            self._check_index("Head index", head_index, self.cfg.n_heads)
            attn = self.model.blocks[layer_index].attn
            directions = FactoredMatrix(attn.W_V[head_index], attn.W_O[head_index]).V.T
        else:
            _, _, directions = torch.linalg.svd(self._mlp_matrix(vector_type, layer_index))
        if not 0 < num_vectors <= directions.shape[0]:
            raise InputError(
                f"num_vectors must be in [1, {directions.shape[0]}], got {num_vectors}."
            )
        return (directions[:num_vectors].float() @ self.model.W_U.float()).T[:, None, :]

    def top_tokens(
        self,
        vector_type: VectorType,
        layer_index: int,
        num_vectors: int = 10,
        head_index: int | None = None,
        k: int = 10,
        largest: bool = True,
    ) -> TopTokens:
        """The `k` tokens that score highest (or lowest, `largest=False`) on each of the top
        `num_vectors` singular directions; arguments as in `get_singular_vectors`."""
        vectors = self.get_singular_vectors(vector_type, layer_index, num_vectors, head_index)
        values, indices = vectors[:, 0, :].T.topk(k, dim=-1, largest=largest)
        str_tokens = None
        if getattr(self.model, "tokenizer", None) is not None:
            str_tokens = [
                [self.model.to_single_str_token(t) for t in row] for row in indices.tolist()
            ]
        return TopTokens(values, indices, str_tokens)

    def _mlp_matrix(self, vector_type: str, layer: int) -> Tensor:
        block = self.model.blocks[layer]
        if not hasattr(block, "mlp"):
            raise InputError(
                f"vector_type={vector_type!r} needs MLPs; this model is attention-only."
            )
        if vector_type == "w_out":
            return block.mlp.W_out
        W_in = block.mlp.W_in.T
        # An unfolded ln2 scales the MLP's input coordinates: fold its weight in.
        return W_in * block.ln2.w if hasattr(block.ln2, "w") else W_in

    @staticmethod
    def _check_index(name: str, value: int, size: int) -> None:
        # TransformerLens's wording, which code and tests written for it compare against.
        if not 0 <= value < size:
            raise InputError(f"{name} must be between 0 and {size - 1} but got {value}")
