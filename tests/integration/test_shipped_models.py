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
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in rows.split(64):
            logits = model(batch).double()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                batch[:, 1:].reshape(-1),
                reduction="sum",
            )
            total += float(loss)
            count += batch[:, 1:].numel()
    assert total / count == pytest.approx(facts["heldout_loss"], abs=2e-3)
    # Far below a unigram model of the same text (about 6.5 nats with this vocabulary).
    assert total / count < 5.0


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
