"""Composition between heads, one head at a time, with the baseline that says what
"large" means, and the effective embedding that circuits of models with MLPs read.

- `head_composition`: the Q-, K- and V-composition scores of one head with every head of
  earlier layers (they write, it reads) and of later layers (it writes, they read):
  the same numbers as TransformerLens's `model.all_composition_scores(mode)`
  (`||W_OV^A R^B||_F / (||W_OV^A||_F ||R^B||_F)` with R = W_QK for Q, W_QK^T for K,
  W_OV for V; "A Mathematical Framework for Transformer Circuits", Elhage et al. 2021),
  without forming the `[n_layers, n_heads, n_layers, n_heads]` tensor, which for a
  30-layer model would cost a gigabyte, and without an SVD per head.
- `random_composition_baseline`: the mean (and spread) of the same score for Gaussian
  random weights of the model's shapes: a score near it is what any two unrelated heads
  would get.
- `effective_embedding`: W_E as the later layers see it: through MLP0 (`W_E + MLP0(W_E)`),
  or through the whole first block with each token attending to itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from lookingglass.errors import InputError

MODES = ("Q", "K", "V")


def _readers(model) -> dict[str, tuple[Tensor, Tensor]]:
    """The reading circuit of every head per mode as factors (A, B), R = A @ B, as in
    TransformerLens's `all_composition_scores`: QK = W_Q W_K^T (Q), QK^T = W_K W_Q^T
    (K), OV = W_V W_O (V). (The stacked weights are read once: each is a copy.)"""
    W_Q, W_K, W_V, W_O = (w.float() for w in (model.W_Q, model.W_K, model.W_V, model.W_O))
    return {
        "Q": (W_Q, W_K.transpose(-2, -1)),
        "K": (W_K, W_Q.transpose(-2, -1)),
        "V": (W_V, W_O),
    }


def _scores(writer: tuple[Tensor, Tensor], reader: tuple[Tensor, Tensor]) -> Float[Tensor, "..."]:
    """`||L R||_F / (||L||_F ||R||_F)` for L = A_l B_l and R = A_r B_r (d_model x d_model,
    rank d_head), leading dims broadcast. The same number as
    `factored_matrix.composition_scores`, computed through d_head x d_head Gram matrices
    instead of an SVD per head: ||A X B||_F^2 = tr((A^T A) X (B B^T) X^T)."""
    (A_l, B_l), (A_r, B_r) = writer, reader
    gram_a_l = A_l.transpose(-2, -1) @ A_l
    gram_b_l = B_l @ B_l.transpose(-2, -1)
    gram_a_r = A_r.transpose(-2, -1) @ A_r
    gram_b_r = B_r @ B_r.transpose(-2, -1)
    X = B_l @ A_r
    product = (gram_a_l @ X @ gram_b_r * X).sum((-2, -1))
    left = (gram_a_l * gram_b_l.transpose(-2, -1)).sum((-2, -1))
    right = (gram_a_r * gram_b_r.transpose(-2, -1)).sum((-2, -1))
    return (product.clamp(min=0) / left / right).sqrt()


@dataclass
class HeadComposition:
    """One head's composition scores, per mode ("Q", "K", "V").

    `from_earlier[mode][l, h]`: head Lh (l < layer) writing into this head's Q, K or V
    side. `into_later[mode][l, h]`: this head writing into head (layer + 1 + l, h)."""

    layer: int
    head: int
    from_earlier: dict[str, Float[Tensor, "layer n_heads"]]
    into_later: dict[str, Float[Tensor, "later n_heads"]]


@torch.no_grad()
def head_composition(model, layer: int, head: int) -> HeadComposition:
    """The composition scores of head (`layer`, `head`) with every earlier and later head
    (see `HeadComposition`); equal to slices of `model.all_composition_scores(mode)`."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise InputError(f"Head L{layer}H{head} is out of range ({n_layers} x {n_heads} heads).")
    readers = _readers(model)
    W_V, W_O = readers["V"]
    earlier, later = {}, {}
    for mode in MODES:
        A, B = readers[mode]
        earlier[mode] = _scores((W_V[:layer], W_O[:layer]), (A[layer, head], B[layer, head]))
        later[mode] = _scores(
            (W_V[layer, head], W_O[layer, head]), (A[layer + 1 :], B[layer + 1 :])
        )
    return HeadComposition(layer, head, earlier, later)


@dataclass
class Baseline:
    """Composition scores of random weights: mean and standard deviation per mode."""

    mean: dict[str, float]
    std: dict[str, float]
    n_samples: int


@torch.no_grad()
def random_composition_baseline(model, n_samples: int = 64, seed: int = 0) -> Baseline:
    """Composition scores between two heads whose W_Q, W_K, W_V, W_O are independent
    standard Gaussians of the model's shapes (d_model x d_head): the score of two
    unrelated heads. It is about 1 / sqrt(d_model) (0.042 for d_model 576), so a score
    means little without it."""
    d_model, d_head = model.cfg.d_model, model.cfg.d_head
    generator = torch.Generator().manual_seed(seed)

    def gaussian(*shape: int) -> Tensor:
        return torch.randn(n_samples, *shape, generator=generator)

    writer = (gaussian(d_model, d_head), gaussian(d_head, d_model))
    W_Q, W_K = gaussian(d_model, d_head), gaussian(d_model, d_head)
    readers = {
        "Q": (W_Q, W_K.transpose(-2, -1)),
        "K": (W_K, W_Q.transpose(-2, -1)),
        "V": (gaussian(d_model, d_head), gaussian(d_head, d_model)),
    }
    mean, std = {}, {}
    for mode in MODES:
        scores = _scores(writer, readers[mode])
        mean[mode], std[mode] = float(scores.mean()), float(scores.std())
    return Baseline(mean, std, n_samples)


@torch.no_grad()
def effective_embedding(
    model, through: str = "mlp0", chunk: int = 4096
) -> Float[Tensor, "d_vocab d_model"]:
    """The token embedding as the heads after the first layer read it.

    Args:
        model: a `HookedTransformer` with MLPs.
        through: "mlp0": `W_E + MLP0(ln2(W_E))` (ARENA's "effective embedding": MLP0
            acts as a further embedding); "block0": the whole first block on each token
            alone, so every token attends only to itself (`W_E` plus that attention's
            write, then MLP0).
        chunk: tokens per pass.
    """
    if model.cfg.attn_only:
        raise InputError("The model has no MLPs: its effective embedding is W_E itself.")
    if through not in ("mlp0", "block0"):
        raise InputError(f"through must be 'mlp0' or 'block0', got {through!r}.")
    block = model.blocks[0]
    parts = []
    for first in range(0, model.cfg.d_vocab, chunk):
        x = model.W_E[first : first + chunk, None, :]
        if through == "block0":
            parts.append(block(x)[:, 0])
        else:
            parts.append((x + block.ln2_post(block.mlp(block.ln2(x))))[:, 0])
    return torch.cat(parts)
