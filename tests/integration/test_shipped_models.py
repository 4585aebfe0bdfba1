"""The models shipped in `lookingglass/pretrained/` and the README's main job (`demo`).

Each shipped model must load by name offline, stay within the 15 MB budget, and do what
its model card says: the held-out loss is recomputed here from the pinned corpus with a
plain cross-entropy, and `lookingglass-mlp4` (a GPT-2-shaped model) computes the same
logits as Hugging Face's `GPT2LMHeadModel` given its weights.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from lookingglass import HookedTransformer
from lookingglass.loading.registry import packaged_models
from tests._analysis_helpers import prefix_matching_by_hand

SHIPPED = ["lookingglass-attn2", "lookingglass-mlp4"]
MAX_BYTES = 15 * 2**20


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _card(name: str) -> dict:
    return json.loads((packaged_models()[name] / "training.json").read_text())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_complete_and_small(name):
    folder = packaged_models()[name]
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "MODEL_CARD.md"} <= files
    assert sum(p.stat().st_size for p in folder.iterdir()) <= MAX_BYTES
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"lookingglass train-default --name {name}" in card
    assert _card(name)["corpus"]["sha256"] in card


@pytest.mark.parametrize("name", SHIPPED)
def test_heldout_loss_matches_the_model_card(name):
    """Recompute the card's held-out loss: the pinned corpus's held-out chapters, through
    the shipped tokenizer, in rows of n_ctx, next-token cross-entropy averaged over all
    predicted tokens."""
    from lookingglass.training.corpus import load_corpus
    from lookingglass.training.data import tokenize_and_concatenate

    model = HookedTransformer.from_pretrained(name)
    facts = _card(name)
    corpus = load_corpus()
    assert corpus.sha256 == facts["corpus"]["sha256"]
    rows = tokenize_and_concatenate(corpus.heldout, model.tokenizer, model.cfg.n_ctx)
    assert rows.numel() == facts["heldout_tokens"]
    losses = []
    with torch.no_grad():
        for batch in rows.split(64):
            logits = model(batch).double()
            losses.append(
                torch.nn.functional.cross_entropy(
                    logits[:, :-1].transpose(1, 2), batch[:, 1:], reduction="none"
                )
            )
    loss = torch.cat(losses)  # [row, token - 1]
    assert float(loss.mean()) == pytest.approx(facts["heldout_loss"], abs=2e-3)
    # Far below a unigram model of the same text (about 6 nats with this vocabulary).
    assert float(loss.mean()) < 5.0
    # The card's in-context-learning score: late-window minus early-window loss per row.
    icl = facts["heldout_icl_score"]
    (late_first, late_last), (early_first, early_last) = icl["late_tokens"], icl["early_tokens"]
    per_row = loss[:, late_first - 1 : late_last].mean(1) - loss[
        :, early_first - 1 : early_last
    ].mean(1)
    assert float(per_row.mean()) == pytest.approx(icl["mean"], abs=2e-3)
    assert icl["ci95"][0] < icl["mean"] < icl["ci95"][1]


@pytest.fixture(scope="module")
def bigram_by_hand() -> dict[int, float]:
    """Witten-Bell interpolated bigram (add-one unigram underneath) of the training
    chapters, scored on the held-out chapters, in the shipped models' tokenization
    (both share one tokenizer and n_ctx), counted with plain Python."""
    from collections import Counter, defaultdict

    from lookingglass.training.corpus import load_corpus
    from lookingglass.training.data import tokenize_and_concatenate

    model = HookedTransformer.from_pretrained("lookingglass-mlp4")
    corpus = load_corpus()
    n_ctx, vocab = model.cfg.n_ctx, model.cfg.d_vocab
    train = tokenize_and_concatenate(corpus.train, model.tokenizer, n_ctx).tolist()
    heldout = tokenize_and_concatenate(corpus.heldout, model.tokenizer, n_ctx).tolist()
    pairs = Counter((a, b) for row in train for a, b in zip(row[:-1], row[1:], strict=True))
    context, unigram = Counter(), Counter()
    follows: dict[int, int] = defaultdict(int)
    for (a, b), count in pairs.items():
        context[a] += count
        unigram[b] += count
        follows[a] += 1
    n = sum(unigram.values())
    nll, count = 0.0, 0
    for row in heldout:
        for a, b in zip(row[:-1], row[1:], strict=True):
            p1 = (unigram[b] + 1) / (n + vocab)
            p = (pairs[a, b] + follows[a] * p1) / (context[a] + follows[a]) if context[a] else p1
            nll -= math.log(p)
            count += 1
    return {"bigram": nll / count, "n_ctx": n_ctx}


@pytest.mark.parametrize("name", SHIPPED)
def test_card_puts_a_bigram_baseline_beside_the_loss(name, bigram_by_hand):
    facts = _card(name)
    model_config = facts["model_config"]
    assert model_config["n_ctx"] == bigram_by_hand["n_ctx"]
    assert facts["baselines"]["bigram"] == pytest.approx(bigram_by_hand["bigram"], abs=1e-3)
    card = (packaged_models()[name] / "MODEL_CARD.md").read_text()
    summary = card.split("## Reproduce")[0]
    assert f"**{facts['heldout_loss']:.3f}**" in summary
    assert f"({facts['baselines']['bigram']:.3f}; unigram" in summary
    relation = "below" if facts["heldout_loss"] < facts["baselines"]["bigram"] else "**above**"
    assert f"{relation} an interpolated bigram" in summary


@pytest.mark.parametrize("name", SHIPPED)
def test_card_says_how_the_model_was_trained(name):
    """The card's opening names every departure from plain text that training.json
    records: the synthetic warm-up and the copied spans."""
    facts = _card(name)
    summary = (packaged_models()[name] / "MODEL_CARD.md").read_text().split("## Reproduce")[0]
    tricks = bool(facts["warmup"]) or bool(facts["repeat_fraction"])
    assert ("**Trained on natural text only**" in summary) == (not tricks)
    assert ("**Not trained on natural text alone**" in summary) == tricks
    assert ("synthetic induction warm-up" in summary) == bool(facts["warmup"])
    assert ("training rows carry a copied span" in summary) == bool(facts["repeat_fraction"])


def test_mlp4_matches_hugging_face_gpt2():
    from transformers import GPT2LMHeadModel

    from lookingglass.loading.hf_export import to_hf

    model = HookedTransformer.from_pretrained("lookingglass-mlp4")
    hf = to_hf(model)
    assert isinstance(hf, GPT2LMHeadModel)
    tokens = model.to_tokens("In the beginning God created the heaven and the earth.")
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf(tokens).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_attn2_has_induction_heads_in_layer_1():
    model = HookedTransformer.from_pretrained("lookingglass-attn2")
    bos = model.tokenizer.bos_token_id
    scores = prefix_matching_by_hand(model, 40, 8, vocab=(1000, 4000), bos=bos, seed=123)
    assert scores[1].max() > 0.4, scores
    assert scores[0].max() < 0.2, scores  # layer 0 cannot do induction alone


def test_demo_runs_offline_and_writes_a_self_contained_report(tmp_path):
    out = tmp_path / "demo.html"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lookingglass.cli",
            "demo",
            "--model",
            "lookingglass-attn2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    stdout = result.stdout
    assert "top next-token predictions:" in stdout
    heads = re.findall(r"^\s+L(\d)H(\d)\s+induction (\d\.\d\d)", stdout, flags=re.M)
    assert heads and all(layer == "1" for layer, _, _ in heads), stdout
    assert f"report: {out.resolve()}" in stdout
    report = out.read_text()
    assert not re.search(r"<script[^>]+src=[\"']https?:", report)
    assert report.count("L1H") >= 1 and "logit lens" in report.lower()
    assert math.isfinite(float(heads[0][2]))


def test_demo_on_a_model_that_does_not_exist_fails_with_the_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lookingglass.cli", "demo", "--model", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert "lookingglass demo:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "reports").exists()


def test_info_lists_the_shipped_models():
    import contextlib
    import io

    from lookingglass.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["info"]) == 0
    assert "shipped models (offline): lookingglass-attn2, lookingglass-mlp4" in out.getvalue()
