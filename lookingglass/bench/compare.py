"""Comparing two runs: arguments, source, environment and results (tensors by their
largest absolute difference)."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lookingglass.bench.store import RunRecord, VersionRecord


@dataclass(frozen=True)
class ValueDiff:
    """One place where two values differ. `path` is like `result["logits"][0]`;
    `max_abs_diff` is set for numbers, tensors and arrays of equal shape."""

    path: str
    a: str
    b: str
    max_abs_diff: float | None = None


@dataclass
class Comparison:
    """What differs between run `a` and run `b` (`Bench.compare`); `str()` is a report."""

    a: RunRecord
    b: RunRecord
    args: list[ValueDiff] = field(default_factory=list)
    result: list[ValueDiff] = field(default_factory=list)
    environment: list[ValueDiff] = field(default_factory=list)
    source_diff: str = ""

    @property
    def same_version(self) -> bool:
        """True if both runs ran the same code."""
        return (self.a.name, self.a.version) == (self.b.name, self.b.version)

    @property
    def identical_results(self) -> bool:
        """True if the results are equal, tensors bit for bit."""
        return not self.result

    def __str__(self) -> str:
        lines = [
            f"run {self.a.run_id} ({self.a.name}@{self.a.version}, {self.a.status}) vs "
            f"run {self.b.run_id} ({self.b.name}@{self.b.version}, {self.b.status})"
        ]
        for title, diffs in (
            ("arguments", self.args),
            ("environment", self.environment),
            ("result", self.result),
        ):
            if not diffs:
                lines.append(f"{title}: identical")
                continue
            lines.append(f"{title}: {len(diffs)} difference(s)")
            for d in diffs:
                extra = "" if d.max_abs_diff is None else f"  (max abs diff {d.max_abs_diff:.6g})"
                lines.append(f"  {d.path}: {d.a}  ->  {d.b}{extra}")
        lines.append(
            "source: identical" if not self.source_diff else "source diff:\n" + self.source_diff
        )
        return "\n".join(lines)


def compare_runs(
    a: RunRecord,
    b: RunRecord,
    args_a: Any,
    args_b: Any,
    result_a: Any,
    result_b: Any,
    version_a: VersionRecord,
    version_b: VersionRecord,
) -> Comparison:
    """Compare two runs whose arguments and results are already decoded."""
    comparison = Comparison(a, b)
    comparison.args = diff_values(args_a, args_b, "args")
    comparison.result = diff_values(result_a, result_b, "result")
    if a.status != b.status or a.error != b.error:
        comparison.result.insert(
            0,
            ValueDiff(
                "status",
                f"{a.status} {a.error or ''}".strip(),
                f"{b.status} {b.error or ''}".strip(),
            ),
        )
    env_a = {
        "model": a.model,
        "seed": a.seed,
        "git": a.environment.get("git"),
        "lookingglass": a.environment.get("lookingglass"),
        "torch": a.environment.get("torch"),
    }
    env_b = {
        "model": b.model,
        "seed": b.seed,
        "git": b.environment.get("git"),
        "lookingglass": b.environment.get("lookingglass"),
        "torch": b.environment.get("torch"),
    }
    comparison.environment = diff_values(env_a, env_b, "env")
    if version_a.version != version_b.version or version_a.name != version_b.name:
        comparison.source_diff = source_diff(version_a, version_b)
    return comparison


def source_diff(a: VersionRecord, b: VersionRecord) -> str:
    """A unified diff of two versions' sources, dependencies included."""

    def text(v: VersionRecord) -> list[str]:
        parts = [v.source] + [
            f"# --- {name}\n{src}" for name, src in sorted(v.dependencies.items())
        ]
        return "\n".join(parts).splitlines(keepends=True)

    return "".join(
        difflib.unified_diff(text(a), text(b), f"{a.name}@{a.version}", f"{b.name}@{b.version}")
    )


def diff_values(a: Any, b: Any, path: str) -> list[ValueDiff]:
    """Every difference between two decoded values, recursing into containers."""
    if _is_array(a) and _is_array(b):
        return _diff_arrays(a, b, path)
    a, b = _fields(a), _fields(b)
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}[{key!r}]"
            if key not in b:
                diffs.append(ValueDiff(sub, summarize(a[key]), "(missing)"))
            elif key not in a:
                diffs.append(ValueDiff(sub, "(missing)", summarize(b[key])))
            else:
                diffs += diff_values(a[key], b[key], sub)
        return diffs
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and type(a) is type(b):
        diffs = [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=False))
            for d in diff_values(x, y, f"{path}[{i}]")
        ]
        if len(a) != len(b):
            diffs.append(ValueDiff(f"{path} length", str(len(a)), str(len(b))))
        return diffs
    if _is_number(a) and _is_number(b):
        if a == b or (a != a and b != b):
            return []
        return [ValueDiff(path, repr(a), repr(b), abs(float(a) - float(b)))]
    if type(a) is not type(b) or a != b:
        return [ValueDiff(path, summarize(a), summarize(b))]
    return []


def _diff_arrays(a: Any, b: Any, path: str) -> list[ValueDiff]:
    x, y = _numpy(a), _numpy(b)
    if x.shape != y.shape or x.dtype != y.dtype or type(a) is not type(b):
        return [ValueDiff(path, summarize(a), summarize(b))]
    if np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
        return []
    diff = np.abs(
        x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)
        - y.astype(np.complex128 if y.dtype.kind == "c" else np.float64)
    )
    finite = diff[np.isfinite(diff)]
    max_diff = float(finite.max()) if finite.size else float("inf")
    return [ValueDiff(path, summarize(a), summarize(b), max_diff)]


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16) or "float8" in str(tensor.dtype):
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(value)


def _is_array(value: Any) -> bool:
    return isinstance(value, torch.Tensor | np.ndarray)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | complex | np.number) and not isinstance(value, bool)


def _fields(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return dict(zip(value._fields, value, strict=True))
    return value


def summarize(value: Any, width: int = 60) -> str:
    """A one-line description: tensors by dtype, shape and a few statistics."""
    if isinstance(value, torch.Tensor | np.ndarray):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        array = _numpy(value)
        stats = ""
        if array.size and array.dtype.kind in "fiub":
            data = array.astype(np.float64)
            stats = (
                f" mean={np.nanmean(data):.4g} min={np.nanmin(data):.4g} max={np.nanmax(data):.4g}"
            )
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{kind}{list(array.shape)} {dtype}{stats}"
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
