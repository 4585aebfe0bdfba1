"""The measured facts (`training.json`) and the model card (`MODEL_CARD.md`) of a shipped
model.

`measure` computes everything a card states about the trained weights: the held-out
loss beside count baselines on the same tokenizer (`baselines.bigram_baseline`, fitted
on the plain training chapters), the in-context-learning score on held-out text, and
induction and previous-token scores. `render_card` writes the card, opening with how
the model was trained, tricks included (a synthetic warm-up, copied spans in the
training rows), so nobody reads "trained on the King James Bible" as the whole story.
`refresh_card` re-measures a shipped model and rewrites both files without retraining.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from jaxtyping import Int
from torch import Tensor

from lookingglass.utils import write_atomic


def _rounded(rows: Tensor) -> list[list[float]]:
    return [[round(float(x), 3) for x in row] for row in rows]


def measure(
    model: Any,
    train_rows: Int[Tensor, "n_train n_ctx"],
    heldout_rows: Int[Tensor, "n_heldout n_ctx"],
) -> dict[str, Any]:
    """What a card says about `model`'s weights, as JSON-ready numbers.

    Args:
        model: the trained `HookedTransformer` (with its tokenizer).
        train_rows: the plain training rows (no copied spans), for the baselines.
        heldout_rows: the held-out rows.
    """
    from lookingglass.analysis.heads import induction_scores, previous_token_scores
    from lookingglass.demo import DEFAULT_PROMPT
    from lookingglass.training.baselines import bigram_baseline
    from lookingglass.training.dynamics import (
        icl_score,
        icl_windows,
        per_position_losses,
        text_induction_attention,
    )

    model.cpu().eval()
    position_loss = per_position_losses(model, heldout_rows, 32).double()
    heldout_loss = float(position_loss.mean())
    # ICL score per row, for a 95% interval over rows (rows are independent passages).
    per_row = icl_score(position_loss)
    mean = float(per_row.mean())
    half_width = 1.96 * float(per_row.std()) / math.sqrt(len(per_row))
    early, late = icl_windows(heldout_rows.shape[1])
    bos = (model.tokenizer.bos_token_id,)
    return {
        "heldout_loss": round(heldout_loss, 4),
        "heldout_bits_per_token": round(heldout_loss / math.log(2), 4),
        "baselines": bigram_baseline(train_rows, heldout_rows, model.cfg.d_vocab).to_dict(),
        "heldout_icl_score": {
            "mean": round(mean, 4),
            "ci95": [round(mean - half_width, 4), round(mean + half_width, 4)],
            "late_tokens": [late.start, late.stop - 1],
            "early_tokens": [early.start, early.stop - 1],
        },
        "induction_scores": _rounded(induction_scores(model)),
        "previous_token_scores": _rounded(previous_token_scores(model)),
        "text_induction_attention_heldout": _rounded(
            text_induction_attention(model, heldout_rows[:64], ignore=bos)
        ),
        "text_induction_attention_demo_prompt": _rounded(
            text_induction_attention(model, model.to_tokens(DEFAULT_PROMPT), ignore=bos)
        ),
    }


def refresh_card(folder: str | Path) -> dict[str, Any]:
    """Re-measure the model in `folder` on the pinned corpus (through its own tokenizer)
    and rewrite its `training.json` and `MODEL_CARD.md`; training facts are kept.

    Returns:
        The updated facts.
    """
    from lookingglass.model.transformer import HookedTransformer
    from lookingglass.training.corpus import load_corpus
    from lookingglass.training.data import tokenize_and_concatenate

    folder = Path(folder)
    facts = json.loads((folder / "training.json").read_text())
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    corpus = load_corpus()
    n_ctx = model.cfg.n_ctx
    train_rows = tokenize_and_concatenate(corpus.train, model.tokenizer, n_ctx)
    heldout_rows = tokenize_and_concatenate(corpus.heldout, model.tokenizer, n_ctx)
    facts.update(measure(model, train_rows, heldout_rows))
    write_card(folder, facts)
    return facts


def write_card(folder: Path, facts: dict[str, Any]) -> None:
    """Write `training.json` and `MODEL_CARD.md` into `folder`."""
    write_atomic(folder / "training.json", json.dumps(facts, indent=2) + "\n")
    write_atomic(folder / "MODEL_CARD.md", render_card(facts))


def how_trained(f: dict[str, Any]) -> str:
    """One paragraph: the data the model saw, tricks first."""
    tokens = f"{f['tokens_seen']:,} tokens of the King James Bible"
    if not f.get("warmup") and not f.get("repeat_fraction"):
        return (
            f"**Trained on natural text only**: {tokens} (about "
            f"{f['tokens_seen'] / f['train_tokens_available']:.1f} passes over the training "
            "chapters), from a random initialization; no synthetic data, no copied spans."
        )
    parts = []
    if f.get("warmup"):
        w = f["warmup"]
        parts.append(
            f"first a **synthetic induction warm-up** ({w['n_steps']} steps on random "
            f"sequences of its {w['n_tokens']} most frequent tokens in which segments recur), "
            "whose weights initialize the model"
        )
    if f.get("repeat_fraction"):
        parts.append(
            f"then {tokens} in which **{f['repeat_fraction']:.0%} of the training rows carry a "
            f"copied span** ({f['repeat_span'][0]}-{f['repeat_span'][1]} tokens of the row "
            "pasted later into the same row)"
        )
    return (
        "**Not trained on natural text alone**: "
        + "; ".join(parts)
        + ". These were added so that induction heads would form within a CPU budget; the "
        "held-out text is plain."
    )


def render_card(f: dict[str, Any]) -> str:
    """The model card text for the facts `f` (`training.json`)."""
    heads = [
        f"L{layer}H{head} {score:.2f}"
        for layer, row in enumerate(f["induction_scores"])
        for head, score in enumerate(row)
        if score > 0.4
    ]
    cfg = ", ".join(f"{k}={v}" for k, v in f["model_config"].items())
    t = f["train_config"]
    base = f["baselines"]
    icl = f["heldout_icl_score"]
    warm = ""
    if f.get("warmup"):
        w = f["warmup"]
        warm = (
            f"Stage 1, induction warm-up (`induction_warmup`): a copy of the model with the "
            f"{w['n_tokens']} most frequent training tokens as its vocabulary, {w['n_steps']} "
            f"steps of {w['batch_size']} synthetic rows of {w['seq_len']} tokens (random tokens "
            f"in which segments of 8-16 tokens recur, `induction_training_data`), lr {w['lr']} "
            f"(final loss {w['final_train_loss']:.3f}, {w['seconds']:.0f} s); its weights "
            "initialize the model, token rows by id.\n\nStage 2, the corpus: "
        )
    rows = (
        f"In {f['repeat_fraction']:.0%} of the training rows one span of "
        f"{f['repeat_span'][0]}-{f['repeat_span'][1]} tokens is copied to a later random "
        "position of the same row (`with_repeated_spans`); held-out rows are unchanged."
        if f.get("repeat_fraction")
        else "The rows are the plain corpus: nothing copied, nothing synthetic."
    )
    beats = "below" if f["heldout_loss"] < base["bigram"] else "**above**"
    return f"""# {f["name"]}

{f["description"]}, trained from scratch with `lookingglass.training.train`.

{how_trained(f)}

Held-out loss **{f["heldout_loss"]:.3f}** nats/token, {beats} an interpolated bigram model
on the same tokenizer ({base["bigram"]:.3f}; unigram {base["unigram"]:.3f}).
Induction heads (prefix-matching > 0.4): {", ".join(heads) or "**none**"}.

## Reproduce

```bash
{f["command"]}
```

(`lookingglass.training.default_models.train_default`; writes this folder. Trained with
lookingglass {f["lookingglass"]}, torch {f["torch"]}, on {f["machine"]}, in
{f["train_seconds"]:.0f} s of training plus {f["data_seconds"]:.0f} s of data preparation.)

## Data

- Corpus: {f["corpus"]["source"]}; `{f["corpus"]["version"]}`; {f["corpus"]["documents"]}
  chapters, SHA-256 of the text `{f["corpus"]["sha256"]}`.
- Split: every {f["corpus"]["heldout_every"]}th chapter is held out
  ({f["heldout_tokens"]:,} tokens); the rest gives {f["train_tokens_available"]:,} training tokens.
- Tokenizer: {f["tokenizer"]} (`<|endoftext|>` is BOS, EOS and padding); rows of
  {f["model_config"]["n_ctx"]} tokens, BOS first, chapters joined by EOS.
- {rows}

## Model

`ModelConfig({cfg}, d_vocab=4096)`: {f["parameters"]:,} parameters, float32, LayerNorm,
learned positions, untied embeddings.

## Training

{warm}{f["steps"]} steps of {t["batch_size"]} rows ({f["tokens_seen"]:,} tokens, about
{f["tokens_seen"] / max(1, f["train_tokens_available"]):.1f} epochs), AdamW (betas {t["betas"]},
weight decay {t["weight_decay"]} on matrices), lr {t["lr"]} with {t["warmup_steps"]} warmup
steps and cosine decay to {t["min_lr_ratio"]}x, gradient clipping at {t["max_grad_norm"]},
seed {t["seed"]}.

## Results

- Final training loss (mean of the last steps): {f["final_train_loss"]:.3f} nats/token.
- Held-out loss: {f["heldout_loss"]:.3f} nats/token ({f["heldout_bits_per_token"]:.3f} bits/token).
- Baselines on the same held-out tokens, fitted on the plain training chapters with the
  same tokenizer (`lookingglass.training.baselines.bigram_baseline`): Witten-Bell
  interpolated bigram {base["bigram"]:.3f}, add-one unigram {base["unigram"]:.3f}
  nats/token.
- In-context learning on held-out text (`dynamics.icl_score`, per row, then averaged): loss
  over tokens {icl["late_tokens"][0]}-{icl["late_tokens"][1]} minus over tokens
  {icl["early_tokens"][0]}-{icl["early_tokens"][1]}: {icl["mean"]:+.3f} nats (95% interval
  {icl["ci95"][0]:+.3f} to {icl["ci95"][1]:+.3f}; negative means later tokens are predicted better).
- Induction (prefix-matching) heads, score > 0.4 on repeated random tokens:
  {", ".join(heads) or "none"}.
- Induction scores by layer: {f["induction_scores"]}; previous-token scores:
  {f["previous_token_scores"]}.
- Induction attention on real text (`dynamics.text_induction_attention`: the attention a
  head puts right after earlier occurrences of the current token), by layer: on 64
  held-out rows {f["text_induction_attention_heldout"]}; on the demo prompt (Genesis 5)
  {f["text_induction_attention_demo_prompt"]}.
- Held-out loss during training (step, loss): {f["eval_curve"]}.

## Limits

A small model of one old English text: it writes King James English and knows nothing
else. Made for studying mechanisms, not for generating text. {f.get("limits", "")}
"""
