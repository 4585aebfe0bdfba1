"""`harvest`: run a model over token rows and write the requested hooks' activations to shards.

Work is split by shard, not by batch: rank `r` of `N` writes shards `k % N == r`, and shard
`k` always holds the same rows computed in the same batches, so the files are the same
bytes for any `N` (and for a run resumed after a kill). Launch several ranks with
`torchrun --nproc_per_node N -m lookingglass.cli harvest ...` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from lookingglass.errors import InputError, LookingGlassError
from lookingglass.harvest.data import HarvestData, load_rows
from lookingglass.harvest.manifest import (
    FORMAT,
    MANIFEST,
    HarvestError,
    check_same_settings,
    read_manifest,
    weights_sha256,
    write_manifest,
)
from lookingglass.harvest.shards import ShardPlan, commit_shard, committed_entry, shard_permutation

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Hooks without one position axis at dim 1 (per query/key pair): not per-token records.
_PAIR_HOOKS = ("hook_attn_scores", "hook_pattern")
# Testing crash recovery: sleep this long after each commit so a test can kill mid-run.
_DELAY_ENV = "LOOKINGGLASS_HARVEST_TEST_DELAY_S"


def _check_args(out: Path, seq_len: int, batch_size: int, shard_tokens: int, max_tokens) -> None:
    for name, value in (
        ("seq_len", seq_len),
        ("batch_size", batch_size),
        ("shard_tokens", shard_tokens),
    ):
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if seq_len < 2:
        raise InputError("--seq-len must be at least 2 (BOS and one token)")
    if shard_tokens < seq_len:
        raise InputError(
            f"--shard-tokens {shard_tokens} is less than one row of --seq-len {seq_len}"
        )
    if max_tokens is not None and max_tokens < seq_len:
        raise InputError(f"--max-tokens {max_tokens} is less than one row of --seq-len {seq_len}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(
            f"--out {out} is not empty and holds no {MANIFEST}; pass a new or empty folder "
            "(or a harvest folder to resume)"
        )


def _resolve_hooks(model: Any, hooks: list[str]) -> list[str]:
    if not hooks:
        raise InputError("pass at least one hook name (--hooks blocks.0.hook_resid_post ...)")
    names: list[str] = []
    for hook in hooks:
        if hook.endswith(_PAIR_HOOKS):
            raise InputError(
                f"{hook} holds one value per (query, key) pair, not per token; harvest "
                "per-token hooks (hook_resid_*, hook_z, mlp.hook_post, ...)"
            )
        for name in model.resolve_hook_names(hook):  # HookError names close matches
            if name not in names:
                names.append(name)
    return names


def _forward_kwargs(model: Any, hooks: list[str]) -> dict:
    """Stop after the last block a hook needs; skip the unembedding unless hooked."""
    if any(name.startswith(("ln_final.", "unembed.")) for name in hooks):
        return {"return_type": "logits"}
    layers = [int(m.group(1)) for n in hooks if (m := re.match(r"blocks\.(\d+)\.", n))]
    return {"stop_at_layer": max(layers, default=-1) + 1}


def _run_batch(model: Any, tokens: Tensor, hooks: list[str], kwargs: dict) -> dict[str, Tensor]:
    with torch.inference_mode():
        _, cache = model.run_with_cache(
            tokens, names_filter=hooks, return_cache_object=False, **kwargs
        )
    return cache


def _distributed() -> tuple[int, int, bool]:
    """(rank, world_size, whether we initialized the process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _default_device(world: int) -> str:
    """This rank's GPU (LOCAL_RANK under torchrun) if there is one, else the CPU."""
    if not torch.cuda.is_available():
        return "cpu"
    return (
        f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) if world > 1 else torch.cuda.current_device()}"
    )


def _load_model(model: Any, dtype: torch.dtype, device: str) -> Any:
    if not isinstance(model, (str, Path)):
        return model
    from lookingglass import HookedTransformer

    return HookedTransformer.from_pretrained(str(model), dtype=dtype, device=device)


def _shard_tensors(
    model: Any,
    data: HarvestData,
    rows: range,
    hooks: list[str],
    kwargs: dict,
    batch_size: int,
    dtype: torch.dtype,
    device: str,
    seed: int,
    k: int,
    bar: Any,
) -> dict[str, Tensor]:
    """Records of one shard: index tensors and per-hook activations, in shuffled order."""
    seq_len = data.rows.shape[1]
    parts: dict[str, list[Tensor]] = {name: [] for name in hooks}
    for start in range(rows.start, rows.stop, batch_size):
        tokens = data.rows[start : min(start + batch_size, rows.stop)]
        cache = _run_batch(model, tokens.to(device), hooks, kwargs)
        for name in hooks:
            act = cache[name]
            parts[name].append(act.reshape(-1, *act.shape[2:]).to("cpu", dtype))
        if bar is not None:
            bar.update(tokens.numel())
    order = shard_permutation(seed, k, len(rows) * seq_len)
    row_ids = torch.arange(rows.start, rows.stop).repeat_interleave(seq_len)
    tensors = {
        "tokens": data.rows[rows.start : rows.stop].reshape(-1)[order],
        "row": row_ids[order],
        "pos": torch.arange(seq_len).repeat(len(rows))[order],
    }
    for name in hooks:
        tensors[name] = torch.cat(parts.pop(name))[order]
    return tensors


def harvest(
    model: Any,
    hooks: list[str],
    data: str,
    out: str | Path,
    seq_len: int = 128,
    batch_size: int = 8,
    max_tokens: int | None = None,
    shard_tokens: int = 65536,
    seed: int = 0,
    dtype: str = "float32",
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Harvest the activations of `hooks` over `data` into shards in `out`; resume if begun.

    Args:
        model: a model name or folder for `HookedTransformer.from_pretrained`, or a model.
        hooks: hook names (`blocks.3.hook_resid_post`, ...), each cached per token.
        data: a .txt file (one document per line), a .jsonl file ('text' fields), or
            `corpus:kjv` (the shipped corpus), packed into rows of `seq_len` tokens.
        out: the harvest folder (new, empty, or an earlier run's to resume).
        seq_len, batch_size: row length (BOS included) and rows per forward pass.
        max_tokens: harvest only the first `max_tokens // seq_len` rows.
        shard_tokens: tokens per shard (rounded down to whole rows).
        seed: seeds each shard's record order.
        dtype: the model's and the stored activations' dtype.
        device: where the model runs (default: this rank's GPU if any, else CPU).
        progress: show a progress bar with tokens/s (rank 0).

    Returns:
        The final manifest (also in `out/manifest.json`).

    Raises:
        InputError: bad arguments, unknown hooks, empty data, or an `out` that is a file,
            a non-empty non-harvest folder, or a harvest with other settings.
    """
    out = Path(out).expanduser().absolute()
    _check_args(out, seq_len, batch_size, shard_tokens, max_tokens)
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r} is not one of {sorted(DTYPES)}")
    rank, world, owns_group = _distributed()
    try:
        device = device or _default_device(world)
        model = _load_model(model, DTYPES[dtype], device)
        hooks = _resolve_hooks(model, list(hooks))
        if seq_len > model.cfg.n_ctx:
            raise InputError(
                f"--seq-len {seq_len} exceeds the model's context n_ctx={model.cfg.n_ctx}"
            )
        rows = load_rows(data, model.tokenizer, seq_len, max_tokens)
        kwargs = _forward_kwargs(model, hooks)
        # Shapes per token do not depend on the length: probe with two tokens of one row.
        probe = _run_batch(model, rows.rows[:1, :2].to(device), hooks, kwargs)
        plan = ShardPlan(len(rows.rows), max(1, shard_tokens // seq_len))
        settings = {
            "format": FORMAT,
            "model": {
                "name": str(getattr(model.cfg, "model_name", "")),
                "n_layers": model.cfg.n_layers,
                "d_model": model.cfg.d_model,
                "d_vocab": model.cfg.d_vocab,
                # Only rank 0 writes the manifest; hashing costs ~1 s per 100M parameters.
                "weights_sha256": weights_sha256(model) if rank == 0 else "",
            },
            "hooks": {n: list(probe[n].shape[2:]) for n in hooks},
            "dtype": dtype,
            "seq_len": seq_len,
            "batch_size": batch_size,
            "rows_per_shard": plan.rows_per_shard,
            "n_rows": plan.n_rows,
            "n_tokens": plan.n_rows * seq_len,
            "n_shards": plan.n_shards,
            "seed": seed,
            "data": {
                "source": rows.source,
                "source_sha256": rows.source_sha256,
                "tokens_sha256": rows.tokens_sha256,
            },
            "record_keys": {"tokens": "token id", "row": "data row", "pos": "position in row"},
            "complete": False,
            "shards": [],
        }
        _on_rank0(rank, world, lambda: _prepare(out, settings))
        _harvest_shards(
            model,
            rows,
            plan,
            hooks,
            kwargs,
            batch_size,
            DTYPES[dtype],
            device,
            seed,
            out,
            rank,
            world,
            progress,
        )
        _barrier(world)
        _on_rank0(rank, world, lambda: _finish(out, settings, plan))
        return read_manifest(out)
    finally:
        if owns_group:
            dist.destroy_process_group()


def _on_rank0(rank: int, world: int, work: Callable[[], None]) -> None:
    """Run `work` on rank 0; every rank raises if it failed (none waits forever)."""
    error: Exception | None = None
    if rank == 0:
        try:
            work()
        except LookingGlassError as caught:
            error = caught
    if world > 1:
        box = [None if error is None else str(error)]
        dist.broadcast_object_list(box, src=0)
        if error is None and box[0] is not None:
            raise HarvestError(f"rank 0 stopped: {box[0]}")
    if error is not None:
        raise error


def _finish(out: Path, settings: dict, plan: ShardPlan) -> None:
    """Write the final manifest once every shard is committed."""
    entries = [committed_entry(out, k, verify=False) for k in range(plan.n_shards)]
    missing = [k for k, e in enumerate(entries) if e is None]
    if missing:
        raise HarvestError(f"shards {missing} were not committed; rerun to resume")
    settings.update(complete=True, shards=entries)
    write_manifest(out, settings)


def _prepare(out: Path, settings: dict) -> None:
    """Create `out`, check a resumed run's settings, drop temporary files of a killed run."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).is_file():
        check_same_settings(read_manifest(out), settings, out)
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    if not (out / MANIFEST).is_file() or not read_manifest(out).get("complete"):
        write_manifest(out, settings)


def _harvest_shards(
    model, rows, plan, hooks, kwargs, batch_size, dtype, device, seed, out, rank, world, progress
) -> None:
    todo = [k for k in plan.for_rank(rank, world) if committed_entry(out, k) is None]
    n_tokens = sum(len(plan.rows(k)) for k in todo) * rows.rows.shape[1]
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(
            total=n_tokens,
            unit="tok",
            unit_scale=True,
            desc=f"harvest rank 0/{world}",
            file=sys.stderr,
        )
    delay = float(os.environ.get(_DELAY_ENV, "0"))
    start = time.perf_counter()

    def commit(k: int, tensors: dict[str, Tensor]) -> None:
        r = plan.rows(k)
        meta = {
            "shard": str(k),
            "row_start": str(r.start),
            "row_stop": str(r.stop),
            "seed": str(seed),
        }
        commit_shard(out, k, tensors, meta)
        print(f"harvest: committed shard {k}", flush=True)
        if delay:
            time.sleep(delay)

    # One writer thread: shard k is written while shard k + world is computed.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future | None = None
        for k in todo:
            tensors = _shard_tensors(
                model, rows, plan.rows(k), hooks, kwargs, batch_size, dtype, device, seed, k, bar
            )
            if pending is not None:
                pending.result()
            pending = writer.submit(commit, k, tensors)
        if pending is not None:
            pending.result()
    if bar is not None:
        bar.close()
        seconds = time.perf_counter() - start
        print(
            f"harvest: rank 0 wrote {n_tokens} tokens in {seconds:.1f} s "
            f"({n_tokens / max(seconds, 1e-9):,.0f} tokens/s)",
            file=sys.stderr,
        )
