"""Shared benchmark helpers: interleaved timing, memory measurement, peer model builders.

Timings are taken round-robin (op A, op B, ..., op A, op B, ...) in one process so slow
drift of the machine hits every op alike; medians are reported.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved_medians(
    ops: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median wall seconds per op, timing the ops round-robin `repeats` times."""
    return {name: t["wall"] for name, t in interleaved_timings(ops, repeats, warmup).items()}


def interleaved_timings(
    ops: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, dict[str, float]]:
    """Median seconds per op, round-robin `repeats` times: `wall`, and the process's
    `user` and `sys` CPU time (every thread). On this project's VM, writing memory the
    process has not touched before costs kernel time (several seconds per GB, and
    erratic), so an op that allocates much, such as a full cache, can be slow in wall
    time while its own computation is not; `user` separates the two."""
    for _ in range(warmup):
        for op in ops.values():
            op()
    times: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "user": [], "sys": []} for name in ops
    }
    for _ in range(repeats):
        for name, op in ops.items():
            gc.collect()
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            op()
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            times[name]["wall"].append(wall)
            times[name]["user"].append(after.ru_utime - before.ru_utime)
            times[name]["sys"].append(after.ru_stime - before.ru_stime)
    return {
        name: {kind: statistics.median(values) for kind, values in kinds.items()}
        for name, kinds in times.items()
    }


def tensor_bytes(tensors) -> int:
    """Total bytes held by a collection of tensors."""
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_rss_of(code: str, env: dict | None = None) -> dict:
    """Run `code` in a fresh Python process; it must print one JSON line, to which the
    process's peak RSS (bytes) before and after is added by the snippet itself."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def maxrss_bytes() -> int:
    """This process's peak resident set size so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_tl_from_folder(folder: Path, hf_model, **processing):
    """TransformerLens 3.x `HookedTransformer` from a local Hugging Face folder, offline.
    (TransformerLens guesses some architectures from the path: keep folder names neutral.)"""
    from transformer_lens import HookedTransformer as TLHookedTransformer
    from transformer_lens import loading_from_pretrained as lp

    fold_ln = processing.get("fold_ln", False)
    cfg = lp.get_pretrained_model_config(
        str(folder), hf_cfg=hf_model.config.to_dict(), fold_ln=fold_ln
    )
    state_dict = lp.get_pretrained_state_dict(str(folder), cfg, hf_model)
    cfg.tokenizer_name = None  # the benchmark feeds token ids; no tokenizer in the folder
    model = TLHookedTransformer(cfg, None, move_to_device=False)
    model.load_and_process_state_dict(
        state_dict,
        **{
            "fold_ln": False,
            "center_writing_weights": False,
            "center_unembed": False,
            "fold_value_biases": False,
            "refactor_factored_attn_matrices": False,
            **processing,
        },
    )
    return model.eval()


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """A GitHub-markdown table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def set_threads() -> None:
    """Use every core, the same for every library in the run."""
    torch.set_num_threads(os.cpu_count() or 1)


def load_average() -> float:
    """The machine's 1-minute load average (other jobs on the same cores slow every op)."""
    return round(os.getloadavg()[0], 2)


def wait_for_quiet(max_load: float, max_wait_s: float) -> float:
    """Wait (up to `max_wait_s`) until the 1-minute load average is at most `max_load`, so
    timings are taken when the shared machine is quietest; returns the load at the start."""
    deadline = time.monotonic() + max_wait_s
    while load_average() > max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load_average()
