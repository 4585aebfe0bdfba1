"""Many edited copies of one forward pass, run together: the engine behind patching.

A *variant* is a base run (token ids) with some activations edited by hook-like
functions. TransformerLens runs one forward pass per variant; here variants are stacked
along the batch dimension, and three facts make the work smaller:

* A variant equals the base run up to the block of its first edit, so it starts there,
  from the base run's cached residual stream (`start_at_layer`). In a chunk, each
  variant joins the batch at the block of its first edit.
* Attention is causal: an edit that touches only positions >= p changes nothing at
  positions < p, in any later layer. A chunk whose variants all start at position >= p0
  computes positions p0.. only; the keys and values of earlier positions come from the
  base run's KV cache and their logits from the base run's logits, so every metric still
  sees the full `[batch, pos, d_vocab]` logits.
* Chunks of at most `batch_size` variants (by default, a budget of token rows) bound
  memory.

Everything goes through the model's public forward (`start_at_layer`, `stop_at_layer`,
`past_kv_cache`) and hook API, so hooks the user attached still run.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.model.kv_cache import KeyValueCache

EditFn = Callable[[Tensor, int], Tensor | None]
Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], Tensor | float]

# Default budget of token rows (variants x batch x computed positions) per forward pass:
# large enough for efficient matrix products on a CPU, small enough that the logits of a
# chunk (rows x d_vocab floats) stay a few hundred MB for GPT-2's vocabulary.
DEFAULT_ROW_BUDGET = 1024


@dataclass(frozen=True)
class DeclaredMetric:
    """A patching metric with facts that allow a faster evaluation (see `declare_metric`)."""

    fn: Callable[..., Tensor | float]
    batched: bool = False
    positions: tuple[int, ...] | None = None

    def __call__(self, logits: Tensor) -> Tensor | float:
        return self.fn(logits)


def declare_metric(
    fn: Callable[..., Tensor | float] | None = None,
    *,
    batched: bool = False,
    positions: Sequence[int] | None = None,
):
    """Declare facts about a patching metric that let patching functions evaluate it faster.

    Args:
        fn: the metric, `fn(logits) -> scalar` as in TransformerLens.
        batched: `fn` takes the logits of many variants at once,
            `[n_variants, batch, pos, d_vocab]`, and returns `[n_variants]` (one call per
            chunk instead of one per variant).
        positions: the only positions whose logits `fn` reads (e.g. `[-1]`). Logits at
            other positions are not computed and are NaN, so a metric that reads them
            anyway gives NaN rather than a silently wrong number.

    Usable as `declare_metric(fn, positions=[-1])` or as a decorator
    `@declare_metric(batched=True)`.
    """
    if fn is None:
        return lambda f: declare_metric(f, batched=batched, positions=positions)
    if isinstance(fn, DeclaredMetric):
        fn = fn.fn
    return DeclaredMetric(
        fn, batched, None if positions is None else tuple(int(p) for p in positions)
    )


@dataclass(frozen=True)
class Edit:
    """Edit the activation at `hook_name` (in block `layer`) of one variant.

    `fn(rows, p0)` gets that variant's rows `[batch, ...]` of the activation, covering
    positions p0.. only (the query positions of an attention pattern), and edits them in
    place or returns replacement rows.
    """

    hook_name: str
    layer: int
    fn: EditFn


@dataclass(frozen=True)
class Variant:
    """A base run with `edits` applied; no edit touches a position before `first_pos`."""

    edits: tuple[Edit, ...]
    first_pos: int = 0

    @property
    def start_layer(self) -> int:
        return min(edit.layer for edit in self.edits)


@dataclass
class BaseRun:
    """What variants of one run reuse: the residual stream entering every block
    (`resid[l]`), each layer's keys and values as the KV cache holds them, and the logits."""

    tokens: Int[Tensor, "batch pos"]
    resid: list[Float[Tensor, "batch pos d_model"]]
    keys: list[Tensor]
    values: list[Tensor]
    logits: Float[Tensor, "batch pos d_vocab"] | None

    @classmethod
    @torch.no_grad()
    def from_tokens(cls, model, tokens: Int[Tensor, "batch pos"], logits: bool = True) -> BaseRun:
        """Run the model once on `tokens` and keep what variants need."""
        tokens = tokens if tokens.dim() == 2 else tokens[None]
        n_layers = model.cfg.n_layers
        names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]
        kv_cache = KeyValueCache.init_cache(model.cfg, tokens.device, tokens.shape[0])
        out, acts = model.run_with_cache(
            tokens,
            names_filter=names,
            past_kv_cache=kv_cache,
            return_type="logits" if logits else None,
            return_cache_object=False,
        )
        resid = [acts[name] for name in names]
        return cls(
            tokens=tokens,
            resid=resid,
            keys=[kv_cache[layer].past_keys for layer in range(n_layers)],
            values=[kv_cache[layer].past_values for layer in range(n_layers)],
            logits=out,
        )


@torch.no_grad()
def run_variants(
    model,
    base: BaseRun,
    variants: Sequence[Variant],
    metric: Metric | DeclaredMetric | None,
    batch_size: int | None = None,
    stop_at_layer: int | None = None,
) -> Float[Tensor, " n_variants"] | None:
    """The metric of every variant's logits, `[n_variants]` float32 (in input order).

    With `stop_at_layer` (and `metric=None`) variants run only up to that block, for
    edits that record activations as a side effect; nothing is returned.
    """
    if not isinstance(metric, DeclaredMetric) and metric is not None:
        metric = DeclaredMetric(metric)
    n_layers = model.cfg.n_layers
    for variant in variants:
        if not variant.edits or not all(0 <= e.layer < n_layers for e in variant.edits):
            raise InputError(
                "Every variant needs at least one edit, each in a block 0..n_layers-1."
            )
    results = torch.zeros(len(variants), dtype=torch.float32)
    order = sorted(
        range(len(variants)), key=lambda i: (variants[i].first_pos, variants[i].start_layer)
    )
    full_rows = metric is not None and metric.batched  # a batched metric sees whole logits
    for chunk in _chunks(order, variants, base, batch_size, full_rows):
        p0 = variants[chunk[0]].first_pos
        chunk = sorted(chunk, key=lambda i: variants[i].start_layer)
        logits = _run_chunk(model, base, [variants[i] for i in chunk], p0, metric, stop_at_layer)
        if logits is not None:
            batch, n_pos = base.tokens.shape
            results[chunk] = evaluate_metric(metric, logits, batch, n_pos, p0, base.logits)
    return None if stop_at_layer is not None else results


def _chunks(
    order, variants: Sequence[Variant], base: BaseRun, batch_size: int | None, full_rows: bool
):
    """Consecutive groups of `order`: `batch_size` variants, or as many as fit the row
    budget (rows computed: variants x batch x positions from p0, or all positions)."""
    batch, n_pos = base.tokens.shape
    chunk: list[int] = []
    for i in order:
        if chunk:
            positions = n_pos if full_rows else n_pos - variants[chunk[0]].first_pos
            if batch_size:
                full = len(chunk) >= batch_size
            else:
                full = (len(chunk) + 1) * batch * positions > DEFAULT_ROW_BUDGET
            if full:
                yield chunk
                chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


def _run_chunk(model, base, chunk: list[Variant], p0: int, metric, stop_at_layer: int | None):
    """Run one chunk (sorted by start layer) from its first block; its logits at positions
    p0.. (or at the metric's declared positions), `[n_variants * batch, pos, d_vocab]`."""
    n_layers, batch, n_pos = model.cfg.n_layers, *base.tokens.shape
    positions = None if metric is None else computed_positions(metric, n_pos, p0)
    if positions is not None and len(positions) == 0:
        # The metric reads only positions before p0, which no variant here can change.
        return base.logits.new_empty(len(chunk) * batch, 0, base.logits.shape[-1])
    resid: Tensor | None = None
    active = 0
    for layer in range(chunk[0].start_layer, n_layers if stop_at_layer is None else stop_at_layer):
        joining = 0
        while active + joining < len(chunk) and chunk[active + joining].start_layer == layer:
            joining += 1
        if joining:  # these variants equal the base run up to here: start from its residual
            new = base.resid[layer][:, p0:].repeat(joining, 1, 1)
            resid = new if resid is None else torch.cat([resid, new])
            active += joining
        with model.hooks(fwd_hooks=_edit_hooks(chunk[:active], layer, batch, p0)):
            resid = model(
                resid,
                start_at_layer=layer,
                stop_at_layer=layer + 1,
                past_kv_cache=_prefix_cache(model, base, layer, p0, active),
            )
    if stop_at_layer is not None:
        return None
    if positions is not None:
        resid = resid[:, (positions - p0).to(resid.device)]
    return model(resid, start_at_layer=n_layers)


def _edit_hooks(active: list[Variant], layer: int, batch: int, p0: int):
    """One hook per hooked name, applying each variant's edits to its own rows."""
    by_name: dict[str, list[tuple[int, EditFn]]] = {}
    for i, variant in enumerate(active):
        for edit in variant.edits:
            if edit.layer == layer:
                by_name.setdefault(edit.hook_name, []).append((i, edit.fn))

    def make_hook(edits: list[tuple[int, EditFn]]):
        def apply_edits(activation: Tensor, hook) -> Tensor:
            activation = activation.clone()
            for i, fn in edits:
                rows = activation[i * batch : (i + 1) * batch]
                out = fn(rows, p0)
                if out is not None and out is not rows:
                    rows.copy_(out)
            return activation

        return apply_edits

    return [(name, make_hook(edits)) for name, edits in by_name.items()]


def _prefix_cache(
    model, base: BaseRun, layer: int, p0: int, n_variants: int
) -> KeyValueCache | None:
    """A KV cache holding the base run's keys and values of positions < p0 at `layer`."""
    if p0 == 0:
        return None
    rows = n_variants * base.tokens.shape[0]
    device = base.resid[layer].device
    cache = KeyValueCache.init_cache(model.cfg, device, rows)
    cache.extend_attention_mask(torch.ones(rows, p0, dtype=torch.long, device=device))
    cache[layer].past_keys = base.keys[layer][:, :p0].repeat(n_variants, 1, 1, 1)
    cache[layer].past_values = base.values[layer][:, :p0].repeat(n_variants, 1, 1, 1)
    return cache


def computed_positions(metric: DeclaredMetric, n_pos: int, p0: int = 0) -> Tensor | None:
    """The positions >= p0 whose logits a metric with declared positions reads (else None)."""
    if metric.positions is None:
        return None
    return torch.tensor(
        sorted({p % n_pos for p in metric.positions if p % n_pos >= p0}), dtype=torch.long
    )


def evaluate_metric(
    metric: DeclaredMetric,
    logits: Float[Tensor, "n_variants_x_batch computed_pos d_vocab"],
    batch: int,
    n_pos: int,
    p0: int = 0,
    base_logits: Float[Tensor, "batch pos d_vocab"] | None = None,
) -> Float[Tensor, " n_variants"]:
    """The metric of each variant, float32 on the CPU. `logits` hold positions p0.. (or
    the declared positions >= p0); earlier ones are taken from `base_logits`."""
    n_variants = logits.shape[0] // batch
    logits = logits.view(n_variants, batch, *logits.shape[1:])
    if metric.batched:
        values = metric.fn(_full_logits(metric, logits, n_pos, p0, base_logits))
        values = torch.as_tensor(values, dtype=torch.float32).detach().cpu()
        if values.numel() != n_variants:
            raise InputError(
                f"A batched patching_metric must return one value per variant, [{n_variants}], "
                f"got shape {tuple(values.shape)}."
            )
        return values.reshape(n_variants)
    values = [
        metric.fn(_full_logits(metric, logits[i], n_pos, p0, base_logits))
        for i in range(n_variants)
    ]
    return torch.tensor([_scalar(v) for v in values], dtype=torch.float32)


def _full_logits(
    metric: DeclaredMetric, logits: Tensor, n_pos: int, p0: int, base_logits
) -> Tensor:
    """Logits of every position: the base run's before p0 (unchanged), computed ones from
    p0 on; with declared positions, NaN where the metric said it does not read."""
    lead, batch, d_vocab = logits.shape[:-3], logits.shape[-3], logits.shape[-1]
    if metric.positions is None:
        if p0 == 0:
            return logits
        prefix = base_logits[:, :p0].expand(*lead, batch, p0, d_vocab)
        return torch.cat([prefix, logits], dim=-2)
    full = logits.new_full((*lead, batch, n_pos, d_vocab), float("nan"))
    full[..., computed_positions(metric, n_pos, p0).to(logits.device), :] = logits
    earlier = sorted({p % n_pos for p in metric.positions if p % n_pos < p0})
    if earlier:
        full[..., earlier, :] = base_logits[:, earlier]
    return full


def _scalar(value: Any) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    shown = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)
    raise InputError(
        f"patching_metric must return a scalar (a number or a one-element tensor), got "
        f"{shown[:80]}. Reduce it (e.g. .mean()), or declare a batched metric with "
        "declare_metric(fn, batched=True)."
    )


@torch.no_grad()
def check_clean_cache(model, corrupted_tokens: Tensor, clean_cache, hook_names) -> None:
    """Each clean activation must be there and be shaped as the corrupted run's (the same
    model, prompts of the same length; a batch of 1 broadcasts). The reference shapes
    come from one row of the corrupted run, up to the last block patched."""
    names = sorted(set(hook_names))
    clean = {}
    for name in names:
        try:
            clean[name] = clean_cache[name]
        except KeyError:
            raise InputError(
                f"clean_cache has no activation {name!r}: cache the clean run with this model "
                f"(n_layers={model.cfg.n_layers}) and that hook (names_filter)."
            ) from None
    layers = [int(n.split(".")[1]) for n in names if n.startswith("blocks.")]
    stop = None if not layers or max(layers) + 1 >= model.cfg.n_layers else max(layers) + 1
    _, reference = model.run_with_cache(
        corrupted_tokens[:1] if corrupted_tokens.dim() == 2 else corrupted_tokens,
        names_filter=names,
        return_type=None,
        stop_at_layer=stop,
        return_cache_object=False,
    )
    batch = corrupted_tokens.shape[0] if corrupted_tokens.dim() == 2 else 1
    for name in names:
        got, want = tuple(clean[name].shape), tuple(reference[name].shape)
        if got[1:] != want[1:] or got[0] not in (1, batch):
            raise InputError(
                f"clean_cache[{name!r}] has shape {got}, but the corrupted run's is "
                f"{(batch, *want[1:])}: the clean cache must come from this model, on prompts "
                f"of the corrupted tokens' length ({corrupted_tokens.shape[-1]} tokens) and "
                "batch size."
            )
