"""Per-module forward time and activation memory, for any `nn.Module`.

A forward pre-hook and a forward hook go on every submodule (nothing is matched by name,
so any architecture works): the pre-hook starts a clock, the hook stops it and measures
the module's output. Calls nest, so each module's *self* time is its time minus its
children's. Modules that return their input unchanged (identities) are left out of the
table unless asked for. On CUDA, the clock synchronizes the device and the memory column
also reports the allocator's growth during the call.

    profile = profile_model(model, tokens)
    print(profile.table())           # or profile.rows: a list of dicts
    profile.figure().to_html("profile.html")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lookingglass.errors import InputError

COLUMNS = (
    "module",
    "type",
    "depth",
    "calls",
    "time_ms",
    "self_ms",
    "output_bytes",
    "cuda_alloc_bytes",
    "params",
)


@dataclass
class ModelProfile:
    """Rows (one dict per module, in the order modules were first called) with the keys
    `COLUMNS`; times are totals over `repeats` calls of the model, in milliseconds.
    `output` (not stored with a logged run) is what the profiled call returned."""

    rows: list[dict[str, Any]]
    total_ms: float
    repeats: int
    device: str
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def table(
        self, sort: str | None = None, top: int | None = None, max_depth: int | None = None
    ) -> str:
        """The rows as an aligned text table, in call order or sorted by a column
        (descending), optionally only the first `top` rows or modules up to `max_depth`."""
        rows = [r for r in self.rows if max_depth is None or r["depth"] <= max_depth]
        if sort is not None:
            if sort not in COLUMNS:
                raise InputError(f"sort must be one of {COLUMNS}, got {sort!r}.")
            rows = sorted(
                rows, key=lambda r: -r[sort] if isinstance(r[sort], int | float) else r[sort]
            )
        rows = rows[:top] if top else rows
        header = [
            "module",
            "type",
            "calls",
            "time ms",
            "self ms",
            "% total",
            "activations",
            "params",
        ]
        lines = [
            [
                ("  " * r["depth"] if sort is None else "") + r["module"],
                r["type"],
                str(r["calls"]),
                f"{r['time_ms']:.3f}",
                f"{r['self_ms']:.3f}",
                f"{100 * r['self_ms'] / self.total_ms:.1f}" if self.total_ms else "-",
                _bytes(r["output_bytes"]),
                f"{r['params']:,}",
            ]
            for r in rows
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]

        def fmt(cells: list[str]) -> str:
            pairs = enumerate(zip(cells, widths, strict=True))
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs)

        title = f"{self.model} on {self.device}: {self.total_ms:.3f} ms over {self.repeats} call(s)"
        return "\n".join(
            [title, fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines]
        )

    def figure(self, top: int = 20):
        """A plot of the modules with most self time and most activation memory."""
        from lookingglass.plot import model_profile

        return model_profile(self, top=top, title=f"Profile of {self.model} ({self.device})")

    def __str__(self) -> str:
        return self.table()


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _tensor_bytes(value: Any, seen: set[int]) -> int:
    """Bytes of the distinct tensors in a (nested) module output."""
    if isinstance(value, torch.Tensor):
        key = id(value)
        if key in seen:
            return 0
        seen.add(key)
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v, seen) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v, seen) for v in value)
    return 0


class Profiler:
    """Hooks on every submodule of `model` while inside `with Profiler(model) as p:`;
    `p.result()` is the `ModelProfile`."""

    def __init__(self, model: nn.Module, keep_identity: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"profile_model needs an nn.Module, got {type(model).__name__}.")
        self.model = model
        self.keep_identity = keep_identity
        first = next(model.parameters(), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.cuda = self.device.type == "cuda"
        self.stats: dict[str, dict[str, Any]] = {}
        self.stack: list[list] = []
        self.handles: list[Any] = []
        self.total = 0.0
        self.repeats = 0

    def _clock(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _pre(self, name: str) -> Callable:
        def pre_hook(module: nn.Module, args: Any) -> None:
            memory = torch.cuda.memory_allocated(self.device) if self.cuda else 0
            self.stack.append([name, self._clock(), 0.0, memory, args])

        return pre_hook

    def _post(self, name: str, module: nn.Module) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            end = self._clock()
            frame = self.stack.pop()
            elapsed = end - frame[1]
            if self.stack:
                self.stack[-1][2] += elapsed
            row = self.stats.setdefault(
                name,
                {
                    "module": name or "(model)",
                    "type": type(module).__name__,
                    "depth": 0 if not name else name.count(".") + 1,
                    "calls": 0,
                    "time_ms": 0.0,
                    "self_ms": 0.0,
                    "output_bytes": 0,
                    "cuda_alloc_bytes": 0,
                    "params": sum(p.numel() for p in module.parameters()),
                    "identity": True,
                },
            )
            row["calls"] += 1
            row["time_ms"] += 1000 * elapsed
            row["self_ms"] += 1000 * (elapsed - frame[2])
            row["output_bytes"] += _tensor_bytes(output, set())
            if self.cuda:
                row["cuda_alloc_bytes"] += torch.cuda.memory_allocated(self.device) - frame[3]
            inputs = frame[4] if isinstance(frame[4], tuple) else (frame[4],)
            row["identity"] &= any(output is a for a in inputs)

        return hook

    def __enter__(self) -> Profiler:
        for name, module in self.model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._pre(name)))
            self.handles.append(module.register_forward_hook(self._post(name, module)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.stack.clear()

    def timed(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` once, adding its wall time to the total."""
        start = self._clock()
        output = fn()
        self.total += self._clock() - start
        self.repeats += 1
        return output

    def result(self) -> ModelProfile:
        """The profile of everything run so far. A left-out identity module's time is
        counted in its parent's self time, so self times still add up to the total."""
        stats = {name: dict(row) for name, row in self.stats.items()}
        for name, row in list(stats.items()):
            if row["identity"] and not self.keep_identity and row["depth"] > 0:
                parent = stats.get(name.rsplit(".", 1)[0] if "." in name else "")
                if parent is not None:
                    parent["self_ms"] += row["time_ms"]
                del stats[name]
        rows = [{k: v for k, v in row.items() if k != "identity"} for row in stats.values()]
        cfg = getattr(self.model, "cfg", None)
        name = getattr(cfg, "model_name", None) or type(self.model).__name__
        return ModelProfile(rows, 1000 * self.total, self.repeats, str(self.device), name)


@torch.no_grad()
def profile_model(
    model: nn.Module,
    *inputs: Any,
    repeats: int = 1,
    warmup: int = 1,
    keep_identity: bool = False,
    **forward_kwargs: Any,
) -> ModelProfile:
    """Profile `model(*inputs, **forward_kwargs)`: per-module time and activation memory.

    Args:
        model: any `nn.Module`.
        inputs, forward_kwargs: what to call it with.
        repeats: timed calls (times are summed over them).
        warmup: untimed calls first (allocator and kernel caches).
        keep_identity: also list modules that return their input unchanged.

    Returns:
        A `ModelProfile`; its `output` is the last call's output.
    """
    for _ in range(warmup):
        model(*inputs, **forward_kwargs)
    with Profiler(model, keep_identity) as profiler:
        output = None
        for _ in range(repeats):
            output = profiler.timed(lambda: model(*inputs, **forward_kwargs))
    profile = profiler.result()
    profile.output = output
    return profile


def profiled_experiment(
    bench: Any, fn: Callable, keep_identity: bool = False, name: str | None = None
):
    """The `Experiment` behind `@bench.profile_model`: profiles `bench.model` while `fn`
    runs and logs the profile (kind "profile")."""
    import functools

    from lookingglass.bench.experiment import Experiment

    @functools.wraps(fn)
    def profiled(*args: Any, **kwargs: Any) -> ModelProfile:
        if bench.model is None:
            raise InputError("@bench.profile_model needs a bench with a model.")
        with Profiler(bench.model, keep_identity) as profiler:
            output = profiler.timed(lambda: fn(*args, **kwargs))
        profile = profiler.result()
        profile.output = output
        return profile

    return Experiment(profiled, lambda: bench.store, lambda: bench.model, name=name, kind="profile")
