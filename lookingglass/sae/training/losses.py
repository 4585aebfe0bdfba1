"""One SAE's training forward pass: features, reconstruction and loss terms.

The formulas are SAELens 6's `TrainingSAE.training_forward_pass` for the `standard`,
`topk` and `jumprelu` architectures (see `TrainConfig` for the losses), computed on our
`SAE` module (its `process_sae_in` and `decode`, so hooks and input normalisation are the
same as at inference). `tests/integration/test_sae_training_parity.py` checks losses and
gradients against SAELens's training SAEs on identical weights and batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lookingglass.errors import ConfigError
from lookingglass.sae.sae import SAE
from lookingglass.sae.training.config import TRAINABLE, TrainConfig


def _rectangle(x: Tensor) -> Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x)


class _Step(torch.autograd.Function):
    """H(x - θ) forward; backward gives θ the rectangle-kernel pseudo-derivative
    -(1/ε) K((x - θ)/ε) (Rajamanoharan et al. 2024, eq. 11); x gets none."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[None, Tensor, None]:
        x, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        ste = (1.0 / eps) * _rectangle((x - threshold) / eps) * grad_output
        return None, -ste.reshape(-1, ste.shape[-1]).sum(0), None


class _JumpReLU(torch.autograd.Function):
    """x · H(x - θ) forward; θ gets -(θ/ε) K((x - θ)/ε), x the plain gate (eq. 12)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return x * (x > threshold).to(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor, None]:
        x, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        ste = (threshold / eps) * _rectangle((x - threshold) / eps) * grad_output
        return (x > threshold) * grad_output, -ste.reshape(-1, ste.shape[-1]).sum(0), None


@dataclass
class StepOutput:
    """What one training forward pass computed (per-rank batch).

    Top-k keeps its features sparse (`indices`, `values`: [batch, k]); `feature_acts`
    builds the dense [batch, d_sae] tensor only when asked.
    """

    sae_in: Float[Tensor, "batch d_in"]
    sae_out: Float[Tensor, "batch d_in"]
    hidden_pre: Float[Tensor, "batch d_sae"]
    loss: Tensor
    losses: dict[str, Tensor]
    dense_acts: Tensor | None = None
    indices: Tensor | None = None
    values: Tensor | None = None
    _fired: tuple[Tensor, Tensor] | None = None

    @property
    def feature_acts(self) -> Float[Tensor, "batch d_sae"]:
        if self.dense_acts is None:
            dense = torch.zeros_like(self.hidden_pre)
            self.dense_acts = dense.scatter(-1, self.indices, self.values)
        return self.dense_acts

    @torch.no_grad()
    def fired(self) -> tuple[Float[Tensor, " d_sae"], Tensor]:
        """(tokens each latent fired on, total active latents) in this batch."""
        if self._fired is None:
            if self.dense_acts is None and self.indices is not None:
                on = self.values > 0
                counts = torch.bincount(self.indices[on], minlength=self.hidden_pre.shape[-1])
                self._fired = counts.to(self.hidden_pre.dtype), on.sum().to(self.hidden_pre.dtype)
            else:
                counts = (self.dense_acts != 0).sum(0).to(self.hidden_pre.dtype)
                self._fired = counts, counts.sum()
        return self._fired


def check_trainable(sae: SAE) -> None:
    """Raise if `sae`'s architecture or normalisation has no training loss here."""
    if sae.cfg.architecture not in TRAINABLE:
        raise ConfigError(
            f"training supports the {', '.join(TRAINABLE)} architectures, not "
            f"{sae.cfg.architecture!r}."
        )
    if sae.cfg.architecture == "topk" and sae.cfg.normalize_activations in (
        "constant_norm_rescale",
        "layer_norm",
    ):
        raise ConfigError(
            "the top-k aux loss needs normalize_activations 'none' (as in SAELens): its "
            "residual would be in the normalised space."
        )


def _sparse_decode(indices: Tensor, values: Tensor, w_dec: Tensor) -> Tensor:
    """Σ_j values[:, j] W_dec[indices[:, j]] without the dense [batch, d_sae] matmul: the
    decoder (and its gradient) costs k / d_sae of the dense product."""
    flat_idx, flat_val = (
        indices.reshape(-1, indices.shape[-1]),
        values.reshape(-1, values.shape[-1]),
    )
    out = torch.nn.functional.embedding_bag(
        flat_idx, w_dec, per_sample_weights=flat_val, mode="sum"
    )
    return out.reshape(*indices.shape[:-1], w_dec.shape[-1])


def _topk_aux_loss(
    sae: SAE, sae_in: Tensor, sae_out: Tensor, raw_pre: Tensor, dead: Tensor | None, alpha: float
) -> Tensor:
    """Gao et al.'s aux-k loss, as SAELens: the top k_aux dead latents (ranked by their
    pre-activations, × ‖W_dec‖ with rescaling) reconstruct the detached residual."""
    n_dead = 0 if dead is None else int(dead.sum())
    if n_dead == 0:
        return sae_out.new_tensor(0.0)
    residual = (sae_in - sae_out).detach()
    k_aux = sae_in.shape[-1] // 2  # Gao et al. 2024, appendix B.1
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    with torch.no_grad():
        ranked = (
            raw_pre * sae.W_dec.norm(dim=-1) if sae.cfg.rescale_acts_by_decoder_norm else raw_pre
        )
        indices = torch.where(dead[None], ranked, -torch.inf).topk(k_aux, sorted=False).indices
    # With rescaling SAELens decodes (h ‖W_dec‖) / ‖W_dec‖ = h: the norms cancel.
    values = raw_pre.gather(-1, indices)
    recons = _sparse_decode(indices, values, sae.W_dec)  # no b_dec: it is in the residual
    return alpha * scale * (recons - residual).pow(2).sum(-1).mean()


def training_forward(
    sae: SAE,
    x: Float[Tensor, "batch d_in"],
    cfg: TrainConfig,
    coefficients: dict[str, float],
    dead_mask: Bool[Tensor, " d_sae"] | None = None,
) -> StepOutput:
    """Features, reconstruction and losses of `sae` on the batch `x`.

    Args:
        coefficients: the scheduled sparsity coefficient(s) for this step: {"l1": ...}
            (standard) or {"l0": ...} (jumprelu); top-k takes none.
        dead_mask: latents counted dead (no firing for `dead_feature_window` steps), for
            the top-k aux loss and the JumpReLU pre-activation loss.
    """
    arch = sae.cfg.architecture
    sae_in = sae.process_sae_in(x)
    hidden_pre = sae._hook("hook_sae_acts_pre", sae_in @ sae.W_enc + sae.b_enc)
    raw_pre = hidden_pre
    losses: dict[str, Tensor] = {}
    sae_out = acts = indices = values = None
    if arch == "topk":
        norm = sae.W_dec.norm(dim=-1) if sae.cfg.rescale_acts_by_decoder_norm else None
        sparse = not sae.hook_sae_acts_post.has_hooks() and not sae.cfg.is_transcoder
        if sparse:
            # Choose the k latents without the gradient, then take their values with it:
            # the gradient is the dense version's, at k / d_sae of its cost.
            with torch.no_grad():
                scaled = hidden_pre * norm if norm is not None else hidden_pre
                indices = scaled.topk(sae.cfg.k, dim=-1, sorted=False).indices
            values = hidden_pre.gather(-1, indices)
            if norm is not None:
                values = values * norm[indices]
                hidden_pre = scaled
            values = values.relu()
            coeffs = values / norm[indices] if norm is not None else values
            recons = _sparse_decode(indices, coeffs, sae.W_dec) + sae.b_dec
            sae_out = sae._normalize_out(sae._hook("hook_sae_recons", recons))
        else:
            if norm is not None:
                hidden_pre = hidden_pre * norm
            top = torch.topk(hidden_pre, k=sae.cfg.k, dim=-1, sorted=False)
            acts = torch.zeros_like(hidden_pre).scatter(-1, top.indices, top.values.relu())
    elif arch == "jumprelu":
        threshold = sae.threshold.to(hidden_pre.dtype)
        acts = _JumpReLU.apply(hidden_pre, threshold, cfg.jumprelu_bandwidth)
    else:
        acts = torch.relu(hidden_pre)
    if sae_out is None:
        acts = sae._hook("hook_sae_acts_post", acts)
        sae_out = sae.decode(acts)
    target = x.to(sae_out.dtype)
    losses["mse_loss"] = (sae_out - target).pow(2).sum(-1).mean()
    if arch == "standard":
        weighted = acts * sae.W_dec.norm(dim=1)
        losses["l1_loss"] = (coefficients["l1"] * weighted.norm(p=cfg.lp_norm, dim=-1)).mean()
    elif arch == "topk":
        losses["auxiliary_reconstruction_loss"] = _topk_aux_loss(
            sae, target, sae_out, raw_pre, dead_mask, cfg.aux_loss_coefficient
        )
    else:
        threshold = sae.threshold.to(hidden_pre.dtype)
        l0 = _Step.apply(hidden_pre, threshold, cfg.jumprelu_bandwidth).sum(-1)
        losses["l0_loss"] = (coefficients["l0"] * l0).mean()
        if cfg.pre_act_loss_coefficient is not None and dead_mask is not None and dead_mask.any():
            per_item = ((threshold - hidden_pre).relu() * dead_mask * sae.W_dec.norm(dim=1)).sum(-1)
            losses["pre_act_loss"] = cfg.pre_act_loss_coefficient * per_item.mean()
    loss = sum(losses.values())
    return StepOutput(target, sae_out, hidden_pre, loss, losses, acts, indices, values)
