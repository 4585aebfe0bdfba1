"""`train(model, data, TrainConfig)`: the training loop for any `HookedTransformer`.

AdamW, a linear warmup then a cosine decay of the learning rate, gradient clipping and
accumulation, a held-out loss every `eval_every` steps, callbacks (snapshots), and
checkpoints from which a run resumes exactly where it stopped.

Exact resume. A checkpoint holds the model, the optimizer and scheduler states, the RNG
states, the step and the data position. The data order needs no saved state: the rows
of epoch `e` are visited in the order `randperm(n_rows)` drawn from a generator seeded
with `(seed, e)`, so micro-batch `k` is a pure function of `(seed, k)`. Training 2N
steps therefore gives the same losses as training N, saving, loading into a fresh
model, and training N more (on CPU, to float rounding; the test checks 1e-6).

On CUDA the forward pass runs under bf16 autocast (`TrainConfig.bf16`); the weights and
the optimizer stay in fp32. On CPU everything is fp32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import CheckpointError, ConfigError, InputError
from lookingglass.loading.converters._common import check_state_dict
from lookingglass.training.data import token_rows
from lookingglass.utils import atomic_file

CHECKPOINT_FILE = "checkpoint.pt"
_CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run.

    Attributes:
        n_steps: optimizer steps in the whole run; the cosine schedule ends here.
        batch_size: rows per micro-batch; an optimizer step sees
            `batch_size * grad_accum_steps` rows.
        lr: peak learning rate, reached after `warmup_steps`.
        warmup_steps: linear warmup from 0 to `lr`.
        min_lr_ratio: the cosine decays from `lr` to `lr * min_lr_ratio` at `n_steps`.
        weight_decay, betas: AdamW's. Decay applies to weight matrices (`W_*`) only,
            not to biases, norms or key-mixing parameters.
        max_grad_norm: clip the global gradient norm to this (None: no clipping).
        grad_accum_steps: micro-batches per optimizer step.
        seq_len: tokens per row (default: the model's `n_ctx`).
        eval_every: held-out loss every this many steps (and at the last step); 0: never.
        eval_rows: held-out rows used for each evaluation (the first ones, fixed).
        seed: seeds torch's RNG and the data order.
        device: "cpu", "cuda", ...; None picks CUDA when available.
        bf16: use bf16 autocast on CUDA (ignored on CPU).
        checkpoint_dir: where `checkpoint.pt` is written (None: no checkpoints).
        checkpoint_every: also checkpoint every this many steps (the last step of a
            run is always checkpointed when `checkpoint_dir` is set).
        progress: show a tqdm progress bar with the loss.
    """

    n_steps: int
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    max_grad_norm: float | None = 1.0
    grad_accum_steps: int = 1
    seq_len: int | None = None
    eval_every: int = 100
    eval_rows: int = 256
    seed: int = 0
    device: str | None = None
    bf16: bool = True
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("n_steps", "batch_size", "grad_accum_steps", "eval_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("warmup_steps", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}.")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be positive, got {self.lr}.")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(
                f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}."
            )
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise ConfigError("TrainConfig.checkpoint_every needs checkpoint_dir to be set.")
        object.__setattr__(self, "betas", tuple(self.betas))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of the fields."""
        return dataclasses.asdict(self)


@dataclass
class TrainState:
    """What a callback sees after each optimizer step (and once before the first)."""

    step: int
    model: Any
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    train_loss: float | None
    eval_loss: float | None


Callback = Callable[[TrainState], None]


@dataclass
class TrainResult:
    """Loss history of a run (the whole run's, also after a resume).

    Attributes:
        train_losses: mean micro-batch loss of each optimizer step; entry i is step i+1.
        eval_steps, eval_losses: held-out loss at those steps.
        seconds: wall time of this call (not of earlier runs it resumed).
        tokens_seen: training tokens consumed up to the last step.
        checkpoint: the checkpoint written at the end, if any.
    """

    train_losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens_seen: int = 0
    checkpoint: Path | None = None

    @property
    def step(self) -> int:
        """The last completed optimizer step."""
        return len(self.train_losses)

    @property
    def final_train_loss(self) -> float:
        """Mean training loss over the last 10% of steps (at least 1, at most 50)."""
        n = max(1, min(50, len(self.train_losses) // 10))
        return sum(self.train_losses[-n:]) / n

    @property
    def final_eval_loss(self) -> float | None:
        """The last held-out loss, or None if there was no held-out set."""
        return self.eval_losses[-1] if self.eval_losses else None


# ------------------------------------------------------------------------------ data
class RowBatcher:
    """Micro-batch `k` of `rows`, a pure function of `(seed, k)` (see the module doc)."""

    def __init__(self, rows: Int[Tensor, "n_rows seq_len"], batch_size: int, seed: int) -> None:
        if len(rows) < batch_size:
            raise InputError(
                f"the training data have {len(rows)} rows, fewer than batch_size={batch_size}."
            )
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self.batches_per_epoch = len(rows) // batch_size
        self._epoch, self._order = -1, None

    def batch(self, index: int) -> Int[Tensor, "batch seq_len"]:
        """The `index`-th micro-batch of the run (epochs follow each other)."""
        epoch, offset = divmod(index, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(len(self.rows), generator=generator)
        start = offset * self.batch_size
        return self.rows[self._order[start : start + self.batch_size]]


def _as_rows(data: Any, model: Any, seq_len: int, what: str) -> Tensor:
    if seq_len > model.cfg.n_ctx:
        raise ConfigError(
            f"TrainConfig.seq_len={seq_len} exceeds the model's n_ctx={model.cfg.n_ctx}."
        )
    rows = token_rows(data, model.tokenizer, seq_len)
    if int(rows.max()) >= model.cfg.d_vocab:
        raise InputError(
            f"the {what} data hold token id {int(rows.max())}, outside the model's "
            f"d_vocab={model.cfg.d_vocab}."
        )
    return rows


# ---------------------------------------------------------------------- optimization
def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices (`W_*`) only."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if name.rsplit(".", 1)[-1].startswith("W_") else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at `step`: linear warmup, then cosine to `min_lr_ratio`."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.n_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """The warmup + cosine schedule as a `LambdaLR`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))


def _autocast(device: torch.device, config: TrainConfig | None):
    if device.type == "cuda" and (config is None or config.bf16):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    model: Any,
    rows: Int[Tensor, "n_rows seq_len"],
    batch_size: int = 32,
    config: TrainConfig | None = None,
) -> float:
    """Mean next-token loss of `model` on `rows` (every row, every position); under bf16
    autocast on CUDA unless `config.bf16` is False."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = model.W_E.device
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size].to(device)
        with _autocast(device, config):
            loss = model(batch, return_type="loss")
        n = batch.shape[0] * (batch.shape[1] - 1)
        total, count = total + float(loss) * n, count + n
    model.train(was_training)
    return total / count


# ----------------------------------------------------------------------- checkpoints
def save_checkpoint(
    path: str | Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
    result: TrainResult,
    data_position: int,
) -> Path:
    """Write everything a run needs to continue exactly: `path` is a folder, the file
    inside is `checkpoint.pt`, written to a temporary name and renamed."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "format": _CHECKPOINT_FORMAT,
        "train_config": {k: v for k, v in config.to_dict().items() if k in _SCHEDULE_FIELDS},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "step": result.step,
        "data_position": data_position,
        "train_losses": torch.tensor(result.train_losses, dtype=torch.float64),
        "eval_steps": torch.tensor(result.eval_steps, dtype=torch.long),
        "eval_losses": torch.tensor(result.eval_losses, dtype=torch.float64),
        "tokens_seen": result.tokens_seen,
    }
    target = folder / CHECKPOINT_FILE
    with atomic_file(target) as file:
        torch.save(state, file)
    return target


# Fields that must match between the run that wrote a checkpoint and the one resuming it.
_SCHEDULE_FIELDS = (
    "n_steps",
    "batch_size",
    "lr",
    "warmup_steps",
    "min_lr_ratio",
    "weight_decay",
    "grad_accum_steps",
    "seq_len",
    "seed",
)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (a folder or the file itself).

    Tensors and plain Python values only (`torch.load(weights_only=True)`)."""
    path = Path(path)
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"No training checkpoint at {file}.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise CheckpointError(f"Could not read the training checkpoint {file}: {error}") from error
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointError(f"{file} is not a lookingglass training checkpoint.")
    return state


def _restore(state, model, optimizer, scheduler, config, result) -> int:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    check_state_dict(state["model"], expected, "in the training checkpoint (another architecture?)")
    mine = {k: v for k, v in config.to_dict().items() if k in _SCHEDULE_FIELDS}
    theirs = state["train_config"]
    differ = sorted(k for k in mine if _normalized(mine[k]) != _normalized(theirs.get(k)))
    if differ:
        detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r}, now {mine[k]!r}" for k in differ)
        raise CheckpointError(f"Cannot resume exactly: TrainConfig fields differ ({detail}).")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if torch.cuda.is_available() and state["rng_cuda"]:
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    result.train_losses = state["train_losses"].tolist()
    result.eval_steps = state["eval_steps"].tolist()
    result.eval_losses = state["eval_losses"].tolist()
    result.tokens_seen = int(state["tokens_seen"])
    if result.step != state["step"]:
        raise CheckpointError("The checkpoint's loss history does not match its step.")
    return int(state["data_position"])


def _normalized(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ------------------------------------------------------------------------------ loop
def train(
    model: Any,
    data: Any,
    config: TrainConfig,
    eval_data: Any = None,
    callbacks: Sequence[Callback] = (),
    resume_from: str | Path | None = None,
    stop_at_step: int | None = None,
) -> TrainResult:
    """Train `model` in place on next-token prediction.

    Args:
        model: a `HookedTransformer` (any config).
        data: training data: a LongTensor `[n_rows, seq]`, strings (packed with
            `tokenize_and_concatenate` using `model.tokenizer`), token lists, or a
            Hugging Face dataset (see `lookingglass.training.data.token_rows`).
        config: the `TrainConfig`.
        eval_data: held-out data in any of the same forms (optional).
        callbacks: functions called with a `TrainState` before the first step (step 0,
            unless resuming) and after every optimizer step (e.g. `SnapshotSaver`).
        resume_from: a checkpoint folder or file from `save_checkpoint`: restore the
            model, optimizer, schedule, RNG and data position, and continue.
        stop_at_step: stop after this step (the schedule still spans `n_steps`), e.g. to
            checkpoint part-way; default `config.n_steps`.

    Returns:
        A `TrainResult` with the whole run's loss history.

    Raises:
        ConfigError: `seq_len` beyond `n_ctx`, or `stop_at_step` out of range.
        CheckpointError: `resume_from` is unreadable, for another architecture, or was
            written with a different schedule.
    """
    stop = config.n_steps if stop_at_step is None else stop_at_step
    if not 0 <= stop <= config.n_steps:
        raise ConfigError(f"stop_at_step={stop} is outside [0, n_steps={config.n_steps}].")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    model.train()
    seq_len = config.seq_len or model.cfg.n_ctx
    batcher = RowBatcher(_as_rows(data, model, seq_len, "training"), config.batch_size, config.seed)
    eval_rows = None
    if eval_data is not None:
        eval_rows = _as_rows(eval_data, model, seq_len, "held-out")[: config.eval_rows]
    torch.manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    result = TrainResult()
    position = 0
    if resume_from is not None:
        position = _restore(
            load_checkpoint(resume_from), model, optimizer, scheduler, config, result
        )

    def run_eval(step: int) -> float | None:
        if eval_rows is None:
            return None
        loss = evaluate(model, eval_rows, config.batch_size, config)
        result.eval_steps.append(step)
        result.eval_losses.append(loss)
        return loss

    if result.step == 0:
        state = TrainState(
            0, model, optimizer, config, None, run_eval(0) if config.eval_every else None
        )
        for callback in callbacks:
            callback(state)

    started = time.perf_counter()
    bar = _progress_bar(config, result.step, stop)
    for step in range(result.step + 1, stop + 1):
        loss = 0.0
        for _ in range(config.grad_accum_steps):
            batch = batcher.batch(position).to(device)
            position += 1
            with _autocast(device, config):
                micro_loss = model(batch, return_type="loss") / config.grad_accum_steps
            micro_loss.backward()
            loss += float(micro_loss.detach())
        if not math.isfinite(loss):  # before the step, so the weights stay finite
            raise FloatingPointError(f"The training loss became {loss} at step {step}; lower lr.")
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        result.train_losses.append(loss)
        result.tokens_seen += config.grad_accum_steps * config.batch_size * seq_len
        eval_due = config.eval_every and (step % config.eval_every == 0 or step == config.n_steps)
        eval_loss = run_eval(step) if eval_due else None
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.3f}", **({"eval": f"{eval_loss:.3f}"} if eval_loss else {})
            )
        state = TrainState(step, model, optimizer, config, loss, eval_loss)
        for callback in callbacks:
            callback(state)
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step != stop:
            save_checkpoint(
                config.checkpoint_dir, model, optimizer, scheduler, config, result, position
            )
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - started
    if config.checkpoint_dir is not None:
        result.checkpoint = save_checkpoint(
            config.checkpoint_dir, model, optimizer, scheduler, config, result, position
        )
    model.eval()
    return result


def _progress_bar(config: TrainConfig, start: int, stop: int):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=stop, initial=start, desc="train", unit="step", dynamic_ncols=True)
