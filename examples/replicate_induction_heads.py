"""Reproduce the induction-heads phase change (Olsson et al. 2022) on a CPU.

Trains attention-only models of 1 layer, 1 layer with smeared keys, and 2 layers on the
same data, snapshots them through training, and writes a report (markdown, PNG plots,
results.json) saying which heads became induction heads, when, and whether the
in-context-learning score jumped at the same time.

    python examples/replicate_induction_heads.py [--quick] [--out DIR]
    python examples/replicate_induction_heads.py --data text [--quick] [--out DIR]

Same as `lookingglass replicate induction-heads [--data text] [--quick] [--out DIR]`.
`--data synthetic` (default) trains on random tokens with repeated segments; `--data
text` on the King James Bible only, by character, with several seeds and synthetic
mixtures (resumable: run the same command again after a stop).
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small CI-sized run")
    parser.add_argument("--data", choices=["synthetic", "text"], default="synthetic")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = args.out or ("reports/induction-heads" + ("-text" if args.data == "text" else ""))
    if args.data == "text":
        from lookingglass.training.replicate_text import run_text_replication

        results = run_text_replication(out, quick=args.quick)
        if not results["complete"]:
            print(f"stopped; left: {results['left']}; run again to continue")
            return
        for name, model in results["per_model"].items():
            print(
                f"{name:>14}: induction heads formed in {model['formed_in']}/{model['seeds']} "
                f"seeds; final ICL score {model['final_icl_score']['mean']:+.3f}"
            )
    else:
        from lookingglass.training.replicate import run_replication

        results = run_replication(out, quick=args.quick)
        for name, model in results["models"].items():
            heads = ", ".join(h["head"] for h in model["induction_heads"]) or "none"
            print(
                f"{name:>14}: induction heads {heads}; induction jump "
                f"{model['induction_phase']}; ICL jump {model['icl_phase']}; together: "
                f"{model['coincide']}"
            )
    print(json.dumps(results["verdict"], indent=2))
    print(f"report: {out}/report.md")


if __name__ == "__main__":
    main()
