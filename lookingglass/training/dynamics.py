"""Training dynamics over snapshots, as in Olsson et al. (2022), "In-context Learning and
Induction Heads".

Everything is measured on each snapshot of a run (`Snapshots`) and stacked along a
leading snapshot axis:

- **Per-token loss vectors**: the loss on a fixed sample of tokens, each from a different
  sequence (`sample_tokens`), `[n_snapshots, n_tokens]`, and their PCA (`loss_pca`): the
  trajectory of training in the space of per-token losses.
- **Induction (prefix-matching) score** of every head, `[n_snapshots, n_layers, n_heads]`,
  and the **previous-token score**, computed by `lookingglass.analysis.heads`.
- **In-context-learning score** (`icl_score`): how much lower the loss is late in the
  context than early in it. The paper uses the loss at token 500 minus the loss at token
  50 of 1024-token contexts. Our contexts are short and our held-out sets small, so we
  average over windows in the same places: the mean loss over the late window, tokens
  `seq_len // 2 .. seq_len - 1` (the second half), minus the mean loss over the early
  window, tokens `max(1, seq_len // 20) .. seq_len // 10` (the paper's window would be
  tokens 51-102 vs 512-1023). "The loss at token t" is the loss of predicting token t
  from tokens 0..t-1, averaged over held-out rows. Negative means the model predicts
  better late in the context, i.e. learns in context.
- **Phase change** (`phase_change`, in `lookingglass.training.jumps`): the snapshot
  window in which a curve (the best induction score, or the ICL improvement
  `-icl_score`) makes its largest jump, and whether the curve is abrupt enough to call
  it a phase change (at least half of its change inside 25% of the run and inside one
  doubling of the step count; a smooth exponential learning curve never puts more than
  a quarter in a doubling). Two curves "jump together" when both are phase changes and
  their midpoints (half-way through the rise of the steepest doubling) are at most 5%
  of the run apart (`jumps_together`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.analysis.heads import (
    induction_scores,
    previous_token_scores,
    repeated_random_tokens,
)
from lookingglass.errors import InputError
from lookingglass.training.jumps import (
    PhaseChange,
    jumps_together,
    phase_change,
    smooth,
    together_tolerance,
    windows_overlap,
)
from lookingglass.utils import write_atomic

__all__ = [
    "Dynamics",
    "LossPCA",
    "PhaseChange",
    "TokenSample",
    "analyze_snapshots",
    "dynamics_summary",
    "icl_score",
    "icl_windows",
    "jumps_together",
    "loss_pca",
    "per_position_losses",
    "phase_change",
    "sample_losses",
    "sample_tokens",
    "smooth",
    "text_induction_attention",
    "together_tolerance",
    "windows_overlap",
    "write_json",
]


# --------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class TokenSample:
    """A fixed set of tokens to measure the loss on, each in its own sequence.

    Attributes:
        tokens: the sequences `[n_tokens, seq_len]`, one per sampled token.
        positions: `[n_tokens]`; entry i is the token index t (1 <= t < seq_len) whose
            loss (predicting `tokens[i, t]` from `tokens[i, :t]`) is measured.
    """

    tokens: Int[Tensor, "n_tokens seq_len"]
    positions: Int[Tensor, " n_tokens"]


def sample_tokens(rows: Int[Tensor, "n_rows seq_len"], n_tokens: int, seed: int = 0) -> TokenSample:
    """Pick `n_tokens` distinct rows and one uniformly random token index in each.

    Raises:
        InputError: fewer rows than `n_tokens`, or rows shorter than 2 tokens.
    """
    if n_tokens < 1 or n_tokens > len(rows):
        raise InputError(f"n_tokens must be in [1, {len(rows)}] (one per row), got {n_tokens}.")
    if rows.shape[1] < 2:
        raise InputError("Rows need at least 2 tokens to have a loss.")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(rows), generator=generator)[:n_tokens]
    positions = torch.randint(1, rows.shape[1], (n_tokens,), generator=generator)
    return TokenSample(rows[chosen].clone(), positions)


# ------------------------------------------------------------------ one-model measures
@torch.no_grad()
def per_position_losses(
    model: Any, rows: Int[Tensor, "n_rows seq_len"], batch_size: int = 64
) -> Float[Tensor, "n_rows seq_len_minus_1"]:
    """Loss of every next-token prediction: entry `[r, t - 1]` is the loss at token t."""
    device = model.W_E.device
    out = [
        model(rows[i : i + batch_size].to(device), return_type="loss", loss_per_token=True).cpu()
        for i in range(0, len(rows), batch_size)
    ]
    return torch.cat(out).float()


def sample_losses(
    model: Any, sample: TokenSample, batch_size: int = 64
) -> Float[Tensor, " n_tokens"]:
    """The per-token loss vector of `model` on `sample` (one entry per sampled token)."""
    losses = per_position_losses(model, sample.tokens, batch_size)
    return losses.gather(1, (sample.positions - 1)[:, None])[:, 0]


def icl_windows(seq_len: int) -> tuple[range, range]:
    """The (early, late) token-index windows of the ICL score for rows of `seq_len`."""
    if seq_len < 10:
        raise InputError(f"The ICL score needs rows of at least 10 tokens, got {seq_len}.")
    return range(max(1, seq_len // 20), seq_len // 10 + 1), range(seq_len // 2, seq_len)


def icl_score(per_position_loss: Float[Tensor, "... seq_len_minus_1"]) -> Float[Tensor, "..."]:
    """Mean loss over the late window minus over the early window (see the module doc),
    from a mean per-position loss curve `[..., seq_len - 1]` (entry t - 1 is token t)."""
    early, late = icl_windows(per_position_loss.shape[-1] + 1)
    late_loss = per_position_loss[..., late.start - 1 : late.stop - 1].mean(-1)
    return late_loss - per_position_loss[..., early.start - 1 : early.stop - 1].mean(-1)


@torch.no_grad()
def text_induction_attention(
    model: Any, tokens: Int[Tensor, "batch pos"], ignore: tuple[int, ...] = ()
) -> Float[Tensor, "n_layers n_heads"]:
    """How much each head attends like an induction head on real text.

    For every query position q whose token occurred before at some j with j + 1 < q, the
    head's attention mass on the positions j + 1 right after those earlier occurrences;
    averaged over such queries (and rows). Queries whose token is in `ignore` (e.g. BOS)
    are skipped. The prefix-matching score (`induction_scores`) asks the same of
    repeated uniformly random tokens; this asks it of the text in front of the model,
    where frequent tokens, which a small model knows best, dominate.
    """
    tokens = tokens.to(model.W_E.device)
    n = tokens.shape[1]
    earlier = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril(-2)
    occurs = (tokens[:, :, None] == tokens[:, None, :]) & earlier  # [batch, q, j]
    targets = torch.zeros_like(occurs)
    targets[:, :, 1:] = occurs[:, :, :-1]  # key k = j + 1
    for token in ignore:
        targets &= (tokens != token)[:, :, None]
    has_target = targets.any(-1)  # [batch, q]
    if not bool(has_target.any()):
        raise InputError("No token of the input occurs twice: nothing to measure.")
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer, name in enumerate(names):
        mass = (cache[name] * targets[:, None].to(cache[name].dtype)).sum(-1)  # [b, h, q]
        out[layer] = (mass * has_target[:, None]).sum((0, 2)).cpu() / has_target.sum().cpu()
    return out


# ------------------------------------------------------------------- over snapshots
@dataclass
class Dynamics:
    """Measurements of every snapshot of a run (leading axis: snapshots in step order).

    Attributes:
        steps: `[n_snapshots]` training steps.
        loss_vectors: `[n_snapshots, n_tokens]` loss on the `TokenSample`'s tokens.
        induction: `[n_snapshots, n_layers, n_heads]` prefix-matching scores.
        previous_token: `[n_snapshots, n_layers, n_heads]` previous-token scores.
        position_loss: `[n_snapshots, seq_len - 1]` mean loss at each token of the
            held-out rows (entry t - 1 is token t).
        eval_loss: `[n_snapshots]` mean held-out loss.
        icl: `[n_snapshots]` the ICL score (`icl_score` of `position_loss`).
    """

    steps: np.ndarray
    loss_vectors: np.ndarray
    induction: np.ndarray
    previous_token: np.ndarray
    position_loss: np.ndarray
    eval_loss: np.ndarray
    icl: np.ndarray

    def save(self, path: str | Path) -> Path:
        """Write all arrays to one `.npz` file."""
        path = Path(path)
        np.savez_compressed(path, **asdict(self))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Dynamics:
        """Read a file written by `save`."""
        with np.load(path) as data:
            return cls(**{name: data[name] for name in data.files})


def analyze_snapshots(
    snapshots: Iterable[tuple[int, Any]],
    eval_rows: Int[Tensor, "n_rows seq_len"],
    sample: TokenSample,
    probe_len: int | None = None,
    probe_rows: int = 20,
    probe_seed: int = 0,
    prepend_bos: bool | None = None,
    batch_size: int = 64,
) -> Dynamics:
    """Measure every snapshot: loss vectors, head scores, per-position loss, ICL score.

    Args:
        snapshots: `(step, model)` pairs in step order, e.g. a `Snapshots` collection.
        eval_rows: held-out rows for the per-position loss and the ICL score.
        sample: the fixed token sample of the per-token loss vectors.
        probe_len: length of each half of the repeated random tokens that the induction
            and previous-token scores are measured on (default: as long as fits, at
            most 50).
        probe_rows, probe_seed: number of probe sequences and their seed.
        prepend_bos: start probes with BOS (default: when the model has a tokenizer).
    """
    columns: dict[str, list] = {
        k: [] for k in ("steps", "loss_vectors", "induction", "previous_token", "position_loss")
    }
    for step, model in snapshots:
        bos = prepend_bos if prepend_bos is not None else model.tokenizer is not None
        half = probe_len or min(50, (model.cfg.n_ctx - int(bos)) // 2)
        probe = dict(seq_len=half, n_seq=probe_rows, seed=probe_seed)
        columns["steps"].append(step)
        columns["loss_vectors"].append(sample_losses(model, sample, batch_size).numpy())
        columns["induction"].append(induction_scores(model, prepend_bos=bos, **probe).numpy())
        probe_tokens = repeated_random_tokens(model, prepend_bos=bos, **probe)
        columns["previous_token"].append(previous_token_scores(model, probe_tokens).numpy())
        columns["position_loss"].append(
            per_position_losses(model, eval_rows, batch_size).mean(0).numpy()
        )
    if not columns["steps"]:
        raise InputError("No snapshots to analyze.")
    arrays = {k: np.stack(v) for k, v in columns.items()}
    return Dynamics(
        **arrays,
        eval_loss=arrays["position_loss"].mean(axis=1),
        icl=icl_score(torch.from_numpy(arrays["position_loss"])).numpy(),
    )


# ------------------------------------------------------------------------------- PCA
@dataclass(frozen=True)
class LossPCA:
    """PCA of per-token loss vectors.

    Attributes:
        mean: `[n_tokens]` the mean loss vector (over snapshots), subtracted first.
        components: `[k, n_tokens]` principal directions, unit norm; each sign is chosen
            so that its largest-magnitude entry is positive.
        explained_variance_ratio: `[k]` fraction of the total variance along each.
        trajectory: `[n_snapshots, k]` each snapshot's coordinates along them.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    trajectory: np.ndarray


def loss_pca(loss_vectors: Float[np.ndarray, "n_snapshots n_tokens"], k: int = 3) -> LossPCA:
    """PCA (numpy SVD) of `[n_snapshots, n_tokens]` per-token loss vectors.

    Raises:
        InputError: not 2-D, or `k` outside `[1, min(n_snapshots, n_tokens)]`.
    """
    x = np.asarray(loss_vectors, dtype=np.float64)
    if x.ndim != 2 or not 1 <= k <= min(x.shape):
        raise InputError(
            f"loss_pca needs a 2-D array and 1 <= k <= {min(x.shape)}, got "
            f"shape {x.shape} and k={k}."
        )
    mean = x.mean(axis=0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    u, vt = u * signs, vt * signs[:, None]
    variance = s**2
    ratio = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    return LossPCA(mean, vt[:k], ratio[:k], u[:, :k] * s[:k])


# ---------------------------------------------------------------------- verdict
def dynamics_summary(
    dynamics: Dynamics,
    induction_threshold: float = 0.4,
    min_induction_rise: float = 0.3,
    min_icl_rise: float = 0.1,
) -> dict[str, Any]:
    """The replication's verdict for one run, as a JSON-serializable dict.

    `induction_heads`: heads whose final induction score exceeds `induction_threshold`,
    each with the first snapshot step at which it did. `induction_phase` /
    `icl_phase`: `phase_change` of the best head's induction score (min rise
    `min_induction_rise`) and of `-icl` (min rise `min_icl_rise` nats). `coincide`:
    both are phase changes and jump together (`jumps_together`); `midpoints_apart`
    and `together_tolerance`: the distance between the two jump midpoints and the
    largest distance that counts as together, in steps.
    """
    steps = dynamics.steps
    final = dynamics.induction[-1]
    heads = []
    for layer, head in zip(*np.nonzero(final > induction_threshold), strict=True):
        curve = dynamics.induction[:, layer, head]
        first = int(steps[np.argmax(curve > induction_threshold)])
        heads.append(
            {
                "head": f"L{layer}H{head}",
                "final_score": round(float(curve[-1]), 3),
                "first_step_above": first,
            }
        )
    best = dynamics.induction.reshape(len(steps), -1).max(axis=1)
    induction_phase = phase_change(steps, best, min_induction_rise)
    icl_phase = phase_change(steps, -dynamics.icl, min_icl_rise)
    return {
        "induction_heads": sorted(heads, key=lambda h: -h["final_score"]),
        "max_induction_score": round(float(best[-1]), 3),
        "max_previous_token_score": round(float(dynamics.previous_token[-1].max()), 3),
        "final_icl_score": round(float(dynamics.icl[-1]), 3),
        "final_eval_loss": round(float(dynamics.eval_loss[-1]), 4),
        "induction_phase": induction_phase.to_dict(),
        "icl_phase": icl_phase.to_dict(),
        "coincide": jumps_together(induction_phase, icl_phase, steps),
        "midpoints_apart": round(abs(induction_phase.midpoint - icl_phase.midpoint), 1),
        "together_tolerance": round(together_tolerance(induction_phase, icl_phase, steps), 1),
    }


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write `data` as indented JSON."""
    path = Path(path)
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path
