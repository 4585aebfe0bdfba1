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


def test_bench_tutorial_finds_the_induction_circuit_in_the_shipped_model(tmp_path):
    out = tmp_path / "tutorial"
    result = _run(
        [sys.executable, str(ROOT / "examples/bench_tutorial.py"), "--out", str(out)], tmp_path
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    kept = dict(re.findall(r"^\s+(\S+) heads ablated: keeps (\d+)% of it", text, flags=re.M))
    assert set(kept) == {"induction", "previous-token", "control"}, text
    assert int(kept["induction"]) < 50 and int(kept["previous-token"]) < 50, text
    assert int(kept["control"]) > 75, text
    assert "carry the in-context improvement" in text and ": supported." in text
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
    for name in ("find_induction_heads", "in_context_improvement_induction", "ablation_effects"):
        assert name in listed.stdout, listed.stdout
