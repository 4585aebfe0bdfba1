"""Token display (`explorer.tokens`, `views.shown_token` / `quoted_token`) against the
tokenizer's own bytes, and the dataset-wide ranking of Browse examples
(`explorer.ranking`) against the library's per-example loss change
(`interventions.per_token_loss_change`) and direct logit attribution
(`ActivationCache.logit_attrs`)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from lookingglass import HookedTransformer
from lookingglass.explorer import compute, ranking, sources, tokens, views
from lookingglass.interventions import Component, per_token_loss_change
from tests._explorer_helpers import save_tiny_model
from tests._helpers import make_model, make_tokenizer

TEXT = "Grüße 😀 naïve\n\tcafé ∑ end"


def _bytes_of(shown: str) -> bytes:
    """The bytes a displayed token stands for: `<0xNN>` pieces and UTF-8 text."""
    parts = re.split(r"(<0x[0-9A-F]{2}>)", shown)
    return b"".join(
        bytes([int(p[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-F]{2}>", p) else p.encode()
        for p in parts
    )


def test_byte_pieces_show_as_hex_and_join_back_to_the_text():
    tokenizer = make_tokenizer()
    ids = tokenizer(TEXT)["input_ids"]
    shown = [tokens.token_text(tokenizer, i) for i in ids]
    assert not any(tokens.REPLACEMENT in s for s in shown)
    assert any("<0x" in s for s in shown)  # the emoji is split into byte pieces
    assert b"".join(_bytes_of(s) for s in shown) == TEXT.encode()
    whole = [tokenizer.decode([i]) for i in ids]
    assert [s for s, w in zip(shown, whole, strict=True) if tokens.REPLACEMENT not in w] == [
        w for w in whole if tokens.REPLACEMENT not in w
    ]


def test_sentencepiece_byte_tokens_keep_their_names():
    class Fallback:  # a SentencePiece tokenizer's answers for its byte token <0xE2>
        def decode(self, ids, clean_up_tokenization_spaces=False):
            return tokens.REPLACEMENT

        def convert_ids_to_tokens(self, token_id):
            return "<0xE2>"

    assert tokens.token_text(Fallback(), 7) == "<0xE2>"


def test_newlines_are_escaped_once_and_spaces_are_visible():
    assert views.shown_token("\n") == "\\n" and len(views.shown_token("\n")) == 2
    assert views.quoted_token(" the\n") == "' the\\n'"
    assert views.shown_token("a\tb\r\x0c") == "a\\tb\\r\\x0c"
    assert views.quoted_token("  ") == "'  '"


def test_str_tokens_without_a_tokenizer_are_ids():
    model = make_model(seed=0)
    assert tokens.str_tokens(model, [3, 4]) == ["3", "4"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("ranking_model"))
    return HookedTransformer.from_pretrained(folder, device="cpu").eval().requires_grad_(False)


@pytest.fixture(scope="module")
def texts():
    return [t[:1500] for t in sources.corpus_dataset().texts[:3]]  # 3-4 examples each


@torch.no_grad()
@pytest.mark.parametrize("component", ["L1H2", "attn 0"])
def test_ranking_is_the_per_example_loss_change_and_attribution(model, texts, component):
    seen = []
    result = ranking.dataset_ranking(
        model, texts, component, "zero", batch_size=3, k=5, progress=lambda *a: seen.append(a)
    )
    pieces = ranking.chunks(model, texts)
    assert seen[-1] == (len(pieces), len(pieces)) and len(seen) == -(-len(pieces) // 3)
    chosen, layer, kind = compute.parse_component(model, component)
    changes, attributions = [], []
    for piece in pieces:  # each example alone, as the Browse page shows it
        example = sources.example_tokens(model, texts[piece.doc], piece.start)
        assert example[0].tolist() == piece.tokens
        changes.append(per_token_loss_change(model, example, chosen, "zero")[0])
        _, cache = model.run_with_cache(example)
        inner = slice(0, -1)
        if kind == "head":
            stack = cache.stack_head_results(layer=-1, pos_slice=inner)[
                layer * model.cfg.n_heads + chosen.index[1]
            ]
        else:
            stack, labels = cache.decompose_resid(layer=-1, pos_slice=inner, return_labels=True)
            stack = stack[labels.index(f"{layer}_attn_out")]
        attributions.append(cache.logit_attrs(stack[None], example[:, 1:], pos_slice=inner)[0, 0])
    change = torch.cat(changes).numpy()
    dla = torch.cat(attributions).numpy()
    assert result.n_tokens == len(change)
    assert result.mean_loss_change == pytest.approx(float(change.mean()), abs=1e-5)
    np.testing.assert_allclose(
        [r.loss_change for r in result.by_loss_change], np.sort(change)[::-1][:5], atol=1e-4
    )
    np.testing.assert_allclose(
        [r.loss_change for r in result.by_loss_drop], np.sort(change)[:5], atol=1e-4
    )
    np.testing.assert_allclose([r.dla for r in result.by_dla], np.sort(dla)[::-1][:5], atol=1e-4)
    np.testing.assert_allclose([r.dla for r in result.by_negative_dla], np.sort(dla)[:5], atol=1e-4)
    top = result.by_loss_change[0]  # it points at the right token of the right example
    example = sources.example_tokens(model, texts[top.doc], top.start)[0]
    assert top.target == compute.token_str(model, int(example[top.pos + 1]))
    docs = {d.doc: d for d in result.documents}
    assert sum(d.n_tokens for d in docs.values()) == len(change)
    assert [d.mean_loss_change for d in result.documents] == sorted(
        (d.mean_loss_change for d in result.documents), reverse=True
    )


def test_ranking_with_mean_ablation_and_a_document_limit(model, texts):
    rows = sources.reference_rows(model, sources.corpus_dataset())
    means = compute.component_means(model, rows)
    result = ranking.dataset_ranking(model, texts, "L0H1", "mean", means, max_documents=1, k=3)
    assert result.n_documents == 1 and {r.doc for r in result.by_loss_change} == {0}
    example = sources.example_tokens(model, texts[0], 0)
    reference = per_token_loss_change(model, example, Component.head(0, 1), "mean", data=rows)
    first = [r for r in result.by_loss_change if r.start == 0]
    if first:
        assert first[0].loss_change == pytest.approx(float(reference[0, first[0].pos]), abs=1e-4)


def test_bare_snapshots_measure_heads_as_the_replication_does(tmp_path):
    """The cause of "L1H1 0.87 vs 0.89": the explorer probed with 5 random sequences,
    `lookingglass replicate` with 20. Now both use the same probe."""
    import json

    from lookingglass.training.dynamics import analyze_snapshots, sample_tokens
    from lookingglass.training.snapshots import Snapshots

    steps = (0, 10)
    for i, step in enumerate(steps):  # tokenizer-less models, as the replication trains
        make_model(seed=i, attn_only=True).save_pretrained(tmp_path / f"step_{step:06d}")
    index = {"steps": list(steps), "train_loss": {"0": 5.0, "10": 4.0}, "eval_loss": {}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    view = sources.dynamics_view(tmp_path)
    rows = torch.randint(0, 101, (8, 64))
    reference = analyze_snapshots(  # as replicate.run_replication calls it
        Snapshots(tmp_path), rows, sample_tokens(rows, 8), prepend_bos=False
    )
    np.testing.assert_allclose(view.induction, reference.induction, atol=1e-6)
    np.testing.assert_allclose(view.previous_token, reference.previous_token, atol=1e-6)
    five = analyze_snapshots(Snapshots(tmp_path), rows, sample_tokens(rows, 8), probe_rows=5)
    assert np.abs(five.induction - reference.induction).max() > 1e-4  # what differed
