"""Smeared keys: does a 1-layer model form induction heads from every initialisation?

Trains the induction-heads replication's 1-layer smeared-key model (default size:
2,500 steps, random tokens with copied segments; `lookingglass replicate
induction-heads`) from several initial weights on the current key,
`s = sigmoid(smear_logit)` in `k'_j = s k_j + (1 - s) k_{j-1}`, per seed, and records
the best induction (prefix-matching) score through training and where `s` ends.
The replication starts at s = 0.5; the library's default start is sigmoid(3) ~ 0.953.

    python examples/smeared_keys_init.py --inits 0.5 0.7 0.85 0.9 0.95 default --seeds 0 1
        [--steps 2500] [--stop-at STEP] [--every 100] [--out docs/smeared_keys_init.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from lookingglass.training.replicate import DEFAULT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_correlation_attention import replication_run  # noqa: E402


def set_smear(weight: float | None):
    """A `setup` for `replication_run`: every head's initial weight on the current key
    (None: keep the library's default)."""

    def setup(model) -> None:
        if weight is None:
            return
        with torch.no_grad():
            for block in model.blocks:
                block.attn.key_mixer.smear_logit.fill_(math.log(weight / (1 - weight)))

    return setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", nargs="+", default=["0.5", "0.7", "0.85", "0.95", "default"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=None, help="default: the replication's")
    parser.add_argument("--stop-at", type=int, default=None, help="stop early (same schedule)")
    parser.add_argument("--every", type=int, default=100, help="measure every this many steps")
    parser.add_argument("--out", default="docs/smeared_keys_init.json")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out_path = Path(args.out)
    runs = json.loads(out_path.read_text())["runs"] if out_path.is_file() else []
    done = {(r["init"], r["seed"], r.get("stopped_at", r["steps"])) for r in runs}
    for seed in args.seeds:
        for init in args.inits:
            if (init, seed, args.stop_at or args.steps or DEFAULT.n_steps) in done:
                continue
            weight = None if init == "default" else float(init)
            record = replication_run(
                {"smear_keys": True}, seed, set_smear(weight), args.steps, args.every, args.stop_at
            )
            record = {"init": init, **record}
            print(json.dumps({k: v for k, v in record.items() if k != "induction_curve"}))
            runs.append(record)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
