"""The bench: versions, logged runs, tools injection, comparison, plots attached to runs,
the profiler and the hypothesis tests."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from lookingglass.bench import (
    Bench,
    HypothesisResult,
    PlotSpec,
    StoreError,
    paired_test,
    profile_model,
)
from lookingglass.bench.experiment import function_version, git_state, weights_hash
from lookingglass.bench.workspace import ToolError
from lookingglass.errors import InputError
from tests._helpers import make_model

_counter = itertools.count()


def load_module(tmp_path, source: str):
    """Import `source` as a fresh module from a real file (so its source is readable)."""
    name = f"bench_case_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench(tmp_path):
    with Bench(
        make_model(), store=f"sqlite:///{tmp_path}/e.db?synchronous=normal", progress=False
    ) as b:
        yield b


EXPERIMENT = """
import torch

def helper(x):
    return x * {factor}

def unrelated():
    return {unrelated}

def run(n):
    return {{"value": helper(n), "noise": torch.randn(3)}}
"""


def test_version_hashes_the_source_and_same_module_callees(tmp_path):
    base = function_version(load_module(tmp_path, EXPERIMENT.format(factor=2, unrelated=0)).run)
    same = function_version(load_module(tmp_path, EXPERIMENT.format(factor=2, unrelated=1)).run)
    helper_changed = function_version(
        load_module(tmp_path, EXPERIMENT.format(factor=3, unrelated=0)).run
    )
    assert base.version == same.version  # an unrelated edit is not a new version
    assert helper_changed.version != base.version  # editing a callee is
    assert base.source.startswith("def run(n):") and list(base.dependencies) == ["helper"]
    decorated = EXPERIMENT.format(factor=2, unrelated=0).replace(
        "def run", "@functools.cache\ndef run"
    )
    decorated = function_version(load_module(tmp_path, "import functools\n" + decorated).run)
    assert decorated.source == base.source  # decorators say how it runs, not what it computes


def test_a_logged_run_records_everything(bench, tmp_path):
    module = load_module(tmp_path, EXPERIMENT.format(factor=2, unrelated=0))
    run = bench.log_experiment(module.run)
    first = run(4)
    record = bench.get_run(run.last_run_id)
    assert record.status == "ok" and record.kind == "experiment" and record.duration >= 0
    assert bench.load_args(record) == {"n": 4}
    loaded = bench.load_result(record)
    assert loaded["value"] == 8 and loaded["noise"].equal(first["noise"])
    assert record.model["cfg_hash"] == bench.model.cfg.hash()
    assert record.model["weights_hash"] == weights_hash(bench.model)
    assert record.environment["lookingglass"] and record.environment["torch"] == torch.__version__
    assert record.started_at <= record.ended_at
    # The recorded seed reproduces the run's randomness.
    torch.manual_seed(record.seed)
    assert torch.randn(3).equal(first["noise"])
    fixed = bench.log_experiment(module.run, name="fixed", seed=5)
    assert fixed(1)["noise"].equal(fixed(1)["noise"]) and bench.runs("fixed")[0].seed == 5
    assert bench.get_version("run", record.version)["runs"] == [record.run_id]


def test_git_revision_is_recorded_inside_a_repository():
    state = git_state(__file__)
    if not state:
        pytest.skip("not inside a git checkout")
    assert len(state["revision"]) == 40 and isinstance(state["dirty"], bool)


def test_an_error_is_recorded_and_re_raised(bench):
    @bench.log_experiment
    def broken(x):
        raise RuntimeError(f"bad input {x}")

    with pytest.raises(RuntimeError, match="bad input 3"):
        broken(3)
    (run,) = bench.runs("broken")
    assert run.status == "error" and run.error == "RuntimeError: bad input 3"
    assert "raise RuntimeError" in run.traceback
    with pytest.raises(StoreError, match="status 'error'"):
        bench.load_result(run)


def test_weights_hash_follows_in_place_edits():
    model = make_model()
    before = weights_hash(model)
    assert weights_hash(model) == before
    with torch.no_grad():
        model.blocks[0].attn.W_Q[0, 0, 0] += 1.0
    assert weights_hash(model) != before


def test_use_tools_injects_tools_and_checks_names(bench):
    class Counter:
        def __init__(self, model):
            self.n_layers = model.cfg.n_layers

    bench.register_tool("counter", Counter)
    bench.register_tool("constant", {"k": 1})

    @bench.log_experiment
    @bench.use_tools("counter", "constant", "logit_lens")
    def uses(x, counter=None, constant=None, logit_lens=None):
        return counter.n_layers + constant["k"] + x, type(logit_lens).__name__

    assert uses(10) == (13, "LogitLensTool")
    assert uses(10, constant={"k": 5}) == (17, "LogitLensTool")  # an explicit argument wins
    assert bench.load_args(bench.runs(uses.name)[0].run_id) == {"x": 10}  # tools are not recorded
    with pytest.raises(ToolError, match="Did you mean \\['logit_lens'\\]"):
        bench.use_tools("logit_len")
    with pytest.raises(InputError, match="must accept keyword argument"):
        bench.use_tools("counter")(lambda x: x)
    with pytest.raises(InputError, match="registered already"):
        bench.register_tool("counter", Counter)
    assert bench.tool("counter") is bench.tool("counter")  # built once
    reader = Bench(None, store=bench.store)
    lens = reader.use_tools("logit_lens")(
        lambda x, logit_lens=None: logit_lens
    )  # no model needed yet
    with pytest.raises(InputError, match="needs a model"):
        lens(1)


def test_compare_reports_args_source_and_tensor_differences(bench, tmp_path):
    one = bench.log_experiment(
        load_module(tmp_path, EXPERIMENT.format(factor=2, unrelated=0)).run, seed=1
    )
    two = bench.log_experiment(
        load_module(tmp_path, EXPERIMENT.format(factor=3, unrelated=0)).run, seed=2
    )
    one(1)
    first = one.last_run_id
    one(1)
    repeat = one.last_run_id
    two(2)
    other = two.last_run_id
    same = bench.compare(first, repeat)
    assert same.same_version and same.identical_results and not same.args and not same.source_diff
    diff = bench.compare(first, other)
    assert (
        not diff.same_version
        and "-    return x * 2" in diff.source_diff
        and "+    return x * 3" in diff.source_diff
    )
    assert [d.path for d in diff.args] == ["args['n']"]
    noise = next(d for d in diff.result if d.path == "result['noise']")
    a, b = bench.load_result(first)["noise"], bench.load_result(other)["noise"]
    assert noise.max_abs_diff == pytest.approx(float((a - b).abs().max()))
    assert "source diff" in str(diff) and "max abs diff" in str(diff)


def test_plot_results_attaches_figures_to_the_run(bench, tmp_path):
    @bench.plot_results(
        PlotSpec("patching_heatmap", data_keys="grid", name="grid", formats=("plotly", "png"))
    )
    def sweep():
        return {"grid": torch.tensor([[1.0, -2.0], [0.5, 0.0]])}

    sweep()
    run = bench.get_run(sweep.last_run_id)
    assert sorted(run.attachments) == ["grid.plotly.json", "grid.png"]
    assert bench.load_attachment(run.run_id, "grid.png").startswith(b"\x89PNG")
    html = bench.save_attachment(run.run_id, "grid.plotly.json", tmp_path / "grid.html").read_text()
    assert '<script src="http' not in html and "plotly" in html


def test_profile_any_module_times_and_memory():
    model = nn.Sequential(
        nn.Linear(8, 32),
        nn.ReLU(),
        nn.Sequential(nn.Linear(32, 16), nn.Identity()),
        nn.Linear(16, 4),
    )
    x = torch.randn(5, 8)
    profile = profile_model(model, x, repeats=3, warmup=0)
    rows = {r["module"]: r for r in profile.rows}
    assert set(rows) == {
        "(model)",
        "0",
        "1",
        "2",
        "2.0",
        "3",
    }  # nn.Identity returns its input: left out
    assert all(r["calls"] == 3 for r in rows.values())
    assert rows["0"]["output_bytes"] == 3 * 5 * 32 * 4 and rows["3"]["params"] == 16 * 4 + 4
    assert rows["2"]["time_ms"] >= rows["2.0"]["time_ms"]
    total_self = sum(r["self_ms"] for r in profile.rows)
    assert total_self == pytest.approx(rows["(model)"]["time_ms"], rel=1e-6)
    assert profile.output.shape == (5, 4)
    assert "2.0" in profile.table() and profile.table(sort="self_ms", top=2).count("\n") == 4
    assert len(profile_model(model, x, keep_identity=True).rows) == 7


def test_profile_decorator_logs_a_run(bench):
    tokens = torch.randint(0, 50, (2, 8))

    @bench.profile_model
    def forward():
        return bench.model(tokens)

    profile = forward()
    assert profile.output.shape == (2, 8, bench.model.cfg.d_vocab)
    types = {r["type"] for r in profile.rows}
    assert {"HookedTransformer", "TransformerBlock"} <= types
    stored = bench.load_result(forward.last_run_id)
    assert stored.rows == profile.rows and bench.get_run(forward.last_run_id).kind == "profile"
    assert stored.figure().panels[0].labels


def test_paired_test_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.normal(size=10)
    b = a + 0.5 + rng.normal(scale=0.5, size=10)
    result = paired_test(a, b, ("clean", "ablated"), n_permutations=2**10, seed=0)
    assert result.exact and result.n_permutations == 1024
    reference = stats.permutation_test(
        (b, a), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=np.inf
    )
    assert result.permutation_pvalue == pytest.approx(reference.pvalue, rel=1e-9)
    t = stats.ttest_rel(b, a)
    assert (result.t_statistic, result.t_pvalue) == pytest.approx((t.statistic, t.pvalue))
    diffs = b - a
    assert result.cohens_d == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert result.ci_low < diffs.mean() < result.ci_high
    one_sided = paired_test(a, b, n_permutations=2**10, alternative="greater")
    assert one_sided.permutation_pvalue == pytest.approx(result.permutation_pvalue / 2, rel=0.05)
    a, b = a[:8], b[:8] - 0.3
    exact = stats.permutation_test(
        (b, a), lambda x, y: np.mean(x - y), permutation_type="samples"
    ).pvalue
    monte_carlo = paired_test(a, b, n_permutations=200)
    assert not monte_carlo.exact and abs(monte_carlo.permutation_pvalue - exact) < 0.1
    with pytest.raises(InputError, match="equal-length"):
        paired_test([1.0, 2.0], [1.0])


def test_hypothesis_decorator_evaluates_every_prompt_and_logs(bench):
    prompts = list(range(12))
    calls = []

    @bench.test_hypothesis(
        prompts, conditions=("clean", "ablated"), n_permutations=5000, n_bootstrap=2000
    )
    def loss(prompt, condition):
        calls.append((prompt, condition))
        return prompt + (1.0 if condition == "ablated" else 0.0) + 0.1 * np.sin(prompt)

    result = loss()
    assert len(calls) == 24 and isinstance(result, HypothesisResult)
    assert result.mean_diff == pytest.approx(1.0) and result.significant()
    stored = bench.load_result(loss.last_run_id)
    assert isinstance(stored, HypothesisResult) and np.array_equal(stored.values_b, result.values_b)
    run = bench.get_run(loss.last_run_id)
    assert run.kind == "hypothesis" and bench.load_args(run)["prompts"] == prompts
    assert "def loss(prompt, condition)" in bench.get_version(run.name, run.version)["source"]


def test_nested_runs_record_their_parent(bench):
    @bench.log_experiment
    def inner():
        return 1

    @bench.log_experiment
    def outer():
        return inner() + 1

    outer()
    assert bench.get_run(inner.last_run_id).parent_run == outer.last_run_id


def test_the_experiments_command_line(bench, tmp_path, capsys):
    from lookingglass.cli import main

    @bench.plot_results(PlotSpec("heatmap", data_keys={"values": "grid"}, formats=("plotly",)))
    def grid(scale):
        return {"grid": torch.ones(2, 2) * scale}

    grid(1.0)
    grid(2.0)
    store = ["--store", str(bench.store.path)]
    assert main(["experiments", "list", *store]) == 0
    assert "grid" in capsys.readouterr().out
    assert main(["experiments", "list", "grid", *store]) == 0
    assert capsys.readouterr().out.count(" ok ") == 2
    assert (
        main(["experiments", "show", "1", *store, "--save-attachments", str(tmp_path / "plots")])
        == 0
    )
    shown = capsys.readouterr().out
    assert "scale = 1.0" in shown and "tensor[2, 2] float32" in shown
    assert (tmp_path / "plots" / "run1_heatmap.html").is_file()
    assert main(["experiments", "show", "grid", *store]) == 0
    assert "def grid(scale):" in capsys.readouterr().out
    assert main(["experiments", "compare", "1", "2", *store]) == 0
    assert "max abs diff 1" in capsys.readouterr().out
    out = tmp_path / "runs.jsonl"
    assert main(["experiments", "export", str(out), "--tensors", *store]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["result"]["grid"]["values"] for r in rows] == [
        [[1.0, 1.0], [1.0, 1.0]],
        [[2.0, 2.0], [2.0, 2.0]],
    ]
    assert main(["experiments", "verify", "--blobs", *store]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["experiments", "show", "99", *store]) == 2
    assert "no run 99" in capsys.readouterr().err
    assert main(["experiments", "list", "--store", str(tmp_path / "missing.db")]) == 2


def test_an_export_that_fails_part_way_leaves_no_file(bench, tmp_path, monkeypatch):
    import lookingglass.bench.cli as bench_cli
    from lookingglass.cli import main

    @bench.log_experiment
    def value(x):
        return {"x": torch.tensor([x])}

    value(1.0)
    value(2.0)
    real, calls = bench_cli._jsonable, []

    def fails_on_the_second_run(item, tensors):
        calls.append(1)
        if len(calls) == 3:  # args and result of run 1 done; run 2 fails
            raise RuntimeError("disk full")
        return real(item, tensors)

    monkeypatch.setattr(bench_cli, "_jsonable", fails_on_the_second_run)
    out = tmp_path / "export" / "runs.jsonl"
    out.parent.mkdir()
    with pytest.raises(RuntimeError, match="disk full"):
        main(["experiments", "export", str(out), "--store", str(bench.store.path)])
    assert list(out.parent.iterdir()) == []
