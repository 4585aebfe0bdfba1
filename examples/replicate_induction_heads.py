"""Reproduce the induction-heads phase change (Olsson et al. 2022) on a CPU.

Trains attention-only models of 1 layer, 1 layer with smeared keys, and 2 layers on the
same data, snapshots them through training, and writes a report (markdown, PNG plots,
results.json) saying which heads became induction heads, when, and whether the
in-context-learning score jumped at the same time.

    python examples/replicate_induction_heads.py [--quick] [--out DIR]

Same as `lookingglass replicate induction-heads [--quick] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import json

from lookingglass.training.replicate import run_replication


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small CI-sized run")
    parser.add_argument("--out", default="reports/induction-heads")
    args = parser.parse_args()
    results = run_replication(args.out, quick=args.quick)
    for name, model in results["models"].items():
        heads = ", ".join(h["head"] for h in model["induction_heads"]) or "none"
        print(
            f"{name:>14}: induction heads {heads}; induction jump {model['induction_phase']}; "
            f"ICL jump {model['icl_phase']}; together: {model['coincide']}"
        )
    print(json.dumps(results["verdict"], indent=2))
    print(f"report: {args.out}/report.md")


if __name__ == "__main__":
    main()
