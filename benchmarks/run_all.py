"""Every benchmark in one process: lookingglass beside Hugging Face (SDPA, its default,
and eager) and TransformerLens 3.9 on the same weights, interleaved; ratios are against
HF SDPA. Writes a JSON (machine, versions, date, load average) and regenerates the
tables of `docs/benchmarks.md`.

    python benchmarks/run_all.py --quick      # small random models + SmolLM2 at 1x32; minutes
    python benchmarks/run_all.py --full       # GPT-2-small / Llama shapes / SmolLM2, up to 1x2048
    python benchmarks/run_all.py --gpu        # prints the command of the GPU script (gpu_check.py)

`--sections forward loading long analysis` runs a subset; results merge into the JSON of
the same mode (`benchmarks/results/cpu-<mode>.json`), so sections can be re-run alone
when the shared machine is quiet. `--threads 1 2` times with each torch thread count.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import load_average, wait_for_quiet  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = ("forward", "loading", "long", "analysis")

SHAPES = {"quick": [(1, 32), (4, 256), (1, 2048)], "full": [(1, 32), (4, 256), (1, 2048)]}
# The real model at 2048 tokens costs ~10 s per forward on one core: not in --quick.
REAL_SHAPES = {"quick": [(1, 32)], "full": [(1, 32), (4, 256), (1, 2048)]}
REPEATS = {"quick": 3, "full": 7}


def machine() -> dict:
    """Where and with what the numbers were taken."""
    import transformer_lens
    import transformers

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return dict(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        cpu=cpu,
        cores=os.cpu_count(),
        memory_gib=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        transformer_lens=getattr(transformer_lens, "__version__", "3.9.0"),
        lookingglass_commit=commit,
        load_average_start=load_average(),
    )


def run_sections(
    mode: str, sections, threads, workdir: Path, quiet_load: float, models=None
) -> dict:
    import suite_analysis
    import suite_forward
    import suite_loading
    import suite_long_context
    from suite_models import REAL, SPECS, checkpoint, hf_model, peers

    out: dict = {}
    specs = [s for s in SPECS[mode] if models is None or s.label in models]
    if "forward" in sections:
        out["forward"] = []
        for spec in specs:
            models = peers(spec, workdir)
            shapes = REAL_SHAPES[mode] if spec.family == "real" else SHAPES[mode]
            for n in threads:
                wait_for_quiet(quiet_load, 120)
                out["forward"] += suite_forward.run(spec.label, models, shapes, n, REPEATS[mode])
            del models
    if "loading" in sections:
        out["loading"] = [
            suite_loading.run(spec.label, checkpoint(spec, workdir), 3 if mode == "quick" else 5)
            for spec in specs
        ]
    if "long" in sections:
        out["long"] = []
        for spec in specs:
            # A full cache of the real model at 2048 tokens (30 layers of scores and
            # patterns) is ~9.4 GB: too much for the shared machine; --quick uses 512.
            real = spec.family == "real"
            seq = 512 if real and mode == "quick" else 2048
            skip = ("everything",) if real and seq == 2048 else ()
            out["long"].append(
                suite_long_context.run(
                    spec.label, spec.family, checkpoint(spec, workdir), seq, 1, skip
                )
            )
    if "analysis" in sections:
        real = next(s for s in SPECS[mode] if s.label == REAL)
        from suite_models import our_model

        hf = hf_model(checkpoint(real, workdir), "sdpa")
        ours = our_model(real, None)
        out["analysis"] = []
        for n in threads:
            wait_for_quiet(quiet_load, 120)
            out["analysis"] += suite_analysis.run(
                hf,
                ours,
                n_tokens=16,
                hf_sample=24 if mode == "quick" else 60,
                repeats=1 if mode == "quick" else 3,
                threads=n,
            )
    return out


def merged(old: list[dict], new: list[dict]) -> list[dict]:
    """`old` rows with those measured again replaced by `new` (same model, shape,
    threads and op), in their old order; rows of models not run again stay."""

    def key(row: dict) -> tuple:
        return tuple(row.get(k) for k in ("model", "shape", "threads", "op"))

    fresh = {key(row): row for row in new}
    kept = [fresh.pop(key(row), row) for row in old]
    return kept + list(fresh.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group(required=True)
    for mode in ("quick", "full", "gpu"):
        group.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--quiet-load",
        type=float,
        default=1.5,
        help="before each timed section, wait up to 2 min for the load average to drop to this",
    )
    parser.add_argument(
        "--models", nargs="+", default=None, help="model labels to run (default: every one)"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    if args.mode == "gpu":
        print(
            "The GPU run is one script, sized to a few minutes of device time:\n"
            "    python benchmarks/gpu_check.py --out benchmarks/results/gpu.json"
        )
        return
    start = time.perf_counter()
    path = RESULTS / f"cpu-{args.mode}.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    with tempfile.TemporaryDirectory() as workdir:
        meta = machine()
        sections = run_sections(
            args.mode, args.sections, args.threads, Path(workdir), args.quiet_load, args.models
        )
    meta.update(
        load_average_end=load_average(),
        seconds=round(time.perf_counter() - start),
        sections=args.sections,
    )
    result.setdefault("runs", []).append(meta)
    for name, rows in sections.items():
        result[name] = merged(result.get(name, []), rows)
    result["mode"] = args.mode
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path} ({meta['seconds']} s)")
    if not args.no_docs:
        import report

        report.update_docs(ROOT / "docs" / "benchmarks.md", RESULTS)


if __name__ == "__main__":
    main()
