"""`lookingglass replicate induction-heads --data text`: the comparison on natural text.

The synthetic replication (`replicate.py`) trains on random tokens in which copying is
the way to lower the loss, so induction pays by construction. This module asks Olsson
et al.'s (2022) actual question on natural text only: the pinned King James Bible
(`corpus.py`), character by character (`train_char_tokenizer`, 75 tokens: a tiny
unembedding, and every token of the random-token probe is one the model has seen).
Rows are 256 characters, long enough for an ICL score (`dynamics.icl_score`: mean loss
over characters 128-255 minus over characters 12-25).

Runs, each in its own folder under the output folder:

    attn1-seedS, attn1-smeared-seedS, attn2-seedS   natural text, one per seed
    attn2-seedS-mixP                                natural text with P% of the rows
                                                    replaced by synthetic repeated
                                                    sequences (`induction_training_data`
                                                    over the same characters)

Each run trains in chunks (`chunk_steps`) with a checkpoint after every chunk, so a stopped
command continues where it stopped when run again (`train`'s exact resume), and the
chunk checkpoints let the analysis go back: after measuring the snapshots, the run is
replayed from the last chunk before the largest jump (induction score, else ICL score)
with `n_refine_snapshots` extra snapshots inside the jump window.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookingglass.errors import InputError
from lookingglass.training.baselines import bigram_baseline
from lookingglass.training.dynamics import (
    Dynamics,
    analyze_snapshots,
    dynamics_summary,
    sample_tokens,
    write_json,
)
from lookingglass.training.replicate import MODELS, ReplicationSettings, build_model
from lookingglass.training.snapshots import Snapshots, SnapshotSaver, snapshot_steps
from lookingglass.training.train import (
    CHECKPOINT_FILE,
    TrainConfig,
    TrainResult,
    load_checkpoint,
    train,
)
from lookingglass.utils import write_atomic


@dataclass(frozen=True)
class TextSettings:
    """Sizes of one natural-text replication (`TEXT_DEFAULT`, `TEXT_QUICK`)."""

    n_steps: int = 1500
    n_ctx: int = 256
    d_model: int = 64
    d_head: int = 16
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 1.0
    chunk_steps: int = 250
    n_eval_rows: int = 200
    n_loss_tokens: int = 200
    n_log_snapshots: int = 10
    n_linear_snapshots: int = 12
    n_refine_snapshots: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    mixtures: tuple[float, ...] = (0.05, 0.2, 1.0)
    min_segment_len: int = 8
    max_segment_len: int = 16
    induction_threshold: float = 0.4


TEXT_DEFAULT = TextSettings()
TEXT_QUICK = TextSettings(
    n_steps=60,
    n_ctx=64,
    batch_size=8,
    chunk_steps=30,
    n_eval_rows=32,
    n_loss_tokens=32,
    n_log_snapshots=4,
    n_linear_snapshots=4,
    n_refine_snapshots=3,
    seeds=(0,),
    mixtures=(1.0,),
)


@dataclass(frozen=True)
class TextData:
    """The tokenizer and the token rows every run of one replication shares."""

    tokenizer: Any
    train_rows: torch.Tensor
    heldout_rows: torch.Tensor
    baselines: dict[str, Any]


def load_text_data(settings: TextSettings) -> TextData:
    """Character-tokenized training and held-out chapters in rows of `n_ctx` (BOS first),
    with the count baselines (`bigram_baseline`) on the same rows."""
    from lookingglass.training.corpus import load_corpus
    from lookingglass.training.data import tokenize_and_concatenate
    from lookingglass.training.tokenizer import train_char_tokenizer

    corpus = load_corpus()
    tokenizer = train_char_tokenizer(corpus.train)
    train_rows = tokenize_and_concatenate(corpus.train, tokenizer, settings.n_ctx)
    heldout_rows = tokenize_and_concatenate(corpus.heldout, tokenizer, settings.n_ctx)
    baselines = bigram_baseline(train_rows, heldout_rows, len(tokenizer)).to_dict()
    baselines["corpus_sha256"] = corpus.sha256
    return TextData(tokenizer, train_rows, heldout_rows, baselines)


def run_names(settings: TextSettings) -> list[str]:
    """Every run of the replication, in the order they are trained."""
    names = [f"{model}-seed{seed}" for seed in settings.seeds for model in MODELS]
    seed = settings.seeds[0]
    return names + [f"attn2-seed{seed}-mix{round(100 * p)}" for p in settings.mixtures]


def parse_run_name(name: str) -> tuple[str, int, float]:
    """(model, seed, synthetic fraction) of a run name from `run_names`."""
    model, _, rest = name.rpartition("-seed")
    seed, _, mix = rest.partition("-mix")
    return model, int(seed), int(mix) / 100 if mix else 0.0


def mixed_rows(data: TextData, fraction: float, settings: TextSettings, seed: int) -> torch.Tensor:
    """The training rows with `fraction` of them (chosen with `seed`) replaced by
    synthetic repeated sequences: BOS, then random characters in which random earlier
    segments recur (`induction_training_data`; never BOS/EOS or `<|unk|>`)."""
    from lookingglass.training.synthetic import induction_training_data

    rows = data.train_rows.clone()
    n = round(fraction * len(rows))
    if n == 0:
        return rows
    generator = torch.Generator().manual_seed(1000 + seed)
    chosen = torch.randperm(len(rows), generator=generator)[:n]
    rows[chosen] = induction_training_data(
        n,
        settings.n_ctx,
        len(data.tokenizer),
        seed=1000 + seed,
        bos_token=data.tokenizer.bos_token_id,
        reserved=(data.tokenizer.unk_token_id,),
        min_segment_len=settings.min_segment_len,
        max_segment_len=settings.max_segment_len,
    )
    return rows


def train_config(settings: TextSettings, seed: int, run_dir: Path, progress: bool) -> TrainConfig:
    """The `TrainConfig` of one run (checkpointing into `run_dir/checkpoint`)."""
    return TrainConfig(
        n_steps=settings.n_steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        warmup_steps=settings.warmup_steps,
        min_lr_ratio=settings.min_lr_ratio,
        eval_every=settings.chunk_steps,
        eval_rows=min(64, settings.n_eval_rows),
        seed=seed,
        checkpoint_dir=str(run_dir / "checkpoint"),
        progress=progress,
    )


def run_model(name: str, settings: TextSettings, data: TextData, seed: int):
    """A fresh model `name` (a key of `MODELS`) at the settings' sizes, seeded with `seed`."""
    sizes = ReplicationSettings(
        d_vocab=len(data.tokenizer),
        n_ctx=settings.n_ctx,
        d_model=settings.d_model,
        d_head=settings.d_head,
        seed=seed,
    )
    return build_model(name, sizes, tokenizer=data.tokenizer)


def train_run(
    name: str,
    out: Path,
    settings: TextSettings,
    data: TextData,
    deadline: float | None = None,
    progress: bool = False,
) -> TrainResult | None:
    """Train run `name` chunk by chunk, continuing from its checkpoint if there is one.

    Returns:
        The whole run's `TrainResult`, or None when `deadline` (a `time.monotonic()`
        value) passed before the run finished (run the command again to continue).
    """
    model_name, seed, fraction = parse_run_name(name)
    run_dir = out / name
    config = train_config(settings, seed, run_dir, progress)
    state = _read_state(run_dir)
    checkpoint = run_dir / "checkpoint" / CHECKPOINT_FILE
    done = int(load_checkpoint(checkpoint)["step"]) if checkpoint.is_file() else 0
    result = _result_from_checkpoint(checkpoint) if done else None
    if done >= settings.n_steps:
        return result
    rows = mixed_rows(data, fraction, settings, seed)
    eval_rows = data.heldout_rows[: settings.n_eval_rows]
    steps = snapshot_steps(settings.n_steps, settings.n_log_snapshots, settings.n_linear_snapshots)
    saver = SnapshotSaver(run_dir / "snapshots", steps)
    model = run_model(model_name, settings, data, seed)
    while done < settings.n_steps:
        if deadline is not None and time.monotonic() > deadline:
            return None
        stop = min(done + settings.chunk_steps, settings.n_steps)
        result = train(
            model,
            rows,
            config,
            eval_data=eval_rows,
            callbacks=[saver],
            resume_from=checkpoint if done else None,
            stop_at_step=stop,
        )
        (run_dir / "chunks").mkdir(exist_ok=True)
        shutil.copyfile(checkpoint, run_dir / "chunks" / f"step_{stop:06d}.pt")
        state["train_seconds"] = state.get("train_seconds", 0.0) + result.seconds
        _write_state(run_dir, state)
        done = stop
    if hasattr(model.blocks[0].attn.key_mixer, "smear_logit"):
        state["smear_weight_on_current_key"] = [
            [round(float(w), 3) for w in torch.sigmoid(b.attn.key_mixer.smear_logit.detach())]
            for b in model.blocks
        ]
        _write_state(run_dir, state)
    return result


def analyze_run(
    name: str, out: Path, settings: TextSettings, data: TextData, progress: bool = False
) -> tuple[Dynamics, dict[str, Any]]:
    """Measure a trained run's snapshots, add dense snapshots inside its largest jump
    (replayed from the chunk checkpoint before it), and write `dynamics.npz` and
    `summary.json`. A run analysed before is read back instead."""
    run_dir = out / name
    if (run_dir / "summary.json").is_file():
        return Dynamics.load(run_dir / "dynamics.npz"), json.loads(
            (run_dir / "summary.json").read_text()
        )
    started = time.perf_counter()
    eval_rows = data.heldout_rows[: settings.n_eval_rows]
    sample = sample_tokens(data.heldout_rows, settings.n_loss_tokens, seed=0)
    snapshots = Snapshots(run_dir / "snapshots")
    dynamics = analyze_snapshots(snapshots, eval_rows, sample)
    summary = dynamics_summary(dynamics, settings.induction_threshold)
    window = _jump_window(summary)
    refined: list[int] = []
    if window is not None:
        refined = replay_snapshots(
            name, out, settings, data, window, set(snapshots.steps), progress
        )
        snapshots = Snapshots(run_dir / "snapshots")
        added = analyze_snapshots(((s, snapshots.load(s)) for s in refined), eval_rows, sample)
        dynamics = _merge(dynamics, added)
        summary = dynamics_summary(dynamics, settings.induction_threshold)
    state = _read_state(run_dir)
    summary = {
        **summary,
        "refined_window": window,
        "refined_steps": refined,
        "n_snapshots": len(dynamics.steps),
        **state,
        "analysis_seconds": round(time.perf_counter() - started, 1),
    }
    dynamics.save(run_dir / "dynamics.npz")
    write_json(summary, run_dir / "summary.json")
    return dynamics, summary


def _jump_window(summary: dict[str, Any]) -> tuple[int, int] | None:
    """The detected induction jump's window, else the detected ICL jump's, else None."""
    for key in ("induction_phase", "icl_phase"):
        phase = summary[key]
        if phase["detected"] and phase["end"] > phase["start"]:
            return int(phase["start"]), int(phase["end"])
    return None


def replay_snapshots(
    name: str,
    out: Path,
    settings: TextSettings,
    data: TextData,
    window: tuple[int, int],
    existing: set[int],
    progress: bool = False,
) -> list[int]:
    """Re-train run `name` from the chunk checkpoint at or before `window[0]`, saving
    snapshots at `n_refine_snapshots` steps inside the window (those not in `existing`).
    The run's own checkpoint is left alone. Returns the new snapshot steps."""
    model_name, seed, fraction = parse_run_name(name)
    run_dir = out / name
    start, end = window
    inside = np.linspace(start, end, settings.n_refine_snapshots + 2).round().astype(int)
    steps = sorted(set(int(s) for s in inside) - existing)
    if not steps:
        return []
    chunk = (start // settings.chunk_steps) * settings.chunk_steps
    resume = run_dir / "chunks" / f"step_{chunk:06d}.pt" if chunk else None
    # No checkpoint_dir: the replay must not overwrite the run's own checkpoint.
    config = TrainConfig(
        **{**asdict(train_config(settings, seed, run_dir, progress)), "checkpoint_dir": None}
    )
    model = run_model(model_name, settings, data, seed)
    train(
        model,
        mixed_rows(data, fraction, settings, seed),
        config,
        callbacks=[SnapshotSaver(run_dir / "snapshots", steps)],
        resume_from=resume,
        stop_at_step=max(steps),
    )
    return steps


def _merge(a: Dynamics, b: Dynamics) -> Dynamics:
    """Two measurements of one run's snapshots as one, in step order."""
    order = np.argsort(np.concatenate([a.steps, b.steps]), kind="stable")
    return Dynamics(
        **{
            f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)])[order]
            for f in fields(Dynamics)
        }
    )


def _result_from_checkpoint(path: Path) -> TrainResult:
    state = load_checkpoint(path)
    return TrainResult(
        train_losses=state["train_losses"].tolist(),
        eval_steps=state["eval_steps"].tolist(),
        eval_losses=state["eval_losses"].tolist(),
        tokens_seen=int(state["tokens_seen"]),
    )


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    write_json(state, run_dir / "state.json")


def run_text_replication(
    out_dir: str | Path,
    quick: bool = False,
    settings: TextSettings | None = None,
    only: tuple[str, ...] = (),
    minutes: float | None = None,
    progress: bool = True,
    plots: bool = True,
    partial: bool = False,
) -> dict[str, Any]:
    """Train (or continue), measure and report every run of the natural-text replication.

    Args:
        out_dir: the output folder; a folder used before must have the same settings.
        quick: `TEXT_QUICK` instead of `TEXT_DEFAULT` (ignored when `settings` is given).
        only: train and measure only these runs (names from `run_names`), e.g. to run
            several commands side by side; the report is written once all runs are done.
        minutes: stop starting new chunks after this many minutes; run again to continue.
        plots: write the PNG plots.
        partial: when runs are left, report the finished ones anyway, listing the others
            with the step they reached.

    Returns:
        `{"complete": False, "finished": [...], "left": [...]}` when stopped early, else
        the `results.json` content (`replicate_text_report.text_results`).
    """
    from lookingglass.training.replicate_text_report import (
        plot_text_runs,
        text_report,
        text_results,
    )

    settings = settings or (TEXT_QUICK if quick else TEXT_DEFAULT)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings)
    started = time.perf_counter()
    deadline = time.monotonic() + 60 * minutes if minutes else None
    names = run_names(settings)
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise InputError(f"unknown run(s) {unknown}; the runs are {names}.")
    data = load_text_data(settings)
    finished: dict[str, tuple[TrainResult, Dynamics, dict[str, Any]]] = {}
    for name in [n for n in names if not only or n in only]:
        result = train_run(name, out, settings, data, deadline, progress)
        if result is None:
            break
        dynamics, summary = analyze_run(name, out, settings, data, progress)
        finished[name] = (result, dynamics, summary)
    left = [n for n in names if not (out / n / "summary.json").is_file()]
    if left and not partial:
        return {"complete": False, "finished": sorted(set(names) - set(left)), "left": left}
    for name in names:  # runs finished by other commands
        if name not in finished and name not in left:
            result = _result_from_checkpoint(out / name / "checkpoint" / CHECKPOINT_FILE)
            finished[name] = (result, *analyze_run(name, out, settings, data))
    command = "lookingglass replicate induction-heads --data text" + (
        " --quick" if settings == TEXT_QUICK else ""
    )
    results = text_results(
        settings,
        {n: s for n, (_, _, s) in finished.items()},
        data.baselines,
        time.perf_counter() - started,
        f"{command} --out {out}",
        unfinished={
            n: analyze_partial(n, out, settings, data) if not only or n in only else None
            for n in left
        },
    )
    if plots:
        plot_text_runs(finished, settings, out)
    write_atomic(out / "report.md", text_report(results))
    write_json(results, out / "results.json")
    return {"complete": not left, "finished": sorted(finished), "left": left, **results}


def analyze_partial(name: str, out: Path, settings: TextSettings, data: TextData) -> dict[str, Any]:
    """Measure an unfinished run on the snapshots it has so far (no replay), into
    `partial_summary.json`, re-measured only when a newer snapshot exists. The summary's
    `steps_done` is the step of the run's checkpoint."""
    run_dir = out / name
    checkpoint = run_dir / "checkpoint" / CHECKPOINT_FILE
    steps_done = int(load_checkpoint(checkpoint)["step"]) if checkpoint.is_file() else 0
    path = run_dir / "partial_summary.json"
    old = json.loads(path.read_text()) if path.is_file() else None
    snapshots = Snapshots(run_dir / "snapshots") if steps_done else None
    if snapshots is None or len(snapshots) < 2:
        return {"steps_done": steps_done}
    if old is not None and old["last_snapshot"] == snapshots.steps[-1]:
        return old
    eval_rows = data.heldout_rows[: settings.n_eval_rows]
    sample = sample_tokens(data.heldout_rows, settings.n_loss_tokens, seed=0)
    dynamics = analyze_snapshots(snapshots, eval_rows, sample)
    summary = {
        **dynamics_summary(dynamics, settings.induction_threshold),
        "steps_done": steps_done,
        "last_snapshot": snapshots.steps[-1],
        "n_snapshots": len(snapshots),
        **_read_state(run_dir),
    }
    write_json(summary, path)
    return summary


def _check_settings(out: Path, settings: TextSettings) -> None:
    """Record the settings in a new folder; refuse a folder made with other settings."""
    path = out / "settings.json"
    mine = json.loads(json.dumps(asdict(settings)))
    if path.is_file():
        theirs = json.loads(path.read_text())
        if theirs != mine:
            differ = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise InputError(
                f"{out} holds a run with other settings ({', '.join(differ)} differ); "
                "continue it with the same options or choose another --out."
            )
    else:
        write_json(mine, path)
