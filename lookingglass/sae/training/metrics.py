"""How good a trained SAE is, with SAELens's metric definitions, and baselines.

`evaluate_sae(model, sae, rows)` splices the SAE into the model (`run_with_saes`, without
the error term) over held-out token rows and returns:

- `l0`: mean number of active latents per token; `l1`: mean sum of |activations|.
- `mse`: mean over tokens of ‖x - x̂‖² (summed over d_in), SAELens's training MSE.
- `explained_variance`: 1 - E‖x - x̂‖² / (E‖x‖² - ‖E x‖²) (SAELens's
  `ExplainedVarianceCalculator`: one variance over all tokens, not a per-batch mean).
- `cossim`: mean cosine similarity of x and x̂.
- `ce_loss_without_sae`, `ce_loss_with_sae`, `ce_loss_with_ablation` (the hook zeroed),
  `ce_loss_score` = (ablation - with SAE) / (ablation - without) (SAELens's "CE loss
  recovered"), `delta_loss` = with SAE - without.
- `dead_fraction`: latents that never fired on these tokens; `dense_fraction`: latents
  firing on more than `dense_threshold` (default 10%) of them.
- `feature_density`: per-latent firing frequency [d_sae].

Positions listed in `keep_positions` (default: 0, the BOS) keep the model's own
activation, as SAELens's `get_recons_loss` keeps `ignore_tokens`; they are left out of
the reconstruction metrics and of the losses (the predictions made there).
`pca_baseline(...)` gives the same metrics for a rank-k PCA reconstruction (fit on
training activations), the dense baseline an SAE with L0 = k must beat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.sae.sae import SAE
from lookingglass.sae.splice import run_with_hooks_with_saes


class _Sums:
    """Streaming sums for the reconstruction metrics (float64 on the CPU)."""

    def __init__(self) -> None:
        self.n = 0
        self.sum_x: Tensor | None = None
        self.sq_norm = self.sq_resid = self.cos = self.l0 = self.l1 = 0.0
        self.fired: Tensor | None = None

    def add(self, x: Tensor, x_hat: Tensor, acts: Tensor | None = None) -> None:
        x, x_hat = x.double().cpu(), x_hat.double().cpu()
        self.n += x.shape[0]
        self.sum_x = x.sum(0) if self.sum_x is None else self.sum_x + x.sum(0)
        self.sq_norm += float(x.pow(2).sum())
        self.sq_resid += float((x - x_hat).pow(2).sum())
        self.cos += float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).sum())
        if acts is not None:
            on = (acts != 0).double().cpu()
            self.l0 += float(on.sum())
            self.l1 += float(acts.abs().double().sum())
            self.fired = on.sum(0) if self.fired is None else self.fired + on.sum(0)

    def result(self, dense_threshold: float) -> dict[str, Any]:
        n = max(self.n, 1)
        mse = self.sq_resid / n
        var = self.sq_norm / n - float((self.sum_x / n).pow(2).sum())
        out: dict[str, Any] = {
            "n_tokens": self.n,
            "mse": mse,
            "explained_variance": 1 - mse / var if var > 0 else 0.0,
            "cossim": self.cos / n,
        }
        if self.fired is not None:
            density = self.fired / n
            out |= {
                "l0": self.l0 / n,
                "l1": self.l1 / n,
                "dead_fraction": float((density == 0).double().mean()),
                "dense_fraction": float((density > dense_threshold).double().mean()),
                "feature_density": density.float(),
            }
        return out


def _ce(model: Any, tokens: Tensor, hook: str, fn: Callable[[Tensor], Tensor] | None) -> Tensor:
    hooks = [] if fn is None else [(hook, lambda act, hook: fn(act))]
    with torch.no_grad():
        return model.run_with_hooks(
            tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks
        )


@torch.no_grad()
def evaluate_sae(
    model: Any,
    sae: SAE,
    rows: Int[Tensor, "n_rows seq_len"],
    batch_size: int = 8,
    keep_positions: Sequence[int] = (0,),
    dense_threshold: float = 0.1,
) -> dict[str, Any]:
    """Reconstruction, sparsity and downstream-loss metrics of `sae` on `rows`."""
    hook = sae.cfg.hook_name
    sums, losses = _Sums(), {"without": [], "with": [], "ablation": []}
    keep = list(keep_positions)
    device = next(model.parameters()).device
    seen: dict[str, Tensor] = {}

    def grab(name: str) -> Callable:
        def fn(act: Tensor, hook: Any) -> Tensor:
            seen[name] = act
            return act

        return fn

    def restore(act: Tensor, hook: Any) -> Tensor:  # the model's own value at `keep`
        act = act.clone()
        act[:, keep] = seen["x"][:, keep].to(act.dtype)
        return act

    for start in range(0, len(rows), batch_size):
        tokens = rows[start : start + batch_size].to(device)
        seen.clear()
        sae_hooks = [
            (f"{hook}.hook_sae_input", grab("x")),
            (f"{hook}.hook_sae_acts_post", grab("acts")),
            (f"{hook}.hook_sae_recons", grab("recons")),
            (f"{hook}.hook_sae_output", restore),
        ]
        losses["with"].append(
            run_with_hooks_with_saes(
                model,
                tokens,
                saes=[sae],
                fwd_hooks=sae_hooks,
                return_type="loss",
                loss_per_token=True,
                use_error_term=False,
            )
        )
        losses["without"].append(_ce(model, tokens, hook, None))
        losses["ablation"].append(_ce(model, tokens, hook, torch.zeros_like))
        mask = torch.ones(tokens.shape, dtype=torch.bool, device=tokens.device)
        mask[:, keep] = False
        x_hat = sae._normalize_out(seen["recons"]) if not sae.cfg.is_transcoder else seen["recons"]
        sums.add(seen["x"][mask], x_hat[mask], seen["acts"][mask])
    out = sums.result(dense_threshold)
    return out | _ce_metrics(losses, keep)


def _ce_metrics(losses: dict[str, list[Tensor]], keep: list[int]) -> dict[str, float]:
    """Mean per-token losses, leaving out predictions made at `keep` positions (as
    SAELens masks the losses of `ignore_tokens`: the SAE does not touch them)."""
    ce = {}
    for name, parts in losses.items():
        loss = torch.cat(parts)  # [rows, pos - 1]
        cols = torch.ones(loss.shape[1], dtype=torch.bool)
        cols[[p for p in keep if p < loss.shape[1]]] = False
        ce[name] = float(loss[:, cols].mean())
    without, with_sae, ablation = ce["without"], ce["with"], ce["ablation"]
    return {
        "ce_loss_without_sae": without,
        "ce_loss_with_sae": with_sae,
        "ce_loss_with_ablation": ablation,
        "ce_loss_score": (ablation - with_sae) / (ablation - without),
        "delta_loss": with_sae - without,
    }


@torch.no_grad()
def fit_pca(x: Float[Tensor, "n d"], k: int) -> tuple[Tensor, Tensor]:
    """(mean [d], top-k principal directions [d, k]) of the rows of `x`."""
    x = x.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(x.shape[0] - 1, 1)
    _, vecs = torch.linalg.eigh(cov)
    return mean.float(), vecs[:, -k:].flip(-1).float().contiguous()


@torch.no_grad()
def pca_baseline(
    model: Any,
    hook: str,
    mean: Tensor,
    components: Tensor,
    rows: Int[Tensor, "n_rows seq_len"],
    batch_size: int = 8,
    keep_positions: Sequence[int] = (0,),
    reference: dict[str, float] | None = None,
) -> dict[str, Any]:
    """`evaluate_sae`'s reconstruction and CE metrics for x̂ = μ + P Pᵀ (x - μ).

    `reference`: `evaluate_sae`'s result on the same rows, whose clean and zero-ablated
    losses are then reused instead of recomputed.
    """
    sums, losses = _Sums(), {"without": [], "with": [], "ablation": []}
    keep = list(keep_positions)
    device = next(model.parameters()).device
    mean, components = mean.to(device), components.to(device)

    def project(act: Tensor) -> Tensor:
        recons = mean + ((act - mean) @ components) @ components.T
        mask = torch.ones(act.shape[:2], dtype=torch.bool, device=act.device)
        mask[:, keep] = False
        sums.add(act[mask], recons[mask])
        out = recons.to(act.dtype)
        out[:, keep] = act[:, keep]
        return out

    for start in range(0, len(rows), batch_size):
        tokens = rows[start : start + batch_size].to(device)
        losses["with"].append(_ce(model, tokens, hook, project))
        if reference is None:
            losses["without"].append(_ce(model, tokens, hook, None))
            losses["ablation"].append(_ce(model, tokens, hook, torch.zeros_like))
    if reference is not None:
        fill = {"without": "ce_loss_without_sae", "ablation": "ce_loss_with_ablation"}
        losses |= {k: [torch.full((1, 2), reference[v])] for k, v in fill.items()}
    return sums.result(0.1) | _ce_metrics(losses, keep)
