"""The natural-text replication's results (`results.json`) and report (`report.md`).

Read with `replicate_text.py`, which trains and measures the runs; this module only
summarizes them: per run, per model over seeds, and the verdict against Olsson et al.
(2022), whatever it is. A model "forms induction heads" in a run when some head's final
prefix-matching score exceeds the threshold and the best score's jump is a detected
phase change (`dynamics.dynamics_summary`), as in the synthetic replication.
"""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookingglass.training.dynamics import icl_windows
from lookingglass.training.replicate import phase_window

EXPECTED = {"attn1": False, "attn1-smeared": True, "attn2": True}


def formed(summary: dict[str, Any]) -> bool:
    """Induction heads above the threshold at the end, reached in a detected jump."""
    return bool(summary["induction_heads"]) and bool(summary["induction_phase"]["detected"])


def text_results(
    settings: Any,
    summaries: dict[str, dict[str, Any]],
    baselines: dict[str, Any],
    seconds: float,
    command: str,
    unfinished: dict[str, dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """`results.json`: settings, baselines, every finished run's summary, per-model
    aggregates over seeds (natural text only), the verdict, and the runs left unfinished
    (`unfinished`: name -> `analyze_partial` summary of the snapshots reached, or None
    when not measured; the verdict covers the finished runs only)."""
    from lookingglass.training.replicate_text import parse_run_name

    per_model: dict[str, dict[str, Any]] = {}
    for model, want in EXPECTED.items():
        runs = [s for n, s in summaries.items() if parse_run_name(n)[::2] == (model, 0.0)]
        if not runs:
            continue
        per_model[model] = {
            "seeds": len(runs),
            "formed_in": sum(formed(s) for s in runs),
            "icl_jump_together_in": sum(formed(s) and s["coincide"] for s in runs),
            "expected_induction_heads": want,
            "final_icl_score": _spread([s["final_icl_score"] for s in runs]),
            "final_eval_loss": _spread([s["final_eval_loss"] for s in runs]),
            "max_induction_score": _spread([s["max_induction_score"] for s in runs]),
            "matches_in": sum(formed(s) == want and (s["coincide"] or not want) for s in runs),
        }
    replicated = bool(per_model) and all(m["matches_in"] == m["seeds"] for m in per_model.values())
    early, late = icl_windows(settings.n_ctx)
    return {
        "experiment": "induction-heads",
        "data": "text",
        "settings": asdict(settings),
        "corpus": "King James Bible, pinned (lookingglass.training.corpus), character "
        "tokenizer trained on the training chapters; held-out chapters every 20th",
        "icl_score": f"mean loss over tokens {late.start}-{late.stop - 1} minus over tokens "
        f"{early.start}-{early.stop - 1} (of {settings.n_ctx})",
        "baselines_heldout_nats": baselines,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}",
        "runs": summaries,
        "unfinished": unfinished or {},
        "per_model": per_model,
        "verdict": {"replicated_on_natural_text": replicated},
        "command": command,
        "seconds_this_invocation": round(seconds, 1),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "min": round(float(np.min(values)), 4),
        "max": round(float(np.max(values)), 4),
    }


def text_report(results: dict[str, Any]) -> str:
    """`report.md` from `text_results`."""
    s = results["settings"]
    base = results["baselines_heldout_nats"]
    replicated = results["verdict"]["replicated_on_natural_text"]
    lines = [
        "# Induction heads on natural text",
        "",
        "Olsson et al. (2022): attention-only models with two layers, or one layer with "
        "smeared keys, form induction heads in a phase change that coincides with a jump of "
        "the in-context-learning (ICL) score; one layer without smeared keys does not. Here on "
        "the King James Bible only, character by character (mixture runs: part of the rows "
        "replaced by synthetic repeated sequences).",
        "",
        f"**Outcome: {'replicated' if replicated else 'NOT replicated'} on natural text at this "
        "budget** (per model over seeds below; every run after it).",
        "",
        f"Baselines on the held-out chapters, same tokenizer: unigram {base['unigram']:.3f}, "
        f"interpolated (Witten-Bell) bigram {base['bigram']:.3f} nats/character.",
        "",
        "| model | seeds | formed induction heads | ICL jump together | final ICL score "
        "(mean, range) | held-out loss (mean, range) | best induction score (mean, range) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, m in results["per_model"].items():
        lines.append(
            f"| {model} | {m['seeds']} | {m['formed_in']}/{m['seeds']} (expected: "
            f"{'yes' if m['expected_induction_heads'] else 'no'}) | "
            f"{m['icl_jump_together_in']}/{m['seeds']} | {_fmt(m['final_icl_score'], '+.3f')} | "
            f"{_fmt(m['final_eval_loss'], '.3f')} | {_fmt(m['max_induction_score'], '.2f')} |"
        )
    lines += [
        "",
        f"| run | induction heads (final > {s['induction_threshold']}) | best induction | "
        "best previous-token | induction jump (steps) | ICL jump (steps) | together | final "
        "ICL score | held-out loss | snapshots | train time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["runs"].items():
        heads = ", ".join(f"{h['head']} {h['final_score']:.2f}" for h in r["induction_heads"])
        lines.append(
            f"| {name} | {heads or 'none'} | {r['max_induction_score']:.2f} | "
            f"{r['max_previous_token_score']:.2f} | {phase_window(r['induction_phase'])} | "
            f"{phase_window(r['icl_phase'])} | {'yes' if r['coincide'] else 'no'} | "
            f"{r['final_icl_score']:+.3f} | {r['final_eval_loss']:.3f} | {r['n_snapshots']} | "
            f"{r.get('train_seconds', 0):.0f} s |"
        )
    measured = {n: r for n, r in results["unfinished"].items() if r and "max_induction_score" in r}
    if measured:
        lines += [
            "",
            f"Runs not finished (of {s['n_steps']} steps), measured on the snapshots they "
            "reached (no replayed snapshots; not in the verdict):",
            "",
            "| run | reached step | best induction | best previous-token | induction jump "
            "(steps) | ICL jump (steps) | ICL score at the last snapshot | held-out loss "
            "there |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in measured.items():
            lines.append(
                f"| {name} | {r['last_snapshot']} | {r['max_induction_score']:.2f} | "
                f"{r['max_previous_token_score']:.2f} | {phase_window(r['induction_phase'])} | "
                f"{phase_window(r['icl_phase'])} | {r['final_icl_score']:+.3f} | "
                f"{r['final_eval_loss']:.3f} |"
            )
    others = [n for n in results["unfinished"] if n not in measured]
    if others:
        lines += ["", f"Runs not finished and not measured: {', '.join(others)}."]
    lines += [
        "",
        "![scores of the seed-0 runs](scores.png)",
        "",
        "![loss curves of the seed-0 runs](loss_curves.png)",
        "",
        "![mixture runs](mixture/scores.png)",
        "",
        "## Set-up",
        "",
        f"- Data: {results['corpus']}. Rows of {s['n_ctx']} characters (BOS first); "
        f"held-out loss and ICL score on the first {s['n_eval_rows']} held-out rows. ICL "
        f"score: {results['icl_score']}.",
        f"- Mixture runs (2 layers): that fraction of the training rows replaced by synthetic "
        f"rows: BOS, random characters in which segments of {s['min_segment_len']}-"
        f"{s['max_segment_len']} characters recur (`induction_training_data`).",
        f"- Models: attention-only, d_model {s['d_model']}, {s['d_model'] // s['d_head']} "
        f"heads of {s['d_head']}; smeared keys start as an even mix (`replicate.build_model`).",
        f"- Training: {s['n_steps']} steps of {s['batch_size']} rows, lr {s['lr']} "
        f"({s['warmup_steps']} warmup steps, then x{s['min_lr_ratio']} by the end), in chunks "
        f"of {s['chunk_steps']} steps; seeds {s['seeds']}. Snapshots log-spaced and linear, "
        f"plus {s['n_refine_snapshots']} replayed inside each run's largest detected jump.",
        f"- Machine: {results['machine']}.",
        "",
        f"Reproduce: `{results['command']}` (resumable: run it again after a stop).",
        "",
    ]
    return "\n".join(lines)


def _fmt(spread: dict[str, float], spec: str) -> str:
    return f"{spread['mean']:{spec}} ({spread['min']:{spec}} to {spread['max']:{spec}})"


def plot_text_runs(finished: dict[str, tuple], settings: Any, out: Path) -> None:
    """The synthetic replication's plots, for the first seed's three models and for the
    mixture runs (in `mixture/`); `finished` maps run names to (`TrainResult`,
    `Dynamics`, summary)."""
    from lookingglass.training.replicate import MODELS, ModelRun, plot_runs
    from lookingglass.training.replicate_text import parse_run_name, run_names

    def runs(names: list[str], label) -> list[ModelRun]:
        return [
            ModelRun(label(n), {}, finished[n][0], finished[n][1], finished[n][2], 0.0)
            for n in names
        ]

    seed = settings.seeds[0]
    first = [f"{m}-seed{seed}" for m in MODELS if f"{m}-seed{seed}" in finished]
    if first:
        plot_runs(runs(first, lambda n: parse_run_name(n)[0]), out)
    mixes = [n for n in run_names(settings) if parse_run_name(n)[2] > 0 and n in finished]
    if mixes:
        (out / "mixture").mkdir(exist_ok=True)
        names = [n for n in [f"attn2-seed{seed}"] if n in finished] + mixes
        plot_runs(runs(names, lambda n: f"{parse_run_name(n)[2]:.0%} synthetic"), out / "mixture")
