"""The examples run as written, on the shipped model, and reach their stated outcome."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False
    )


def test_bench_tutorial_verdict_follows_from_its_statistics(tmp_path):
    """The tutorial screens heads by ablation, tests each layer's group against a control
    of the same layer and size, and its verdict follows from the tests: a significant
    control is never called intact, and "supported" needs a group that keeps < 50%."""
    out = tmp_path / "tutorial"
    result = _run(
        [sys.executable, str(ROOT / "examples/bench_tutorial.py"), "--out", str(out)], tmp_path
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    screened = re.findall(
        r"^  L(\d)H(\d): removes .*permutation p (\S+), t-test p (\S+);", text, re.M
    )
    assert len(screened) == 8, text  # 2 layers x 4 heads, each ablated alone
    layers = re.findall(
        r"^layer (\d): group \[([^\]]*)\] keeps (-?\d+)% \(p = (\S+)\); control \[([^\]]*)\] "
        r"keeps (-?\d+)% \(p = (\S+), (intact|significant: not intact)\): (.+)$",
        text,
        re.M,
    )
    assert layers, text
    for layer, group, kept, _, control, _, _, state, verdict in layers:
        assert len(group.split(", ")) == len(control.split(", ")), (group, control)
        assert all(h.startswith(f"L{layer}H") for h in (group + ", " + control).split(", "))
        assert not set(group.split(", ")) & set(control.split(", "))
        if state != "intact" or int(kept) >= 50:
            assert verdict != "supported", (layer, kept, state, verdict)
    overall = "supported" if all(v[-1] == "supported" for v in layers) else "not supported"
    assert f"their layer do not): {overall}." in text, text
    for name in ("induction_scores.html", "hypothesis_induction.png", "experiments.db"):
        assert (out / name).is_file(), name

    listed = _run(
        [
            sys.executable,
            "-m",
            "lookingglass.cli",
            "experiments",
            "list",
            "--store",
            str(out / "experiments.db"),
        ],
        tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    for name in ("describe_heads", "screen_heads", "layer1_group_ablated", "ablation_effects"):
        assert name in listed.stdout, listed.stdout
