"""Where a component matters across a whole dataset (Browse examples, "Across the
dataset"): every document cut into the examples the page browses, run in batches clean
and with the component ablated, and every prediction ranked by how much the ablation
raises its loss and by the component's direct logit attribution toward the actual next
token. No Streamlit here; the page caches the result and draws the progress bar that
`progress` reports to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.explorer import compute, sources
from lookingglass.explorer import tokens as tokens_text

FINAL_SCALE = "ln_final.hook_scale"


@dataclass(frozen=True)
class Chunk:
    """One browsed example: document `doc` from token `start` (what the Browse page shows
    for Example = doc, From token = start)."""

    doc: int
    start: int
    tokens: list[int]  # BOS (if the model prepends one) then the document's tokens


@dataclass
class RankedToken:
    """One prediction of the dataset: in example (doc, start), position `pos` predicts
    `target` (token pos + 1) after `context`."""

    doc: int
    start: int
    pos: int
    context: str
    target: str
    loss_change: float  # ablated minus clean loss (nats)
    dla: float  # the component's direct logit attribution toward the target


@dataclass
class DocumentScore:
    """A document's predictions summarized."""

    doc: int
    n_tokens: int
    mean_loss_change: float
    max_loss_change: float
    mean_dla: float


@dataclass
class Ranking:
    """The whole dataset ranked for one component and ablation."""

    component: str
    method: str
    n_documents: int
    n_tokens: int
    mean_loss_change: float
    by_loss_change: list[RankedToken]  # loss rises most when ablated
    by_loss_drop: list[RankedToken]  # loss falls most when ablated
    by_dla: list[RankedToken]  # largest direct logit attribution to the next token
    by_negative_dla: list[RankedToken]  # most negative
    documents: list[DocumentScore]  # by mean loss change, largest first


def chunks(model, texts: Sequence[str]) -> list[Chunk]:
    """Every document cut into consecutive examples of `sources.example_length` tokens
    (BOS included); the last example of a document may be shorter. Documents with
    fewer than one next-token prediction are left out."""
    if getattr(model, "tokenizer", None) is None:
        raise InputError("This model has no tokenizer, so it cannot read the dataset's text.")
    bos = (
        model.to_tokens("", move_to_device=False)[0].tolist()
        if model.cfg.default_prepend_bos
        else []
    )
    body = sources.example_length(model) - len(bos)
    out = []
    for doc, text in enumerate(texts):
        ids = model.to_tokens(text, prepend_bos=False, truncate=False)[0].tolist()
        for start in range(0, len(ids), body):
            piece = bos + ids[start : start + body]
            if len(piece) >= 2:
                out.append(Chunk(doc, start, piece))
    return out


def batch_tokens(batch: Sequence[Chunk]) -> tuple[Int[Tensor, "batch pos"], Tensor]:
    """The batch's tokens right-padded with token 0 and a mask `[batch, pos - 1]` of the
    real predictions. Padding on the right changes nothing before it (causal attention)."""
    length = max(len(c.tokens) for c in batch)
    tokens = torch.zeros(len(batch), length, dtype=torch.long)
    mask = torch.zeros(len(batch), length - 1, dtype=torch.bool)
    for row, chunk in enumerate(batch):
        tokens[row, : len(chunk.tokens)] = torch.tensor(chunk.tokens)
        mask[row, : len(chunk.tokens) - 1] = True
    return tokens, mask


def next_token_loss(
    logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos_minus_1"]:
    """Cross-entropy of predicting token p + 1 at each position p."""
    log_probs = logits[:, :-1].float().log_softmax(dim=-1)
    return -log_probs.gather(-1, tokens[:, 1:, None])[..., 0]


def component_write(model, cache, component_label: str) -> Float[Tensor, "batch pos d_model"]:
    """What the component adds to the residual stream: a head's `z @ W_O[head]` (its
    `hook_result`), or the layer's `hook_attn_out` / `hook_mlp_out`."""
    component, layer, kind = compute.parse_component(model, component_label)
    if kind != "head":
        return cache[component.hook_name]
    head = component.index[1]
    return cache[component.hook_name][:, :, head] @ model.W_O[layer, head]


@torch.no_grad()
def batch_scores(
    model,
    tokens: Int[Tensor, "batch pos"],
    component_label: str,
    method: str,
    means: dict[str, Tensor] | None = None,
) -> tuple[Float[Tensor, "batch pos_minus_1"], Float[Tensor, "batch pos_minus_1"]]:
    """(loss change, direct logit attribution toward the next token) of every
    prediction of a batch: ablated minus clean loss, and the component's clean write
    through the final norm's cached scale onto the next token's unembedding."""
    component, _, _ = compute.parse_component(model, component_label)
    hooks = compute.component_ablation_hooks(model, component_label, method, means)
    names = {component.hook_name, FINAL_SCALE}
    logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    with model.hooks(fwd_hooks=hooks):
        ablated = model(tokens)
    change = next_token_loss(ablated, tokens) - next_token_loss(logits, tokens)
    write = component_write(model, cache, component_label)
    inner = slice(0, -1)
    dla = cache.logit_attrs(write[None, :, inner], tokens[:, 1:], pos_slice=inner)[0]
    return change.cpu(), dla.float().cpu()


def _context(tokenizer, ids: Sequence[int], pos: int, width: int = 8) -> str:
    return "".join(
        tokens_text.token_text(tokenizer, t) for t in ids[max(0, pos - width + 1) : pos + 1]
    )


def dataset_ranking(
    model,
    texts: Sequence[str],
    component_label: str,
    method: str = "zero",
    means: dict[str, Tensor] | None = None,
    max_documents: int | None = None,
    batch_size: int = 8,
    k: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> Ranking:
    """Rank every prediction of the first `max_documents` documents (all by default).

    Args:
        model: the explorer's model.
        texts: the dataset's documents.
        component_label: a label of `compute.component_labels` ("L1H3", "attn 0", ...).
        method: "zero", or "mean" with `means` (`compute.component_means`).
        max_documents: read only the first documents.
        batch_size: examples per forward pass.
        k: predictions kept per list.
        progress: called as `progress(done, total)` (examples) after each batch.
    """
    texts = list(texts[:max_documents] if max_documents else texts)
    pieces = chunks(model, texts)
    if not pieces:
        raise InputError("No document of the dataset has two tokens to predict from.")
    changes, attributions = [], []
    for first in range(0, len(pieces), batch_size):
        batch = pieces[first : first + batch_size]
        tokens, mask = batch_tokens(batch)
        change, dla = batch_scores(model, tokens, component_label, method, means)
        changes += [c[m].numpy() for c, m in zip(change, mask, strict=True)]
        attributions += [a[m].numpy() for a, m in zip(dla, mask, strict=True)]
        if progress is not None:
            progress(min(first + batch_size, len(pieces)), len(pieces))
    where = [(i, p) for i, c in enumerate(changes) for p in range(len(c))]
    flat_change, flat_dla = np.concatenate(changes), np.concatenate(attributions)

    def ranked(values: np.ndarray, largest: bool) -> list[RankedToken]:
        order = np.argsort(-values if largest else values, kind="stable")[:k]
        rows = []
        for index in order:
            i, pos = where[index]
            chunk = pieces[i]
            rows.append(
                RankedToken(
                    chunk.doc,
                    chunk.start,
                    pos,
                    _context(model.tokenizer, chunk.tokens, pos),
                    tokens_text.token_text(model.tokenizer, chunk.tokens[pos + 1]),
                    float(flat_change[index]),
                    float(flat_dla[index]),
                )
            )
        return rows

    return Ranking(
        component=component_label,
        method=method,
        n_documents=len(texts),
        n_tokens=len(flat_change),
        mean_loss_change=float(flat_change.mean()),
        by_loss_change=ranked(flat_change, largest=True),
        by_loss_drop=ranked(flat_change, largest=False),
        by_dla=ranked(flat_dla, largest=True),
        by_negative_dla=ranked(flat_dla, largest=False),
        documents=_documents(pieces, changes, attributions),
    )


def _documents(
    pieces: Sequence[Chunk], changes: Sequence[np.ndarray], attributions: Sequence[np.ndarray]
) -> list[DocumentScore]:
    per_doc: dict[int, tuple[list, list]] = {}
    for chunk, change, dla in zip(pieces, changes, attributions, strict=True):
        per_doc.setdefault(chunk.doc, ([], []))
        per_doc[chunk.doc][0].append(change)
        per_doc[chunk.doc][1].append(dla)
    scores = []
    for doc, (change_parts, dla_parts) in per_doc.items():
        change, dla = np.concatenate(change_parts), np.concatenate(dla_parts)
        scores.append(
            DocumentScore(
                doc, len(change), float(change.mean()), float(change.max()), float(dla.mean())
            )
        )
    return sorted(scores, key=lambda s: -s.mean_loss_change)
