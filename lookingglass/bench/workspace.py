"""`Bench`: a workspace bound to a model, with plug-in tools and a persistent record of
every experiment run.

    bench = Bench(model, store="experiments.db")

    @bench.log_experiment
    @bench.use_tools("logit_lens")
    def lens(prompt, logit_lens=None):
        return logit_lens.run(prompt).top_tokens

    lens("When Mary and John went to the store, John gave")
    bench.list_versions("lens"); bench.runs("lens"); bench.load_result(run_id)

Everything is read back from the store, so it survives a restart; several processes may
share one store.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookingglass.bench.blobs import StoreError, decode
from lookingglass.bench.compare import Comparison, compare_runs
from lookingglass.bench.experiment import Experiment
from lookingglass.bench.store import RunRecord, Store, VersionRecord, open_store
from lookingglass.errors import InputError, LookingGlassError
from lookingglass.utils import write_atomic


class ToolError(LookingGlassError, KeyError):
    """No tool is registered under the name asked for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ToolRegistry(Mapping[str, Any]):
    """Tools by name; a tool registered as a class (or the built-ins) is built from the
    bench's model the first time it is used."""

    def __init__(self, model_of: Callable[[], Any]) -> None:
        self._model_of = model_of
        self._factories: dict[str, Callable[[Any], Any]] = {}
        self._instances: dict[str, Any] = {}

    def register(self, name: str, tool: Any, replace: bool = False) -> None:
        """Add `tool` (an object, or a class / factory taking the model) under `name`."""
        if not name.isidentifier():
            raise InputError(
                "A tool name must be a Python identifier (it becomes a keyword argument), "
                f"got {name!r}."
            )
        if name in self._factories and not replace:
            raise InputError(
                f"A tool named {name!r} is registered already; pass replace=True to replace it."
            )
        self._instances.pop(name, None)
        if inspect.isclass(tool):
            self._factories[name] = tool
        else:
            self._factories[name] = lambda model, tool=tool: tool
            self._instances[name] = tool

    def __getitem__(self, name: str) -> Any:
        if name not in self._factories:
            close = difflib.get_close_matches(name, list(self._factories), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ToolError(f"No tool named {name!r}.{hint} Registered: {sorted(self._factories)}.")
        if name not in self._instances:
            model = self._model_of()
            if model is None:
                raise InputError(
                    f"Tool {name!r} needs a model: create the bench with Bench(model, ...)."
                )
            self._instances[name] = self._factories[name](model)
        return self._instances[name]

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def reset(self) -> None:
        """Forget the tool objects built from classes (call after changing the model)."""
        self._instances = {
            k: v for k, v in self._instances.items() if not inspect.isclass(self._factories[k])
        }


@dataclass
class PlotSpec:
    """How to draw a logged run's result (see `Bench.plot_results`).

    Args:
        plot_type: the name of a `lookingglass.plot` function ("attention_patterns",
            "logit_lens", "patching_heatmap", ...) or any callable returning a figure.
        data_keys: which part of the result to plot: None passes the whole result as the
            first argument, a string passes `result[key]`, a dict maps the plot
            function's argument names to result keys.
        name: the attachment's name (default: the plot type).
        formats: what to store: "plotly" (the interactive figure as plotly JSON, small;
            `Bench.save_attachment` writes it as self-contained HTML), "html" (the
            self-contained page itself, ~5 MB with plotly.js), "png", "svg".
        options: further keyword arguments for the plot function.
    """

    plot_type: str | Callable[..., Any]
    data_keys: str | Mapping[str, str] | None = None
    name: str | None = None
    formats: tuple[str, ...] = ("plotly", "png")
    options: dict[str, Any] = field(default_factory=dict)

    def figure(self, result: Any) -> Any:
        """Build the figure for `result`."""
        plot_fn = self.plot_type
        if isinstance(plot_fn, str):
            from lookingglass import plot

            if not hasattr(plot, plot_fn):
                raise InputError(
                    f"lookingglass.plot has no plot {plot_fn!r}; available: {plot.__all__}."
                )
            plot_fn = getattr(plot, plot_fn)
        if self.data_keys is None:
            return plot_fn(result, **self.options)
        if isinstance(self.data_keys, str):
            return plot_fn(result[self.data_keys], **self.options)
        return plot_fn(**{arg: result[key] for arg, key in self.data_keys.items()}, **self.options)

    @property
    def label(self) -> str:
        """The attachment name."""
        if self.name:
            return self.name
        return self.plot_type if isinstance(self.plot_type, str) else self.plot_type.__name__


_MEDIA = {
    "plotly": ("application/vnd.plotly.v1+json", ".plotly.json"),
    "html": ("text/html", ".html"),
    "png": ("image/png", ".png"),
    "svg": ("image/svg+xml", ".svg"),
}


def render_attachments(
    spec: PlotSpec, result: Any, store: Store
) -> dict[str, tuple[str, str, str]]:
    """Draw `result` as `spec` says and store each format as a blob."""
    fig = spec.figure(result)
    attachments = {}
    for fmt in spec.formats:
        if fmt not in _MEDIA:
            raise InputError(f"Plot format {fmt!r} is not supported; use {sorted(_MEDIA)}.")
        if fmt == "plotly":
            data = fig.plotly.to_json().encode()
        else:
            data = fig.to_html().encode() if fmt == "html" else fig.to_image(format=fmt)
        media_type, ext = _MEDIA[fmt]
        attachments[f"{spec.label}{ext}"] = (media_type, store.put_blob(data, ext), ext)
    return attachments


class Bench:
    """An interpretability workspace: a model, its tools, and an experiment store.

    Args:
        model: the model the tools analyse and whose identity each run records (a
            `HookedTransformer` or any `nn.Module`; None for a bench that only reads).
        store: a store URL (`sqlite:///experiments.db`), a path, or an open `Store`.
        progress: show progress bars on long work (hypothesis tests over many prompts).
    """

    def __init__(
        self, model: Any = None, store: str | Path | Store = "experiments.db", progress: bool = True
    ) -> None:
        self._model = model
        self.store = open_store(store)
        self.progress = progress
        self.tools = ToolRegistry(lambda: self._model)
        from lookingglass.bench.tools import BUILTIN_TOOLS

        for name, tool in BUILTIN_TOOLS.items():
            self.tools.register(name, tool)

    @property
    def model(self) -> Any:
        """The model; setting a new one rebuilds the built-in tools on their next use."""
        return self._model

    @model.setter
    def model(self, model: Any) -> None:
        self._model = model
        self.tools.reset()

    # ------------------------------------------------------------------- tools
    def register_tool(self, name: str, tool: Any, replace: bool = False) -> None:
        """Register a tool: an object, or a class built as `tool(model)` on first use."""
        self.tools.register(name, tool, replace)

    def tool(self, name: str) -> Any:
        """The tool registered under `name`."""
        return self.tools[name]

    def use_tools(self, *names: str) -> Callable[[Callable], Callable]:
        """Decorator: pass the named tools to the function as keyword arguments (unless
        the caller passes them). Unknown tool names fail when decorating."""
        for name in names:
            if name not in self.tools:
                self.tools[name]  # raises ToolError naming close matches

        def decorate(fn: Callable) -> Callable:
            params = inspect.signature(fn).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            missing = [n for n in names if n not in params and not takes_any]
            if missing:
                raise InputError(
                    f"{fn.__qualname__} must accept keyword argument(s) {missing} "
                    "to receive those tools (e.g. `def f(x, logit_lens=None)`)."
                )

            @functools.wraps(fn)
            def with_tools(*args: Any, **kwargs: Any) -> Any:
                for name in names:
                    if kwargs.get(name) is None:
                        kwargs[name] = self.tools[name]
                return fn(*args, **kwargs)

            with_tools.__bench_tools__ = tuple(names) + getattr(fn, "__bench_tools__", ())
            return with_tools

        return decorate

    # ------------------------------------------------------------- experiments
    def log_experiment(
        self, fn: Callable | None = None, *, name: str | None = None, seed: int | bool | None = None
    ) -> Any:
        """Decorator: record every call of the function as a run (see `Experiment`).

        Use bare (`@bench.log_experiment`) or with options: `name` (default: the
        function's qualified name) and `seed` (None: a fresh seed drawn from torch's
        global generator, applied and recorded; an int: that seed; False: leave the
        generators alone).
        """

        def wrap(f: Callable) -> Experiment:
            if isinstance(f, Experiment):
                return f
            return Experiment(f, lambda: self.store, lambda: self.model, name=name, seed=seed)

        return wrap(fn) if fn is not None else wrap

    def plot_results(
        self, *specs: PlotSpec | str | Callable[..., Any]
    ) -> Callable[[Callable], Experiment]:
        """Decorator: log the function (if not logged already) and attach a plot of each
        run's result, drawn as each `PlotSpec` says and stored with the run (read it back
        with `load_attachment`). A bare string or callable is a `PlotSpec(plot_type=...)`."""
        specs_ = [s if isinstance(s, PlotSpec) else PlotSpec(s) for s in specs]

        def decorate(fn: Callable) -> Experiment:
            experiment = self.log_experiment(fn)
            for spec in specs_:
                experiment.post_processors.append(functools.partial(render_attachments, spec))
            return experiment

        return decorate

    def profile_model(self, fn: Callable | None = None, **options: Any) -> Any:
        """Decorator: profile every submodule of the bench's model while the function runs
        and log the profile as a run; the call returns a `ModelProfile` whose `output` is
        the function's return value. Options as `lookingglass.bench.profile_model`."""
        from lookingglass.bench.profile import profiled_experiment

        def wrap(f: Callable) -> Experiment:
            return profiled_experiment(self, f, **options)

        return wrap(fn) if fn is not None else wrap

    def test_hypothesis(
        self, prompts: Any, conditions: tuple[str, str] = ("clean", "ablated"), **options: Any
    ) -> Callable[[Callable], Experiment]:
        """Decorator for `metric(prompt, condition) -> float`: calling the decorated
        function (no arguments) evaluates the metric on every prompt under both
        conditions, runs the paired tests (`lookingglass.bench.hypothesis.paired_test`:
        permutation test, t-test, Cohen's d, bootstrap CI) and logs them as a run."""
        from lookingglass.bench.hypothesis import hypothesis_experiment

        def wrap(f: Callable) -> Experiment:
            return hypothesis_experiment(self, f, prompts, conditions, **options)

        return wrap

    # ------------------------------------------------------------------ reading
    def experiments(self) -> list[str]:
        """Names of every logged experiment."""
        return self.store.experiment_names()

    def list_versions(self, name: str) -> list[str]:
        """Version ids of an experiment, oldest first."""
        return self.store.list_versions(_name(name))

    def get_version(self, name: str, version: str) -> dict[str, Any]:
        """One version: `source`, `dependencies` (same-module code it calls), `module`,
        `qualname`, `created_at`, and `runs` (their ids)."""
        record = self.store.get_version(_name(name), version)
        runs = [r.run_id for r in self.store.runs(_name(name), version)]
        return {
            "name": record.name,
            "version": record.version,
            "source": record.source,
            "dependencies": record.dependencies,
            "module": record.module,
            "qualname": record.qualname,
            "created_at": record.created_at,
            "runs": runs,
        }

    def runs(
        self, name: str | None = None, version: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Recorded runs, oldest first (optionally of one experiment, version or status)."""
        return self.store.runs(None if name is None else _name(name), version, status)

    def get_run(self, run_id: int) -> RunRecord:
        """One run's record."""
        return self.store.get_run(run_id)

    def load_result(self, run_id: int | RunRecord) -> Any:
        """A run's result, rebuilt exactly (tensors bit-identical, on the CPU)."""
        run = run_id if isinstance(run_id, RunRecord) else self.store.get_run(run_id)
        if run.status != "ok":
            raise StoreError(
                f"Run {run.run_id} has status {run.effective_status!r} and no result"
                + (f": {run.error}" if run.error else ".")
            )
        return decode(run.result, self.store.get_blob)

    def load_args(self, run_id: int | RunRecord) -> dict[str, Any]:
        """A run's arguments, by parameter name."""
        run = run_id if isinstance(run_id, RunRecord) else self.store.get_run(run_id)
        return decode(run.args, self.store.get_blob)

    def load_attachment(self, run_id: int, name: str) -> bytes:
        """The bytes of an attachment (e.g. "logit_lens.html") of a run."""
        run = self.store.get_run(run_id)
        if name not in run.attachments:
            raise StoreError(
                f"Run {run_id} has no attachment {name!r}; it has {sorted(run.attachments)}."
            )
        _, digest, ext = run.attachments[name]
        return self.store.get_blob(digest, ext)

    def save_attachment(self, run_id: int, name: str, path: str | Path) -> Path:
        """Write an attachment to `path`; a plotly figure ("*.plotly.json") is written as
        self-contained HTML when `path` ends in .html."""
        data = self.load_attachment(run_id, name)
        path = Path(path)
        if name.endswith(".plotly.json") and path.suffix == ".html":
            import plotly.io

            data = plotly.io.from_json(data.decode()).to_html(include_plotlyjs=True)
        write_atomic(path, data)
        return path

    def compare(self, run_a: int | RunRecord, run_b: int | RunRecord) -> Comparison:
        """What differs between two runs: arguments, source (a unified diff when the
        versions differ), environment, and results (tensors with max abs difference)."""
        a = run_a if isinstance(run_a, RunRecord) else self.store.get_run(run_a)
        b = run_b if isinstance(run_b, RunRecord) else self.store.get_run(run_b)
        result_a = self.load_result(a) if a.status == "ok" else None
        result_b = self.load_result(b) if b.status == "ok" else None
        return compare_runs(
            a,
            b,
            self.load_args(a),
            self.load_args(b),
            result_a,
            result_b,
            self.store.get_version(a.name, a.version),
            self.store.get_version(b.name, b.version),
        )

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        model = getattr(getattr(self.model, "cfg", None), "model_name", type(self.model).__name__)
        return f"Bench(model={model}, store={self.store.url!r}, tools={sorted(self.tools)})"


def _name(name: str | Experiment | VersionRecord) -> str:
    return name if isinstance(name, str) else name.name
