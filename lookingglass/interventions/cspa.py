"""Copy-suppression-preserving ablation (CSPA): how much of a head's effect is copy
suppression (McDougall, Conmy, Rushing, McGrath, Nanda 2023, arXiv 2310.04625).

A copy-suppression head attends from a destination position to earlier copies of the
token the model is about to predict there, and writes the *negative* of that token's
unembedding: it lowers the logit of a token the earlier layers would naively copy.
CSPA deletes everything else the head does and keeps only that. The head's output at
destination q is a sum over source positions k of `pattern[q, k] * out_k`, with
`out_k = v_k @ W_O` the vector the head moves from k. Under CSPA each term becomes

* `pattern[q, k] * proj_neg(out_k)` if the token at k is among the `top_k` tokens that
  the residual stream entering the head's layer predicts at q (the logit lens: final
  norm, W_U, b_U), with k <= q (the query-side condition, "QK ablation"), where
  `proj_neg` keeps only the component of `out_k` along the source token's own
  unembedding direction, and only if it is negative ("OV ablation");
* `pattern[q, k] * mean` otherwise, with `mean` the head's mean output over a dataset,

so that keeping no pair is exactly mean ablation of the head. The measure, as in the
paper: the fraction of the head's effect that CSPA preserves,
`1 - KL(clean || CSPA) / KL(clean || mean-ablated)` with KL averaged over all positions
(the paper: 76.9% for GPT-2 small L10H7 on OpenWebText), and the same with the loss,
`(loss_mean_ablated - loss_CSPA) / (loss_mean_ablated - loss_clean)`.

Choices the paper's text leaves open, made here and adjustable: the top-k predictions
are counted in the vocabulary (default 5% of it, `top_k=None`); the projection is of
`out_k` itself (`project_deviation=True` projects `out_k - mean` and adds `mean`
back, as the authors' own code does); the edited output reaches the logits through the
direct path with the final norm's scale frozen (`path="direct"`, the authors' code) or
through every later layer (`path="full"`). Not implemented: the paper's optional
"semantically similar" tokens (plurals, capitalisation) and its list of function-word
sources that are never kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lookingglass import utils
from lookingglass.errors import InputError
from lookingglass.interventions.ablation import TokenData, dataset_activations
from lookingglass.interventions.direct_effects import _unembed

Path = Literal["direct", "full"]


@dataclass
class CSPAResult:
    """Per-position outcomes of one CSPA run (concatenate batches with `concat`).

    `loss_*` are next-token losses `[batch, pos - 1]`; `kl_*` are `KL(clean || ablated)`
    `[batch, pos]`; `kept_attention` is the share of the head's attention on the pairs
    CSPA keeps, `[batch, pos]`.
    """

    head: tuple[int, int]
    loss_clean: Float[Tensor, "batch pos_minus_1"]
    loss_mean_ablated: Float[Tensor, "batch pos_minus_1"]
    loss_cspa: Float[Tensor, "batch pos_minus_1"]
    kl_mean_ablated: Float[Tensor, "batch pos"]
    kl_cspa: Float[Tensor, "batch pos"]
    kept_attention: Float[Tensor, "batch pos"]

    def kl_fraction(self) -> float:
        """The paper's measure: `1 - mean KL(clean || CSPA) / mean KL(clean || mean-abl.)`."""
        return 1.0 - float(self.kl_cspa.mean() / self.kl_mean_ablated.mean())

    def loss_fraction(self) -> float:
        """Share of mean ablation's loss change that CSPA undoes (1: all, 0: none)."""
        ablated = float(self.loss_mean_ablated.mean() - self.loss_clean.mean())
        return float(self.loss_mean_ablated.mean() - self.loss_cspa.mean()) / ablated

    @classmethod
    def concat(cls, results: list[CSPAResult]) -> CSPAResult:
        """One result from runs on several batches of the same head."""
        if not results:
            raise InputError("CSPAResult.concat needs at least one result.")
        fields = ("loss_clean", "loss_mean_ablated", "loss_cspa", "kl_mean_ablated", "kl_cspa")
        joined = {f: torch.cat([getattr(r, f) for r in results]) for f in fields}
        kept = torch.cat([r.kept_attention for r in results])
        return cls(results[0].head, **joined, kept_attention=kept)

    def summary(self) -> dict[str, float]:
        """The numbers to report, as plain floats."""
        return {
            "loss_clean": float(self.loss_clean.mean()),
            "loss_mean_ablated": float(self.loss_mean_ablated.mean()),
            "loss_cspa": float(self.loss_cspa.mean()),
            "kl_mean_ablated": float(self.kl_mean_ablated.mean()),
            "kl_cspa": float(self.kl_cspa.mean()),
            "kl_fraction": self.kl_fraction(),
            "loss_fraction": self.loss_fraction(),
            "kept_attention": float(self.kept_attention.mean()),
        }


@torch.no_grad()
def head_mean_result(model, head: tuple[int, int], data: TokenData) -> Float[Tensor, " d_model"]:
    """The head's output `z[:, :, h] @ W_O[l, h]` averaged over every row and position
    of `data` (token ids `[batch, pos]` or batches of equal length): the mean-ablation
    value CSPA falls back to."""
    layer, h = _check_head(model, head)
    name = utils.get_act_name("z", layer)
    z_mean = dataset_activations(model, data, [name], mean=True)[name]  # [pos, n_heads, d_head]
    return z_mean[:, h].mean(dim=0) @ model.W_O[layer, h].float()


@torch.no_grad()
def cspa_head_output(
    model,
    tokens: Int[Tensor, "batch pos"],
    head: tuple[int, int],
    mean_result: Float[Tensor, " d_model"],
    cache: dict[str, Tensor],
    top_k: int | None = None,
    project_ov: bool = True,
    restrict_qk: bool = True,
    project_deviation: bool = False,
) -> tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos d_model"], Tensor]:
    """The head's clean output and its CSPA output, from a clean run's `cache` holding
    `blocks.{l}.hook_resid_pre`, `blocks.{l}.attn.hook_pattern` and
    `blocks.{l}.attn.hook_v` (see `cspa_hook_names`).

    `restrict_qk=False` keeps every pair (only the OV projection), `project_ov=False`
    keeps kept pairs unprojected (only the query-side condition); both False gives the
    clean output back. Returns `(clean, cspa, keep)`, keep `[batch, q, k]` boolean.
    """
    layer, h = _check_head(model, head)
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, h].float()  # [batch, q, k]
    v = cache[f"blocks.{layer}.attn.hook_v"]  # [batch, k, n_heads or n_kv_heads, d_head]
    kv_head = h // (model.cfg.n_heads // v.shape[2])
    out = v[:, :, kv_head].float() @ model.W_O[layer, h].float()  # [batch, k, d_model]
    clean = torch.einsum("bqk,bkd->bqd", pattern, out)
    n_pos = tokens.shape[1]
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=pattern.device).tril()
    keep = causal.expand_as(pattern)
    if restrict_qk:
        resid = cache[f"blocks.{layer}.hook_resid_pre"]
        keep = keep & _source_is_predicted(model, resid, tokens, _top_k(model, top_k))
    kept_out = out
    mean = mean_result.float().to(out.device)
    if project_ov:
        direction = model.W_U.float()[:, tokens].permute(1, 2, 0)  # [batch, k, d_model]
        direction = direction / direction.norm(dim=-1, keepdim=True)
        centre = mean if project_deviation else torch.zeros_like(mean)
        coef = ((out - centre) * direction).sum(-1, keepdim=True).clamp(max=0.0)
        kept_out = centre + coef * direction
    kept_pattern = pattern * keep
    cspa = torch.einsum("bqk,bkd->bqd", kept_pattern, kept_out)
    cspa = cspa + (pattern - kept_pattern).sum(-1, keepdim=True) * mean
    return clean, cspa, keep


def cspa_hook_names(model, layer: int) -> list[str]:
    """What `cspa_head_output` reads from a clean run, and what the logits need."""
    final = [f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    scale = [n for n in ("ln_final.hook_scale",) if n in model.hook_dict]
    attn = [f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.attn.hook_v"]
    return [f"blocks.{layer}.hook_resid_pre", *attn, *final, *scale]


@torch.no_grad()
def copy_suppression_preserving_ablation(
    model,
    tokens: Int[Tensor, "batch pos"],
    head: tuple[int, int],
    mean_result: Float[Tensor, " d_model"],
    top_k: int | None = None,
    path: Path = "direct",
    project_ov: bool = True,
    restrict_qk: bool = True,
    project_deviation: bool = False,
    batch_size: int | None = 4,
) -> CSPAResult:
    """Run the model clean, with `head` mean-ablated, and with CSPA (module doc), and
    compare the three on `tokens`.

    Args:
        model: a `HookedTransformer`.
        tokens: token ids `[batch, pos]` (no padding).
        head: `(layer, head)`.
        mean_result: the head's mean output, from `head_mean_result` on reference data.
        top_k: how many of the logit lens's top predictions at a destination count as
            "predicted" (default: 5% of the vocabulary).
        path: "direct": the edited head output reaches the logits only through the
            residual stream, with the final norm's scale frozen at its clean value;
            "full": through every later layer too.
        project_ov, restrict_qk, project_deviation: see `cspa_head_output`.
        batch_size: rows per forward pass (three `[rows, pos, d_vocab]` logits are held
            at once); None: all rows together.

    Returns:
        A `CSPAResult`; `.kl_fraction()` is the paper's fraction of the effect preserved.
    """
    options = dict(top_k=top_k, path=path, project_ov=project_ov, restrict_qk=restrict_qk)
    options["project_deviation"] = project_deviation
    return cspa_variants(model, tokens, head, mean_result, {"cspa": options}, batch_size)["cspa"]


@torch.no_grad()
def cspa_variants(
    model,
    tokens: Int[Tensor, "batch pos"],
    head: tuple[int, int],
    mean_result: Float[Tensor, " d_model"],
    variants: dict[str, dict],
    batch_size: int | None = 4,
) -> dict[str, CSPAResult]:
    """Several CSPA settings for one head from one clean forward pass per batch:
    `variants` maps a name to keyword arguments of `copy_suppression_preserving_ablation`
    (`top_k`, `path`, `project_ov`, `restrict_qk`, `project_deviation`)."""
    tokens = tokens if tokens.dim() == 2 else tokens[None]
    allowed = {"top_k", "path", "project_ov", "restrict_qk", "project_deviation"}
    for name, options in variants.items():
        if set(options) - allowed or options.get("path", "direct") not in ("direct", "full"):
            raise InputError(
                f"variant {name!r}: options must be among {sorted(allowed)} with path "
                f"'direct' or 'full', got {options}."
            )
    _check_head(model, head)
    per_batch = [
        _cspa_batch(model, rows, head, mean_result, variants)
        for rows in tokens.split(batch_size or tokens.shape[0])
    ]
    return {name: CSPAResult.concat([b[name] for b in per_batch]) for name in variants}


def _cspa_batch(model, tokens, head, mean_result, variants) -> dict[str, CSPAResult]:
    """`cspa_variants` on one batch of rows."""
    layer = head[0]
    logits, cache = model.run_with_cache(
        tokens, names_filter=cspa_hook_names(model, layer), return_cache_object=False
    )
    log_clean = logits.float().log_softmax(-1)
    loss_clean = utils.lm_cross_entropy_loss(logits, tokens, per_token=True)
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, head[1]].float()
    mean_ablated: dict[str, tuple[Tensor, Tensor]] = {}  # per path: (loss, KL)
    out = {}
    for name, options in variants.items():
        options = dict(options)
        path = options.pop("path", "direct")
        clean, cspa, keep = cspa_head_output(model, tokens, head, mean_result, cache, **options)
        if path not in mean_ablated:
            mean = mean_result.float().to(clean.device).expand_as(clean)
            ablated = _logits_with_head_output(model, layer, cache, mean - clean, path)
            mean_ablated[path] = _loss_and_kl(ablated, tokens, log_clean)
        edited = _logits_with_head_output(model, layer, cache, cspa - clean, path)
        loss_cspa, kl_cspa = _loss_and_kl(edited, tokens, log_clean)
        out[name] = CSPAResult(
            head=(layer, head[1]),
            loss_clean=loss_clean,
            loss_mean_ablated=mean_ablated[path][0],
            loss_cspa=loss_cspa,
            kl_mean_ablated=mean_ablated[path][1],
            kl_cspa=kl_cspa,
            kept_attention=(pattern * keep).sum(-1),
        )
    return out


def _loss_and_kl(logits: Tensor, tokens: Tensor, log_clean: Tensor) -> tuple[Tensor, Tensor]:
    return utils.lm_cross_entropy_loss(logits, tokens, per_token=True), _kl(log_clean, logits)


def _logits_with_head_output(
    model, layer: int, cache, delta: Float[Tensor, "batch pos d_model"], path: Path
) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits when the head's output changes by `delta`, along the chosen path ("full"
    reruns the model from the head's layer, on the cached residual stream)."""
    if path == "direct":
        resid = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
        scale = cache.get("ln_final.hook_scale")
        return _unembed(model, (resid + delta.to(resid.dtype))[None], scale)

    def add_delta(attn_out: Tensor, hook) -> Tensor:
        return attn_out + delta.to(attn_out.dtype)

    resid_pre = cache[f"blocks.{layer}.hook_resid_pre"]
    with model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_attn_out", add_delta)]):
        return model(resid_pre, start_at_layer=layer)


def _source_is_predicted(
    model, resid: Float[Tensor, "batch pos d_model"], tokens: Int[Tensor, "batch pos"], k: int
) -> Bool[Tensor, "batch q k"]:
    """`[b, q, k]`: is the token at source k among the top `k` logit-lens predictions at
    destination q (read from the residual stream entering the head's layer)?"""
    rows = []
    for b in range(tokens.shape[0]):  # one row at a time: [pos, d_vocab] logits
        lens = model.ln_final(resid[b : b + 1])[0] @ model.W_U + model.b_U
        predicted = torch.zeros_like(lens, dtype=torch.bool)
        predicted.scatter_(-1, lens.topk(k, dim=-1).indices, True)
        rows.append(predicted[:, tokens[b]])  # [q, k]
    return torch.stack(rows)


def _kl(log_clean: Tensor, logits: Tensor) -> Float[Tensor, "batch pos"]:
    """KL(clean || other) per position, in nats."""
    log_other = logits.float().log_softmax(-1)
    return (log_clean.exp() * (log_clean - log_other)).sum(-1)


def _top_k(model, top_k: int | None) -> int:
    k = round(0.05 * model.cfg.d_vocab_out) if top_k is None else top_k
    if not 0 <= k <= model.cfg.d_vocab_out:
        raise InputError(f"top_k must be between 0 and d_vocab_out ({model.cfg.d_vocab_out}).")
    return k


def _check_head(model, head: tuple[int, int]) -> tuple[int, int]:
    layer, h = head
    if not (0 <= layer < model.cfg.n_layers and 0 <= h < model.cfg.n_heads):
        raise InputError(
            f"head {head} is not in this model ({model.cfg.n_layers} layers x "
            f"{model.cfg.n_heads} heads); pass (layer, head) with 0-based indices."
        )
    return layer, h
