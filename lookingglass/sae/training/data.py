"""Where training activations come from: harvested shards, or the model live.

Both yield *global* batches as `{hook_name: [batch_size, d]}` dicts; the trainer keeps
its rank's slice, so N ranks see exactly the batches one process sees (the basis of the
DDP equivalence test). Token position 0 (the BOS, whose residual norm is an outlier in
most models) is left out unless `include_bos=True`.

- `ShardActivations(folder, hooks)`: streams a `lookingglass harvest` folder. Shards are
  read in a seeded order per epoch (their records are already shuffled on write), and
  records are mixed across `mix_shards` shards at a time.
- `LiveActivations(model, hooks, rows)`: runs the model over token rows (caching only the
  hooks, stopping after the last needed block) and mixes `mix_batches` forward passes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.harvest.manifest import read_manifest
from lookingglass.harvest.run import _forward_kwargs, _run_batch
from lookingglass.harvest.shards import committed_entry, read_shard


def _generator(seed: int, *parts: object) -> torch.Generator:
    digest = hashlib.sha256(":".join(map(str, ("lookingglass-sae", seed, *parts))).encode())
    return torch.Generator().manual_seed(int.from_bytes(digest.digest()[:8], "little") >> 1)


def _batches(
    pool: dict[str, Tensor], batch_size: int, carry: dict[str, Tensor] | None
) -> tuple[list[dict[str, Tensor]], dict[str, Tensor] | None]:
    """Cut `carry` + `pool` into full batches; return them and the remainder."""
    if carry is not None:
        pool = {k: torch.cat([carry[k], v]) for k, v in pool.items()}
    n = next(iter(pool.values())).shape[0]
    full = n // batch_size * batch_size
    out = [{k: v[i : i + batch_size] for k, v in pool.items()} for i in range(0, full, batch_size)]
    rest = {k: v[full:] for k, v in pool.items()} if full < n else None
    return out, rest


class ShardActivations:
    """Batches of harvested activations from a `lookingglass harvest` folder.

    Args:
        folder: the harvest's `--out` folder (must be complete).
        hooks: hook names to read (each must be in the manifest).
        batch_size: tokens per global batch.
        include_bos: keep records at position 0.
        mix_shards: shards whose records are pooled and shuffled together.
        seed: for the shard order and the mixing.
        epochs: passes over the data (None: forever).
        allow_incomplete: read the shards an unfinished (or still running) harvest has
            committed so far, instead of refusing it.
        max_norm: leave out records whose norm exceeds this (the rare "massive
            activations" of some tokens, thousands of times the typical norm, would
            dominate the MSE); None keeps all.
    """

    def __init__(
        self,
        folder: str | Path,
        hooks: Sequence[str],
        batch_size: int,
        include_bos: bool = False,
        mix_shards: int = 2,
        seed: int = 0,
        epochs: int | None = None,
        dtype: torch.dtype = torch.float32,
        allow_incomplete: bool = False,
        max_norm: float | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if not self.manifest.get("complete"):
            if not allow_incomplete:
                raise InputError(
                    f"{folder} is an unfinished harvest; rerun the harvest to finish it, or "
                    "pass allow_incomplete=True to train on the shards committed so far"
                )
            entries = [committed_entry(self.folder, k) for k in range(self.manifest["n_shards"])]
            self.manifest["shards"] = [e for e in entries if e is not None]
        if not self.manifest["shards"]:
            raise InputError(f"{folder} holds no committed shards yet")
        self.max_norm = max_norm
        missing = [h for h in hooks if h not in self.manifest["hooks"]]
        if missing:
            raise InputError(
                f"{folder} holds no {missing}; it has {sorted(self.manifest['hooks'])}"
            )
        self.hooks, self.batch_size, self.include_bos = list(hooks), batch_size, include_bos
        self.mix_shards, self.seed, self.epochs, self.dtype = mix_shards, seed, epochs, dtype

    @property
    def n_tokens(self) -> int:
        """Tokens in the shards read (before leaving out BOS or outliers)."""
        return sum(int(s["n_tokens"]) for s in self.manifest["shards"])

    def d_in(self, hook: str) -> int:
        return int(torch.Size(self.manifest["hooks"][hook]).numel())

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        shards = [s["file"] for s in self.manifest["shards"]]
        epoch, carry = 0, None
        while self.epochs is None or epoch < self.epochs:
            order = torch.randperm(len(shards), generator=_generator(self.seed, "epoch", epoch))
            for g in range(0, len(shards), self.mix_shards):
                group = [shards[i] for i in order[g : g + self.mix_shards].tolist()]
                pool = self._read(group, epoch, g)
                batches, carry = _batches(pool, self.batch_size, carry)
                yield from batches
            epoch += 1

    def _read(self, files: list[str], epoch: int, group: int) -> dict[str, Tensor]:
        parts = [read_shard(self.folder / f) for f in files]
        keep = []
        for p in parts:
            mask = p["pos"] > (-1 if self.include_bos else 0)
            if self.max_norm is not None:
                for h in self.hooks:
                    mask &= p[h].reshape(mask.shape[0], -1).norm(dim=-1) <= self.max_norm
            keep.append(mask)
        pool = {
            h: torch.cat(
                [
                    p[h][m].reshape(int(p[h][m].shape[0]), -1)
                    for p, m in zip(parts, keep, strict=True)
                ]
            )
            for h in self.hooks
        }
        n = next(iter(pool.values())).shape[0]
        perm = torch.randperm(n, generator=_generator(self.seed, "mix", epoch, group))
        return {h: v[perm].to(self.dtype) for h, v in pool.items()}


class LiveActivations:
    """Batches of activations computed on the fly by `model` over token rows.

    Args:
        model: a `HookedTransformer`.
        hooks: hook names (cached with `names_filter`; the forward stops after the last
            block they need).
        rows: [n_rows, seq_len] token ids (e.g. `lookingglass.harvest.data.load_rows`).
        batch_size: tokens per global batch.
        rows_per_forward: rows per model forward pass.
        mix_batches: forward passes pooled and shuffled together.
        epochs: passes over the rows (None: forever).
    """

    def __init__(
        self,
        model: Any,
        hooks: Sequence[str],
        rows: Int[Tensor, "n_rows seq_len"],
        batch_size: int,
        rows_per_forward: int = 8,
        mix_batches: int = 4,
        include_bos: bool = False,
        seed: int = 0,
        epochs: int | None = None,
    ) -> None:
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise InputError(f"rows must be a non-empty [n_rows, seq_len] tensor, got {rows.shape}")
        self.model, self.rows = model, rows
        self.hooks = [n for h in hooks for n in model.resolve_hook_names(h)]
        self.batch_size, self.rows_per_forward, self.mix = batch_size, rows_per_forward, mix_batches
        self.include_bos, self.seed, self.epochs = include_bos, seed, epochs
        self.kwargs = _forward_kwargs(model, self.hooks)

    def d_in(self, hook: str) -> int:
        """The per-token size of `hook` (from a forward pass on two tokens)."""
        tokens = self.rows[:1, :2].to(self._device())
        return int(_run_batch(self.model, tokens, [hook], self.kwargs)[hook][0, 0].numel())

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        epoch, carry, chunk = 0, None, self.rows_per_forward * self.mix
        start = 0 if self.include_bos else 1
        while self.epochs is None or epoch < self.epochs:
            order = torch.randperm(len(self.rows), generator=_generator(self.seed, "rows", epoch))
            for g in range(0, len(order), chunk):
                parts: dict[str, list[Tensor]] = {h: [] for h in self.hooks}
                idx = order[g : g + chunk]
                for b in range(0, len(idx), self.rows_per_forward):
                    tokens = self.rows[idx[b : b + self.rows_per_forward]].to(self._device())
                    cache = _run_batch(self.model, tokens, self.hooks, self.kwargs)
                    for h in self.hooks:
                        act = cache[h][:, start:]
                        parts[h].append(act.reshape(-1, act[0, 0].numel()).float().cpu())
                pool = {h: torch.cat(v) for h, v in parts.items()}
                n = next(iter(pool.values())).shape[0]
                perm = torch.randperm(n, generator=_generator(self.seed, "mix", epoch, g))
                batches, carry = _batches(
                    {h: v[perm] for h, v in pool.items()}, self.batch_size, carry
                )
                yield from batches
            epoch += 1
