"""Snapshots: the model saved at chosen steps of training, and a collection to read them.

Training dynamics are studied on a series of snapshots (Olsson et al. 2022 save dozens
per run). Early training changes fastest, so `snapshot_steps` mixes log-spaced steps
(dense early) with linearly spaced ones (even coverage later). `SnapshotSaver` is a
`train` callback that saves the model at those steps; each snapshot is an ordinary
model folder (`step_000123/`) that `HookedTransformer.from_pretrained(folder)` loads.
`Snapshots(folder)` iterates over `(step, model)` in step order, loading each model
only when it is reached.

Layout of a snapshot folder:

    run/snapshots/
        index.json          {"steps": [...], "train_loss": {...}, "eval_loss": {...}}
        step_000000/        config.json  model.safetensors  tokenizer files
        step_000010/ ...
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookingglass.errors import CheckpointError, InputError
from lookingglass.utils import write_atomic

INDEX_FILE = "index.json"
_STEP_DIR = re.compile(r"step_(\d+)")


def snapshot_steps(total: int, n_log: int = 20, n_linear: int = 10) -> list[int]:
    """Steps at which to snapshot a run of `total` steps.

    The union of step 0, `n_log` steps spaced evenly in log(step) from 1 to `total`, and
    `n_linear` steps spaced evenly from `total / n_linear` to `total`, rounded to
    integers, sorted and de-duplicated (so there may be fewer than `1 + n_log + n_linear`).
    Both 0 and `total` are always included.

    Raises:
        InputError: `total < 1` or a negative count.
    """
    if total < 1 or n_log < 0 or n_linear < 0:
        raise InputError(
            f"snapshot_steps needs total >= 1 and counts >= 0, got total={total}, "
            f"n_log={n_log}, n_linear={n_linear}."
        )
    steps = {0, total}
    if n_log:
        steps.update(int(round(s)) for s in np.geomspace(1, total, n_log))
    if n_linear:
        steps.update(int(round(s)) for s in np.linspace(total / n_linear, total, n_linear))
    return sorted(steps)


def step_folder(folder: str | Path, step: int) -> Path:
    """The folder of the snapshot at `step` inside a snapshots folder."""
    return Path(folder) / f"step_{step:06d}"


def read_index(folder: str | Path) -> dict[str, Any] | None:
    """The snapshots folder's `index.json` (None if there is none), checked: a dict
    whose "steps" are non-negative integers and whose "train_loss" / "eval_loss" map
    step numbers to numbers.

    Raises:
        CheckpointError: the index cannot be read or does not have that shape.
    """
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        return None
    fix = f" Delete {path} (the step_XXXXXX folders are the snapshots) or restore it."
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"Snapshot index {path} is unreadable ({error}).{fix}") from None
    problem = _index_problem(index)
    if problem:
        raise CheckpointError(f"Snapshot index {path} is corrupt: {problem}.{fix}")
    index.setdefault("train_loss", {})
    index.setdefault("eval_loss", {})
    return index


def _index_problem(index: Any) -> str | None:
    """What is wrong with a parsed index (None if nothing)."""
    if not isinstance(index, dict):
        return f"it holds a {type(index).__name__}, not an object"
    steps = index.get("steps")
    if not isinstance(steps, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in steps
    ):
        return f'"steps" must be a list of non-negative integers, got {steps!r:.80}'
    for key in ("train_loss", "eval_loss"):
        losses = index.get(key, {})
        if not isinstance(losses, dict):
            return f'"{key}" must map steps to losses, got {losses!r:.80}'
        for step, value in losses.items():
            if not step.isdigit() or not isinstance(value, int | float) or isinstance(value, bool):
                return f'"{key}" has an entry {step!r}: {value!r:.40} (want "STEP": number)'
    return None


class SnapshotSaver:
    """A `train` callback that saves the model at `steps` into `folder/step_XXXXXX/`.

    Each save also records the step's training and held-out loss (when known) in
    `folder/index.json`, written to a temporary name and renamed.
    """

    def __init__(self, folder: str | Path, steps: Sequence[int]) -> None:
        self.folder = Path(folder)
        self.steps = set(int(s) for s in steps)
        self.index: dict[str, Any] = {"steps": [], "train_loss": {}, "eval_loss": {}}
        found = read_index(self.folder)  # a resumed run adds to its index
        if found is not None:
            self.index = found

    def __call__(self, state: Any) -> None:
        if state.step not in self.steps:
            return
        state.model.save_pretrained(step_folder(self.folder, state.step))
        self.index["steps"] = sorted(set(self.index["steps"]) | {state.step})
        for key, value in (("train_loss", state.train_loss), ("eval_loss", state.eval_loss)):
            if value is not None:
                self.index[key][str(state.step)] = value
        write_atomic(self.folder / INDEX_FILE, json.dumps(self.index, indent=1) + "\n")


class Snapshots:
    """The snapshots in a folder, in step order; models are loaded lazily.

    Example:
        for step, model in Snapshots("runs/attn2/snapshots"):
            ...

    Attributes:
        folder: the snapshots folder.
        steps: the snapshot steps, ascending.
    """

    def __init__(
        self, folder: str | Path, device: str | None = "cpu", processing: bool = False
    ) -> None:
        """
        Args:
            folder: a folder of `step_XXXXXX/` model folders (as `SnapshotSaver` writes).
            device: where loaded models go (None: the best available).
            processing: load with TransformerLens's default weight processing
                (`from_pretrained`) instead of the raw trained numbers
                (`from_pretrained_no_processing`, the default).

        Raises:
            CheckpointError: the folder is missing or holds no snapshot; its `index.json`
                is corrupt or lists a step with no snapshot folder; a snapshot folder
                leads outside the folder (a link elsewhere).
        """
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CheckpointError(f"Snapshot folder {self.folder} does not exist.")
        root = self.folder.resolve()
        found = {}
        for path in self.folder.iterdir():
            match = _STEP_DIR.fullmatch(path.name)
            if match and (path / "config.json").is_file():
                if not path.resolve().is_relative_to(root):
                    raise CheckpointError(
                        f"Snapshot {path} leads outside {self.folder} (to {path.resolve()}); "
                        "snapshots are read only from inside their folder."
                    )
                found[int(match.group(1))] = path
        index = read_index(self.folder)
        missing = sorted(set(index["steps"]) - set(found)) if index else []
        if missing:
            raise CheckpointError(
                f"{self.folder / INDEX_FILE} lists step(s) {missing} with no "
                f"step_XXXXXX folder holding config.json; found steps {sorted(found)}."
            )
        if not found:
            raise CheckpointError(f"No step_XXXXXX snapshot folders in {self.folder}.")
        self.steps: list[int] = sorted(found)
        self._paths = found
        self.device = device
        self.processing = processing

    def __len__(self) -> int:
        return len(self.steps)

    def path(self, step: int) -> Path:
        """The model folder of the snapshot at `step`."""
        if step not in self._paths:
            raise InputError(f"No snapshot at step {step}; steps are {self.steps}.")
        return self._paths[step]

    def load(self, step: int):
        """The `HookedTransformer` saved at `step`."""
        from lookingglass.model.transformer import HookedTransformer

        load = (
            HookedTransformer.from_pretrained
            if self.processing
            else (HookedTransformer.from_pretrained_no_processing)
        )
        model = load(self.path(step), device=self.device)
        model.eval()
        return model

    def __getitem__(self, step: int):
        return self.load(step)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        for step in self.steps:
            yield step, self.load(step)

    def losses(self) -> dict[str, dict[int, float]]:
        """Training and held-out loss recorded at each snapshot step (from `index.json`;
        empty dicts when there is no index)."""
        index = read_index(self.folder)
        if index is None:
            return {"train_loss": {}, "eval_loss": {}}
        return {
            k: {int(s): v for s, v in index.get(k, {}).items()} for k in ("train_loss", "eval_loss")
        }

    def __repr__(self) -> str:
        first, last = self.steps[0], self.steps[-1]
        return f"Snapshots({str(self.folder)!r}, {len(self)} steps from {first} to {last})"
