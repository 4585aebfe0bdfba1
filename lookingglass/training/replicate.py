"""`lookingglass replicate induction-heads`: the induction-heads phase change, on a CPU.

Olsson et al. (2022) found that transformers with at least two layers (or one layer with
"smeared keys") form induction heads in a sudden phase change early in training, at the
same time as their in-context-learning score jumps; one-layer models without smeared
keys do not. This module trains the three attention-only models of that comparison on
the same data, with the same seed and schedule, snapshots each through training, and
measures every snapshot (`lookingglass.training.dynamics`):

    attn1           1 layer
    attn1-smeared   1 layer, smeared keys
    attn2           2 layers

Data. Natural text needs far more tokens than a 20-minute CPU budget allows before
induction heads form (we measured no induction head in a 2-layer model after 3M tokens
of the King James Bible), so the replication trains on synthetic sequences in which
induction is the way to lower the loss: uniformly random tokens in which random earlier
segments recur at random later offsets (`induction_training_data`). Random offsets
matter: with a fixed repeat distance a one-layer model learns a positional shortcut.
Copying is the only thing to learn there, so an ICL jump when induction heads form is
close to true by construction; `replicate_text.py` (`--data text`) asks the question of
natural text.

The report (`report.md`, PNG plots, `results.json`) states the measured outcome for
each model, whatever it is.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookingglass.config import ModelConfig
from lookingglass.training.dynamics import (
    Dynamics,
    analyze_snapshots,
    dynamics_summary,
    icl_windows,
    loss_pca,
    sample_tokens,
    write_json,
)
from lookingglass.training.snapshots import Snapshots, SnapshotSaver, snapshot_steps
from lookingglass.training.synthetic import induction_training_data
from lookingglass.training.train import TrainConfig, TrainResult, train
from lookingglass.utils import write_atomic

MODELS: dict[str, dict[str, Any]] = {
    "attn1": {"n_layers": 1},
    "attn1-smeared": {"n_layers": 1, "smear_keys": True},
    "attn2": {"n_layers": 2},
}


@dataclass(frozen=True)
class ReplicationSettings:
    """Sizes of one replication run (`DEFAULT` and `QUICK` below)."""

    n_steps: int = 2500
    d_vocab: int = 128
    n_ctx: int = 48
    d_model: int = 64
    d_head: int = 16
    batch_size: int = 32
    lr: float = 5e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    n_train_rows: int = 60_000
    n_eval_rows: int = 2000
    min_segment_len: int = 8
    max_segment_len: int = 16
    n_repeats: int = 3
    n_log_snapshots: int = 20
    n_linear_snapshots: int = 40
    n_loss_tokens: int = 2000
    induction_threshold: float = 0.4
    seed: int = 0


DEFAULT = ReplicationSettings()
# Constant learning rate after warmup: a cosine over a short run would slow the phase change.
QUICK = ReplicationSettings(
    n_steps=700,
    min_lr_ratio=1.0,
    n_train_rows=20_000,
    n_eval_rows=500,
    n_log_snapshots=8,
    n_linear_snapshots=14,
    n_loss_tokens=500,
)


@dataclass
class ModelRun:
    """One model's run: training history, snapshot measurements, verdict, timings."""

    name: str
    config: dict[str, Any]
    result: TrainResult
    dynamics: Dynamics
    summary: dict[str, Any]
    train_seconds: float
    analysis_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def model_config(name: str, settings: ReplicationSettings) -> ModelConfig:
    """The attention-only `ModelConfig` of one of `MODELS`."""
    return ModelConfig(
        d_model=settings.d_model,
        d_head=settings.d_head,
        n_ctx=settings.n_ctx,
        d_vocab=settings.d_vocab,
        attn_only=True,
        seed=settings.seed,
        model_name=f"replication-{name}",
        **MODELS[name],
    )


def build_model(name: str, settings: ReplicationSettings, tokenizer: Any = None):
    """A fresh model for `name` (with `tokenizer`, if given). Smeared keys start as an
    even mix of the keys at j and j-1 (`sigmoid(0) = 1/2`), not the library's near-plain
    default (0.95): from 0.95 the mix must travel far before the key carries the previous
    token, which at our step counts is the difference between forming an induction head
    and not. Olsson et al. do not state their initialization; an even mix favours neither
    outcome."""
    from lookingglass.model.transformer import HookedTransformer

    model = HookedTransformer(model_config(name, settings), tokenizer=tokenizer)
    with torch.no_grad():
        for block in model.blocks:
            smear = getattr(block.attn.key_mixer, "smear_logit", None)
            if smear is not None:
                smear.zero_()
    return model


def make_data(settings: ReplicationSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out rows (disjoint seeds), no BOS: every token is random."""
    common = dict(
        seq_len=settings.n_ctx,
        d_vocab=settings.d_vocab,
        min_segment_len=settings.min_segment_len,
        max_segment_len=settings.max_segment_len,
        n_repeats=settings.n_repeats,
    )
    train_rows = induction_training_data(settings.n_train_rows, seed=settings.seed, **common)
    eval_rows = induction_training_data(settings.n_eval_rows, seed=settings.seed + 1, **common)
    return train_rows, eval_rows


def run_replication(
    out_dir: str | Path,
    quick: bool = False,
    settings: ReplicationSettings | None = None,
    progress: bool = True,
    models: tuple[str, ...] = tuple(MODELS),
) -> dict[str, Any]:
    """Train, snapshot and measure each model, then write the report into `out_dir`.

    Returns:
        The `results.json` content: settings, per-model summaries and timings, and the
        verdict against the published finding.
    """
    settings = settings or (QUICK if quick else DEFAULT)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_rows, eval_rows = make_data(settings)
    sample = sample_tokens(eval_rows, settings.n_loss_tokens, seed=settings.seed)
    steps = snapshot_steps(settings.n_steps, settings.n_log_snapshots, settings.n_linear_snapshots)
    config = TrainConfig(
        n_steps=settings.n_steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        warmup_steps=settings.warmup_steps,
        min_lr_ratio=settings.min_lr_ratio,
        eval_every=max(1, settings.n_steps // 20),
        seed=settings.seed,
        progress=progress,
    )
    runs = []
    for name in models:
        model = build_model(name, settings)
        folder = out / name / "snapshots"
        result = train(
            model, train_rows, config, eval_data=eval_rows, callbacks=[SnapshotSaver(folder, steps)]
        )
        analysis_start = time.perf_counter()
        dynamics = analyze_snapshots(Snapshots(folder), eval_rows, sample, prepend_bos=False)
        dynamics.save(out / name / "dynamics.npz")
        summary = dynamics_summary(dynamics, settings.induction_threshold)
        run = ModelRun(
            name,
            model.cfg.to_dict(),
            result,
            dynamics,
            summary,
            result.seconds,
            time.perf_counter() - analysis_start,
        )
        if hasattr(model.blocks[0].attn.key_mixer, "smear_logit"):
            run.extra["smear_weight_on_current_key"] = [
                [round(float(w), 3) for w in torch.sigmoid(b.attn.key_mixer.smear_logit.detach())]
                for b in model.blocks
            ]
        runs.append(run)
        if progress:
            print(f"{name}: {json.dumps(summary)}", flush=True)
    plot_runs(runs, out)
    results = _results(runs, settings, quick, time.perf_counter() - started)
    write_atomic(out / "report.md", _report(results, runs, settings))
    write_json(results, out / "results.json")
    return results


# -------------------------------------------------------------------------- verdict
def _verdict(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Does each model behave as Olsson et al. report?"""
    expected = {"attn1": False, "attn1-smeared": True, "attn2": True}
    checks = {}
    for name, want in expected.items():
        if name not in summaries:
            continue
        s = summaries[name]
        formed = bool(s["induction_heads"]) and s["induction_phase"]["detected"]
        checks[name] = {
            "expected_induction_heads": want,
            "formed_induction_heads": formed,
            "icl_jump_coincides": s["coincide"],
            "matches": formed == want and (s["coincide"] if want else True),
        }
    return {"per_model": checks, "replicated": all(c["matches"] for c in checks.values())}


def _results(runs: list[ModelRun], settings: ReplicationSettings, quick: bool, seconds: float):
    summaries = {r.name: r.summary for r in runs}
    early, late = icl_windows(settings.n_ctx)
    return {
        "experiment": "induction-heads",
        "quick": quick,
        "settings": asdict(settings),
        "data": "synthetic: induction_training_data (random tokens, random segments recur at "
        "random later offsets), no BOS",
        "icl_score": f"mean loss over tokens {late.start}-{late.stop - 1} minus over tokens "
        f"{early.start}-{early.stop - 1} (of {settings.n_ctx})",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}",
        "models": {
            r.name: {
                **r.summary,
                "train_seconds": round(r.train_seconds, 1),
                "analysis_seconds": round(r.analysis_seconds, 1),
                "final_train_loss": round(r.result.final_train_loss, 4),
                **r.extra,
            }
            for r in runs
        },
        "verdict": _verdict(summaries),
        "total_seconds": round(seconds, 1),
    }


# --------------------------------------------------------------------------- report
def _report(results: dict[str, Any], runs: list[ModelRun], settings: ReplicationSettings) -> str:
    verdict = results["verdict"]
    lines = [
        "# Induction heads: replication of the phase change",
        "",
        "Olsson et al. (2022), *In-context Learning and Induction Heads*: models with two "
        "layers, or one layer with smeared keys, form induction heads in a phase change that "
        "coincides with a jump of the in-context-learning (ICL) score; a one-layer model "
        "without smeared keys does not.",
        "",
        f"**Outcome: {'replicated' if verdict['replicated'] else 'NOT replicated'}** "
        "(measured below; see the definitions at the end).",
        "",
        "| model | induction heads (final score > "
        f"{settings.induction_threshold}, first step above) | best induction score | "
        "induction jump (steps) | ICL jump (steps) | together | final ICL score | final "
        "held-out loss | as published | train time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        s = results["models"][run.name]
        heads = (
            ", ".join(
                f"{h['head']} {h['final_score']:.2f} (step {h['first_step_above']})"
                for h in s["induction_heads"]
            )
            or "none"
        )
        lines.append(
            f"| {run.name} | {heads} | {s['max_induction_score']:.2f} | "
            f"{phase_window(s['induction_phase'])} | {phase_window(s['icl_phase'])} | "
            f"{'yes' if s['coincide'] else 'no'} | {s['final_icl_score']:+.2f} | "
            f"{s['final_eval_loss']:.3f} | "
            f"{'yes' if verdict['per_model'][run.name]['matches'] else 'no'} | "
            f"{s['train_seconds']:.0f} s |"
        )
    early, late = icl_windows(settings.n_ctx)
    lines += [
        "",
        "![induction and ICL scores](scores.png)",
        "",
        "![loss curves](loss_curves.png)",
        "",
        "![per-token loss PCA](loss_pca.png)",
        "",
        "![final induction scores per head](heads.png)",
        "",
        "## Set-up",
        "",
        f"- Data: {results['data']}. Vocabulary {settings.d_vocab}, context {settings.n_ctx}, "
        f"segments of {settings.min_segment_len}-{settings.max_segment_len} tokens, "
        f"{settings.n_repeats} copy events per sequence; {settings.n_train_rows} training rows, "
        f"{settings.n_eval_rows} held-out rows (another seed).",
        f"- Models: attention-only, d_model {settings.d_model}, "
        f"{settings.d_model // settings.d_head} heads of {settings.d_head}, LayerNorm, learned "
        "positions; same seed for all. Smeared keys start as an even mix (see `build_model`).",
        f"- Training: {settings.n_steps} steps of {settings.batch_size} rows, AdamW, lr "
        f"{settings.lr} with {settings.warmup_steps} warmup steps and cosine decay to "
        f"{settings.min_lr_ratio}x; "
        f"{len(runs[0].dynamics.steps)} snapshots (log-spaced and linear).",
        f"- Machine: {results['machine']}. Total time {results['total_seconds']:.0f} s.",
        "",
        "## Definitions",
        "",
        "- Induction (prefix-matching) score of a head: attention from each token of the second "
        "half of a repeated random sequence to the token after its first occurrence "
        "(`lookingglass.analysis.heads.induction_scores`). Induction head: final score > "
        f"{settings.induction_threshold}.",
        f"- ICL score: mean held-out loss over tokens {late.start}-{late.stop - 1} minus over "
        f"tokens {early.start}-{early.stop - 1} (the paper's token 500 minus token 50 of 1024, "
        "as windows at the same relative places; see `dynamics.icl_score`). More negative = "
        "more in-context learning. A model without induction heads also lowers its late-token "
        "loss by predicting tokens it has already seen in the context (in-context unigram "
        "statistics), so the ICL score of the one-layer model improves too, less and without "
        "an induction jump.",
        "- Jump window (`dynamics.phase_change`): on the curve smoothed over 3 snapshots, the "
        "largest rise between two snapshots at most 25% of training apart; the window is the "
        "narrowest pair of snapshots keeping 80% of that rise. A phase change needs a rise of "
        "0.3 (best induction score) or 0.1 nats (ICL, i.e. of -ICL score) and an abrupt "
        "curve: at least half of its change inside 25% of training and inside one doubling "
        "of the step count (an exponential learning curve puts at most 1/4 in a doubling; "
        "docs/phase_changes.md). *Together*: both are phase changes and their midpoints "
        "(half-way through the steepest doubling) are at most 5% of training apart.",
        "- Per-token loss PCA: loss on "
        f"{settings.n_loss_tokens} held-out tokens, each from a different sequence, at every "
        "snapshot of every model, PCA over all of them jointly (numpy SVD).",
        "",
        "Reproduce: `lookingglass replicate induction-heads"
        f"{' --quick' if results['quick'] else ''} --out DIR`.",
        "",
    ]
    return "\n".join(lines)


def phase_window(phase: dict[str, Any]) -> str:
    """A `PhaseChange.to_dict()` as report text: "start-end (+rise)", or "none (...)"."""
    text = f"{phase['start']}-{phase['end']} (+{phase['rise']:.2f})"
    return text if phase["detected"] else f"none (largest: {text})"


# ---------------------------------------------------------------------------- plots
def plot_runs(runs: list[ModelRun], out: Path) -> None:
    """Write scores.png, loss_curves.png, loss_pca.png and heads.png for `runs` into `out`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    colors = {"attn1": "tab:gray", "attn1-smeared": "tab:orange", "attn2": "tab:blue"}

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_ind, ax_icl = fig.subplots(1, 2)
    for run in runs:
        d, s, c = run.dynamics, run.summary, colors.get(run.name)
        best = d.induction.reshape(len(d.steps), -1).max(axis=1)
        ax_ind.plot(d.steps, best, "o-", ms=3, color=c, label=run.name)
        ax_icl.plot(d.steps, d.icl, "o-", ms=3, color=c, label=run.name)
        for ax, phase in ((ax_ind, s["induction_phase"]), (ax_icl, s["icl_phase"])):
            if phase["detected"]:
                ax.axvspan(phase["start"], phase["end"], color=c, alpha=0.15)
    ax_ind.set(title="best induction score of any head", xlabel="step", ylabel="score")
    ax_icl.set(title="ICL score (late minus early token loss)", xlabel="step", ylabel="nats")
    for ax in (ax_ind, ax_icl):
        ax.legend()
    _save_png(fig, out / "scores.png")

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_train, ax_pos = fig.subplots(1, 2)
    for run in runs:
        c = colors.get(run.name)
        losses = np.asarray(run.result.train_losses)
        window = max(1, len(losses) // 50)
        smoothed = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax_train.plot(
            np.arange(window, len(losses) + 1), smoothed, color=c, label=f"{run.name} train"
        )
        ax_train.plot(run.result.eval_steps, run.result.eval_losses, "o", ms=3, color=c)
        ax_pos.plot(
            np.arange(1, run.dynamics.position_loss.shape[1] + 1),
            run.dynamics.position_loss[-1],
            color=c,
            label=run.name,
        )
    ax_train.set(title="loss (line: train, dots: held-out)", xlabel="step", ylabel="nats")
    ax_pos.set(title="final held-out loss by token position", xlabel="token index", ylabel="nats")
    ax_train.legend()
    ax_pos.legend()
    _save_png(fig, out / "loss_curves.png")

    joint = np.concatenate([r.dynamics.loss_vectors for r in runs])
    pca = loss_pca(joint, k=2)
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    start = 0
    for run in runs:
        n = len(run.dynamics.steps)
        path = pca.trajectory[start : start + n]
        start += n
        ax.plot(path[:, 0], path[:, 1], "o-", ms=3, color=colors.get(run.name), label=run.name)
        ax.annotate(f"{run.dynamics.steps[-1]}", path[-1], fontsize=7)
    ax.set(
        title="per-token loss PCA (all snapshots of all models)",
        xlabel=f"PC1 ({pca.explained_variance_ratio[0]:.0%})",
        ylabel=f"PC2 ({pca.explained_variance_ratio[1]:.0%})",
    )
    ax.legend()
    _save_png(fig, out / "loss_pca.png")

    fig = Figure(figsize=(4 * len(runs), 3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(runs)))
    for ax, run in zip(axes, runs, strict=True):
        final = run.dynamics.induction[-1]
        image = ax.imshow(final, vmin=0, vmax=1, cmap="Blues", aspect="auto")
        for (layer, head), value in np.ndenumerate(final):
            ax.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=8)
        ax.set(
            title=f"{run.name}: final induction score",
            xlabel="head",
            ylabel="layer",
            xticks=range(final.shape[1]),
            yticks=range(final.shape[0]),
        )
    fig.colorbar(image, ax=axes.tolist())
    _save_png(fig, out / "heads.png")


def _save_png(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG, atomically (`write_atomic`)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())
