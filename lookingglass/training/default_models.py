"""The recipes of the models shipped in `lookingglass/pretrained/`, and the command that
trains them: `lookingglass train-default --name lookingglass-attn2`.

Both models read the pinned King James Bible corpus (`load_corpus`) through a 4,096-token
byte-level BPE tokenizer trained on its training chapters; the held-out chapters (every
20th) give the held-out loss. Training is deterministic on CPU (seeded init and data
order); on another machine or thread count float rounding may differ slightly.

`lookingglass-mlp4`: 4 layers with MLPs, on the plain corpus.

`lookingglass-attn2`: 2 layers, attention only, with induction heads. On natural text a
2-layer model forms induction heads only after far more tokens than a CPU budget allows
(we measured none after 3M tokens of this corpus), so its training has two stages:

1. Induction warm-up (`induction_warmup`): a copy of the model whose vocabulary is the
   128 most frequent training tokens learns the replication's synthetic task (random
   sequences over those tokens in which segments recur; `induction_training_data`),
   where induction heads form within a few hundred steps. Its weights then initialize
   the full model (embedding and unembedding rows by token id; the other tokens keep
   their random initialization).
2. The corpus: every training row gets one repeated span (16-48 tokens of the row copied
   over a later part of the same row, `with_repeated_spans`), so passages recur within
   the context and the induction heads keep paying off and spread to the whole
   vocabulary. Held-out rows are the plain text.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.config import ModelConfig
from lookingglass.errors import InputError
from lookingglass.training.cli_args import output_folder, positive_int
from lookingglass.training.corpus import load_corpus
from lookingglass.training.data import tokenize_and_concatenate
from lookingglass.training.model_card import refresh_card, write_card
from lookingglass.training.tokenizer import train_tokenizer
from lookingglass.training.train import TrainConfig, TrainResult, train

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
VOCAB_SIZE = 4096


@dataclass(frozen=True)
class WarmUp:
    """The induction warm-up stage (see the module doc)."""

    n_tokens: int = 128
    seq_len: int = 48
    n_steps: int = 700
    n_rows: int = 20_000
    batch_size: int = 32
    lr: float = 5e-3


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a shipped model."""

    model: dict[str, Any]
    train: dict[str, Any]
    repeat_fraction: float = 0.0
    repeat_span: tuple[int, int] = (16, 48)
    warmup: WarmUp | None = None
    description: str = ""
    limits: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "lookingglass-attn2": Recipe(
        model=dict(n_layers=2, d_model=64, d_head=16, n_ctx=128, attn_only=True),
        train=dict(n_steps=2000, batch_size=16, lr=2e-3, warmup_steps=100, eval_every=200),
        repeat_fraction=1.0,
        warmup=WarmUp(),
        description="2-layer attention-only transformer with induction heads",
        limits="Its induction heads attend where they should (above) but copy weakly: on the "
        "demo prompt, which ends '...begat Jared:\\nAnd Mahalaleel lived after he begat', the "
        "induction answer ' J' (of ' Jared') is its second guess (3%), after ' sons' (9%).",
    ),
    "lookingglass-mlp4": Recipe(
        model=dict(n_layers=4, d_model=128, d_head=32, d_mlp=512, n_ctx=128, act_fn="gelu"),
        train=dict(n_steps=700, batch_size=16, lr=3e-3, warmup_steps=70, eval_every=100),
        description="4-layer transformer with MLPs",
    ),
}


def most_frequent_tokens(
    rows: Int[Tensor, "n_rows seq_len"], n: int, d_vocab: int, exclude: tuple[int, ...] = ()
) -> Int[Tensor, " n"]:
    """The `n` most frequent token ids in `rows` (ties by id), leaving out `exclude`."""
    counts = torch.bincount(rows.flatten(), minlength=d_vocab)
    counts[list(exclude)] = -1
    return torch.sort(counts, descending=True, stable=True).indices[:n]


def induction_warmup(model: Any, tokens: Int[Tensor, " n"], warmup: WarmUp, progress: bool):
    """Stage 1 of `lookingglass-attn2` (module doc): train a copy of `model` whose
    vocabulary is `tokens` on synthetic repeated segments, then copy its weights into
    `model` (token rows by id). Returns the warm-up's `TrainResult`."""
    from lookingglass.model.transformer import HookedTransformer
    from lookingglass.training.synthetic import induction_training_data

    n = len(tokens)
    small = HookedTransformer(model.cfg.replace(d_vocab=n, d_vocab_out=n))
    data = induction_training_data(
        warmup.n_rows,
        warmup.seq_len,
        n,
        seed=0,
        min_segment_len=8,
        max_segment_len=16,
        n_repeats=3,
    )
    config = TrainConfig(
        n_steps=warmup.n_steps,
        batch_size=warmup.batch_size,
        lr=warmup.lr,
        warmup_steps=50,
        min_lr_ratio=1.0,
        seq_len=warmup.seq_len,
        eval_every=0,
        progress=progress,
    )
    result = train(small, data, config)
    learned = small.state_dict()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name == "embed.W_E":
                param[tokens] = learned[name].to(param.device)
            elif name == "unembed.W_U":
                param[:, tokens] = learned[name].to(param.device)
            elif name == "unembed.b_U":
                param[tokens] = learned[name].to(param.device)
            else:
                param.copy_(learned[name])
    return result


def with_repeated_spans(
    rows: Int[Tensor, "n_rows seq_len"], fraction: float, span: tuple[int, int], seed: int = 0
) -> Int[Tensor, "n_rows seq_len"]:
    """A copy of `rows` in which `fraction` of the rows (chosen with `seed`) each get one
    repeated span: a length L uniform in `span`, a destination d uniform in
    `[1 + L, seq_len - L]` and a source s uniform in `[1, d - L]`; tokens `s..s+L-1`
    are copied over `d..d+L-1`. Position 0 (BOS) is never touched."""
    low, high = span
    seq_len = rows.shape[1]
    if not 1 <= low <= high or 2 * high + 1 > seq_len:
        raise InputError(f"span {span} does not fit twice in rows of {seq_len} tokens.")
    out = rows.clone()
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(rows), generator=generator)[: int(fraction * len(rows))]
    lengths = torch.randint(low, high + 1, (len(chosen),), generator=generator)
    uniform = torch.rand((2, len(chosen)), generator=generator, dtype=torch.float64)
    for i, (row, length) in enumerate(zip(chosen.tolist(), lengths.tolist(), strict=True)):
        dst = 1 + length + int(uniform[0, i] * (seq_len - 2 * length))
        src = 1 + int(uniform[1, i] * (dst - length))
        out[row, dst : dst + length] = rows[row, src : src + length]
    return out


def corpus_data(n_ctx: int):
    """(corpus, tokenizer, training rows, held-out rows) for the shipped models."""
    corpus = load_corpus()
    tokenizer = train_tokenizer(corpus.train, vocab_size=VOCAB_SIZE)
    train_rows = tokenize_and_concatenate(corpus.train, tokenizer, n_ctx)
    heldout_rows = tokenize_and_concatenate(corpus.heldout, tokenizer, n_ctx)
    return corpus, tokenizer, train_rows, heldout_rows


def train_default(
    name: str, out_dir: str | Path | None = None, progress: bool = True, n_steps: int | None = None
) -> Path:
    """Train the shipped model `name` from scratch and save it with its model card.

    Args:
        name: a key of `RECIPES`.
        out_dir: where to save (default: `lookingglass/pretrained/<name>/`).
        progress: show a progress bar.
        n_steps: override the recipe's step count (for tests; the card says so).

    Returns:
        The model folder.
    """
    from lookingglass.model.transformer import HookedTransformer

    if name not in RECIPES:
        raise InputError(f"Unknown default model {name!r}; choose one of {sorted(RECIPES)}.")
    if n_steps is not None and (
        not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1
    ):
        raise InputError(f"n_steps must be a whole number >= 1 (or None), got {n_steps!r}.")
    # Checked before minutes of corpus and tokenizer work.
    out = output_folder(
        out_dir if out_dir is not None else PRETRAINED_DIR / name, "out_dir (--out)"
    )
    recipe = RECIPES[name]
    started = time.perf_counter()
    corpus, tokenizer, train_rows, heldout_rows = corpus_data(recipe.model["n_ctx"])
    if recipe.repeat_fraction:
        train_rows = with_repeated_spans(train_rows, recipe.repeat_fraction, recipe.repeat_span)
    data_seconds = time.perf_counter() - started
    cfg = ModelConfig(
        d_vocab=len(tokenizer), seed=0, model_name=name, tokenizer_name=name, **recipe.model
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    warmup_result = None
    if recipe.warmup is not None:
        bos = (tokenizer.bos_token_id, tokenizer.eos_token_id)
        tokens = most_frequent_tokens(train_rows, recipe.warmup.n_tokens, len(tokenizer), bos)
        warmup_result = induction_warmup(model, tokens, recipe.warmup, progress)
    config = TrainConfig(
        **{**recipe.train, **({"n_steps": n_steps} if n_steps is not None else {})},
        eval_rows=len(heldout_rows),
        progress=progress,
        seed=0,
    )
    result = train(model, train_rows, config, eval_data=heldout_rows)
    model.save_pretrained(out)
    facts = _facts(
        name,
        recipe,
        model,
        config,
        result,
        warmup_result,
        corpus,
        train_rows,
        heldout_rows,
        data_seconds,
        n_steps is not None,
    )
    write_card(out, facts)
    return out


def _facts(
    name,
    recipe,
    model,
    config,
    result: TrainResult,
    warmup_result,
    corpus,
    train_rows,
    heldout_rows,
    data_seconds,
    overridden,
) -> dict[str, Any]:
    import lookingglass
    from lookingglass.training.model_card import measure

    plain_rows = tokenize_and_concatenate(corpus.train, model.tokenizer, model.cfg.n_ctx)
    measured = measure(model, plain_rows, heldout_rows)
    warmup = None
    if warmup_result is not None:
        warmup = {
            **asdict(recipe.warmup),
            "final_train_loss": round(warmup_result.final_train_loss, 4),
            "seconds": round(warmup_result.seconds, 1),
        }
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "name": name,
        "description": recipe.description,
        "limits": recipe.limits,
        "command": f"lookingglass train-default --name {name} --threads {torch.get_num_threads()}"
        + (f" --steps {config.n_steps}" if overridden else ""),
        "lookingglass": lookingglass.__version__,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "corpus": {
            "source": corpus.source,
            "version": corpus.version,
            "sha256": corpus.sha256,
            "documents": len(corpus),
            "heldout_every": corpus.heldout_every,
        },
        "tokenizer": f"byte-level BPE, {VOCAB_SIZE} tokens, trained on the training chapters",
        "train_tokens_available": int(train_rows.numel()),
        "heldout_tokens": int(heldout_rows.numel()),
        "repeat_fraction": recipe.repeat_fraction,
        "repeat_span": list(recipe.repeat_span),
        "model_config": {k: v for k, v in recipe.model.items()},
        "parameters": n_params,
        "train_config": {
            k: v
            for k, v in asdict(config).items()
            if k not in ("progress", "checkpoint_dir", "checkpoint_every", "device")
        },
        "steps": result.step,
        "tokens_seen": result.tokens_seen,
        "final_train_loss": round(result.final_train_loss, 4),
        **measured,
        "eval_curve": [
            [s, round(l, 4)] for s, l in zip(result.eval_steps, result.eval_losses, strict=True)
        ],
        "warmup": warmup,
        "train_seconds": round(result.seconds + (warmup["seconds"] if warmup else 0.0), 1),
        "data_seconds": round(data_seconds, 1),
    }


def add_train_default_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `lookingglass train-default --name NAME [--out DIR] [--steps N]`."""
    parser = subparsers.add_parser("train-default", help="retrain a shipped default model")
    parser.add_argument("--name", required=True, choices=sorted(RECIPES))
    parser.add_argument(
        "--out", default=None, help="folder (default: lookingglass/pretrained/NAME)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=None, help="override the step count (>= 1)"
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="do not train: re-measure the model already in the folder and rewrite its "
        "training.json and MODEL_CARD.md (model_card.refresh_card)",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.set_defaults(func=_run_cli)
    return parser


def _run_cli(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.card_only:
        out = Path(args.out) if args.out else PRETRAINED_DIR / args.name
        facts = refresh_card(out)
        print(f"{args.name}: held-out loss {facts['heldout_loss']:.3f}; card rewritten in {out}")
        return 0
    out = train_default(args.name, args.out, progress=not args.no_progress, n_steps=args.steps)
    facts = json.loads((out / "training.json").read_text())
    print(
        f"{args.name}: held-out loss {facts['heldout_loss']:.3f}, {facts['train_seconds']:.0f} s "
        f"of training; saved to {out}"
    )
    return 0
