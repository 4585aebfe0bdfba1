"""`FeatureActivations`: every latent's activations over a set of token rows, kept
sparse, and the per-feature views read from them (top contexts, quantile groups,
histogram, firing frequency).

Built from a model and token rows (`from_model`: the SAE runs on the hook's activations,
computed with `run_with_cache`), or from a `lookingglass harvest` folder (`from_harvest`:
the stored activations and their token ids, no model needed). Only non-zero activations
are stored (token index, latent, value), so a top-k SAE over N tokens costs ~12 k N bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.sae.sae import SAE


@dataclass
class Context:
    """One window of text around a token where a feature fired."""

    row: int
    pos: int
    value: float
    token_ids: list[int]
    values: list[float]
    target: int  # index of (row, pos) within the window


class FeatureActivations:
    """Sparse latent activations over `rows` ([n_rows, seq_len] token ids).

    Attributes:
        rows: the token ids.
        token, feature, value: one entry per non-zero activation (`token` indexes the
            flattened rows: row * seq_len + pos).
    """

    def __init__(
        self, rows: Tensor, token: Tensor, feature: Tensor, value: Tensor, d_sae: int
    ) -> None:
        self.rows, self.d_sae = rows, d_sae
        order = torch.argsort(feature, stable=True)
        self.token, self.feature, self.value = token[order], feature[order], value[order]
        counts = torch.bincount(self.feature, minlength=d_sae)
        self._start = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])

    @property
    def n_tokens(self) -> int:
        return self.rows.numel()

    # ------------------------------------------------------------------ building
    @classmethod
    @torch.no_grad()
    def from_model(
        cls,
        model: Any,
        sae: SAE,
        rows: Int[Tensor, "n_rows seq_len"],
        batch_size: int = 8,
        skip_positions: tuple[int, ...] = (0,),
    ) -> FeatureActivations:
        """Run `model` over `rows` and encode the SAE's hook with `sae` (positions in
        `skip_positions`, the BOS by default, are left out)."""
        from lookingglass.harvest.run import _forward_kwargs

        hook = sae.cfg.hook_name
        kwargs = _forward_kwargs(model, [hook])
        device = next(model.parameters()).device
        parts = []
        for start in range(0, len(rows), batch_size):
            tokens = rows[start : start + batch_size]
            _, cache = model.run_with_cache(
                tokens.to(device), names_filter=[hook], return_cache_object=False, **kwargs
            )
            acts = sae.encode(cache[hook].to(sae.device)).float().cpu()
            acts[:, list(skip_positions)] = 0
            parts.append(_sparse(acts.reshape(-1, acts.shape[-1]), start * rows.shape[1]))
        return cls(rows, *_cat(parts), sae.cfg.d_sae)

    @classmethod
    @torch.no_grad()
    def from_harvest(
        cls, folder: str | Path, sae: SAE, max_shards: int | None = None, skip_pos0: bool = True
    ) -> FeatureActivations:
        """Encode a harvest folder's stored activations of the SAE's hook."""
        from lookingglass.harvest.manifest import read_manifest
        from lookingglass.harvest.shards import committed_entry, read_shard

        manifest = read_manifest(folder)
        hook = sae.cfg.hook_name
        if hook not in manifest["hooks"]:
            raise InputError(f"{folder} holds no {hook}; it has {sorted(manifest['hooks'])}")
        entries = [
            committed_entry(Path(folder), k, verify=False) for k in range(manifest["n_shards"])
        ]
        entries = [e for e in entries if e is not None][:max_shards]
        seq_len = manifest["seq_len"]
        row_stop = max(e["rows"][1] for e in entries)
        rows = torch.zeros(row_stop, seq_len, dtype=torch.long)
        parts = []
        for entry in entries:
            shard = read_shard(Path(folder) / entry["file"])
            rows[shard["row"], shard["pos"]] = shard["tokens"]
            acts = sae.encode(shard[hook].to(sae.device, sae.dtype)).float().cpu()
            if skip_pos0:
                acts[shard["pos"] == 0] = 0
            flat = shard["row"] * seq_len + shard["pos"]
            nz = acts.nonzero(as_tuple=True)
            parts.append((flat[nz[0]], nz[1], acts[nz]))
        kept = torch.zeros(row_stop, dtype=torch.bool)
        for entry in entries:
            kept[entry["rows"][0] : entry["rows"][1]] = True
        if not kept.all():  # rows of missing shards: renumber the kept rows densely
            new = torch.cumsum(kept, 0) - 1
            token, feature, value = _cat(parts)
            token = new[token // seq_len] * seq_len + token % seq_len
            return cls(rows[kept], token, feature, value, sae.cfg.d_sae)
        return cls(rows, *_cat(parts), sae.cfg.d_sae)

    # ------------------------------------------------------------------ per feature
    def _entries(self, f: int) -> tuple[Tensor, Tensor]:
        if not 0 <= f < self.d_sae:
            raise InputError(f"feature {f} is out of range [0, {self.d_sae})")
        a, b = int(self._start[f]), int(self._start[f + 1])
        return self.token[a:b], self.value[a:b]

    def density(self) -> Tensor:
        """Fraction of tokens each latent fires on [d_sae]."""
        return (self._start[1:] - self._start[:-1]).float() / self.n_tokens

    def max_activation(self, f: int) -> float:
        _, values = self._entries(f)
        return float(values.max()) if len(values) else 0.0

    def histogram(self, f: int, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
        """(bin centres, counts) of feature `f`'s non-zero activations."""
        _, values = self._entries(f)
        if len(values) == 0:
            return np.zeros(0), np.zeros(0)
        counts, edges = np.histogram(values.numpy(), bins=bins)
        return (edges[:-1] + edges[1:]) / 2, counts

    def _context(self, token: int, value: float, f: int, left: int, right: int) -> Context:
        seq_len = self.rows.shape[1]
        row, pos = divmod(int(token), seq_len)
        lo, hi = max(0, pos - left), min(seq_len, pos + right + 1)
        ids = self.rows[row, lo:hi].tolist()
        acts = np.zeros(hi - lo, dtype=np.float32)
        tokens, values = self._entries(f)
        in_row = (tokens >= row * seq_len + lo) & (tokens < row * seq_len + hi)
        acts[(tokens[in_row] - row * seq_len - lo).numpy()] = values[in_row].numpy()
        return Context(row, pos, float(value), ids, acts.tolist(), pos - lo)

    def top_contexts(self, f: int, n: int = 20, left: int = 12, right: int = 4) -> list[Context]:
        """The `n` tokens where feature `f` is largest, with `left`/`right` tokens around."""
        tokens, values = self._entries(f)
        top = torch.topk(values, min(n, len(values)))
        return [
            self._context(tokens[i], v, f, left, right)
            for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]

    def quantile_contexts(
        self,
        f: int,
        n_groups: int = 5,
        per_group: int = 5,
        left: int = 12,
        right: int = 4,
        seed: int = 0,
    ) -> list[tuple[float, float, float, list[Context]]]:
        """SAEDashboard's interval groups: (0, max] cut into `n_groups` equal intervals;
        per interval (low, high, fraction of the feature's activations in it, up to
        `per_group` contexts drawn at random from it)."""
        tokens, values = self._entries(f)
        if len(values) == 0:
            return []
        gen = torch.Generator().manual_seed(seed)
        top = float(values.max())
        edges = torch.linspace(0, top, n_groups + 1)
        groups = []
        for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            inside = ((values > lo) & (values <= hi)).nonzero().flatten()
            pick = inside[torch.randperm(len(inside), generator=gen)[:per_group]]
            contexts = [self._context(tokens[i], values[i], f, left, right) for i in pick.tolist()]
            contexts.sort(key=lambda c: -c.value)
            groups.append((lo, hi, len(inside) / len(values), contexts))
        return groups[::-1]


def _sparse(acts: Tensor, offset: int) -> tuple[Tensor, Tensor, Tensor]:
    nz = acts.nonzero(as_tuple=True)
    return nz[0] + offset, nz[1], acts[nz]


def _cat(parts: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    if not parts:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0)
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


@torch.no_grad()
def feature_logits(model: Any, sae: SAE, f: int, k: int = 10) -> tuple[list, list]:
    """Feature `f`'s direct effect on the logits, W_dec[f] @ W_U (as SAEDashboard): the
    `k` most promoted and most suppressed tokens as [(token string, value)]."""
    effect = sae.W_dec[f].to(model.W_U.dtype) @ model.W_U
    top, bottom = torch.topk(effect, k), torch.topk(-effect, k)
    word = model.to_single_str_token if hasattr(model, "to_single_str_token") else str
    return (
        [(word(int(i)), float(v)) for v, i in zip(top.values, top.indices, strict=True)],
        [(word(int(i)), -float(v)) for v, i in zip(bottom.values, bottom.indices, strict=True)],
    )
