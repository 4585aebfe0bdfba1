"""The experiment bench: plug-in tools, tracked and versioned experiments, profiling and
hypothesis tests, with every run kept in an embedded database.

    from lookingglass.bench import Bench
    bench = Bench(model, store="experiments.db")

See `workspace.Bench` for the workspace, `store` for where runs are kept (SQLite now,
other backends behind the same `Store` interface), `tools` for the built-in tools,
`profile` and `hypothesis` for the profiler and the statistics.
"""

from lookingglass.bench.blobs import StoreError, Unstored
from lookingglass.bench.compare import Comparison, ValueDiff
from lookingglass.bench.experiment import (
    Experiment,
    current_run_id,
    function_version,
    model_identity,
)
from lookingglass.bench.hypothesis import HypothesisResult, paired_test
from lookingglass.bench.profile import ModelProfile, profile_model
from lookingglass.bench.sqlite import SQLiteStore
from lookingglass.bench.store import RunRecord, Store, VersionRecord, open_store
from lookingglass.bench.surgery import Edit, delete_layer, knock_out_heads, replace_layer
from lookingglass.bench.tools import BUILTIN_TOOLS
from lookingglass.bench.workspace import Bench, PlotSpec, ToolError

__all__ = [
    "BUILTIN_TOOLS",
    "Bench",
    "Comparison",
    "Edit",
    "Experiment",
    "HypothesisResult",
    "ModelProfile",
    "PlotSpec",
    "RunRecord",
    "SQLiteStore",
    "Store",
    "StoreError",
    "ToolError",
    "Unstored",
    "ValueDiff",
    "VersionRecord",
    "current_run_id",
    "delete_layer",
    "function_version",
    "knock_out_heads",
    "model_identity",
    "open_store",
    "paired_test",
    "profile_model",
    "replace_layer",
]
