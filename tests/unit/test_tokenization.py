"""Text <-> tokens on a model: BOS policy, padding, decoding, single tokens, positions.

References: the Hugging Face tokenizer itself, and TransformerLens 3.9.0's `to_tokens` /
`to_str_tokens` / `to_string` / `get_token_position` on the same tokenizer, wherever its
documented behaviour is the same as ours.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from lookingglass import HookedTransformer, InputError, ModelConfig
from tests._helpers import make_model, one_cpu_thread, rejected, save_and_reload_tokenizer

N_CTX = 16
BOS = 0  # <|endoftext|>: BOS, EOS and padding
TEXTS = ["When John met Mary, John smiled", "Mary and John", "the lazy dog"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_tokenizer")
    save_and_reload_tokenizer(folder)
    return folder


def _load(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return _load(tokenizer_dir)


@pytest.fixture(scope="module")
def model(tokenizer_dir):
    tokenizer = _load(tokenizer_dir)
    return make_model(seed=0, tokenizer=tokenizer, n_ctx=N_CTX)


@pytest.fixture(scope="module")
def tl_model(tokenizer_dir):
    from transformer_lens import HookedTransformer as TLHookedTransformer
    from transformer_lens import HookedTransformerConfig

    tokenizer = _load(tokenizer_dir)
    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        d_vocab=len(tokenizer),
        n_ctx=N_CTX,
        act_fn="gelu_new",
        normalization_type="LN",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TLHookedTransformer(cfg, tokenizer)


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------------- BOS
def test_to_tokens_prepends_bos_by_default(model, tokenizer):
    text = TEXTS[0]
    tokens = model.to_tokens(text)
    assert tokens.dtype == torch.long and tokens.shape == (1, len(_ids(tokenizer, text)) + 1)
    assert tokens[0].tolist() == [BOS, *_ids(tokenizer, text)]
    assert model.to_tokens(text, prepend_bos=False)[0].tolist() == _ids(tokenizer, text)
    assert model.to_tokens("").tolist() == [[BOS]]


def test_default_prepend_bos_false_in_the_config(tokenizer):
    model = make_model(seed=0, tokenizer=tokenizer, n_ctx=N_CTX, default_prepend_bos=False)
    assert model.to_tokens(TEXTS[1])[0].tolist() == _ids(tokenizer, TEXTS[1])
    assert model.to_tokens(TEXTS[1], prepend_bos=True)[0].tolist() == [
        BOS,
        *_ids(tokenizer, TEXTS[1]),
    ]


def test_token_tensors_are_never_changed(model, tokenizer):
    tokens = torch.tensor([[5, 6, 7]])
    _, cache = model.run_with_cache(tokens, names_filter="hook_embed")
    assert torch.equal(cache["hook_embed"], model.W_E[tokens])


# --------------------------------------------------------------------- padding
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_side(model, tokenizer, side):
    tokens = model.to_tokens(TEXTS, padding_side=side)
    rows = [[BOS, *_ids(tokenizer, t)] for t in TEXTS]
    width = max(len(r) for r in rows)
    assert tokens.shape == (len(TEXTS), width)
    for row, expected in zip(tokens.tolist(), rows, strict=True):
        pad = [BOS] * (width - len(expected))
        assert row == (expected + pad if side == "right" else pad + expected)


def test_default_padding_side_is_the_models(tokenizer):
    model = HookedTransformer(
        ModelConfig(n_layers=1, d_model=16, d_head=8, n_ctx=N_CTX, d_vocab=len(tokenizer)),
        tokenizer,
        default_padding_side="left",
    )
    assert torch.equal(model.to_tokens(TEXTS), model.to_tokens(TEXTS, padding_side="left"))
    assert not torch.equal(model.to_tokens(TEXTS), model.to_tokens(TEXTS, padding_side="right"))


def test_to_tokens_truncates_to_n_ctx_and_forward_refuses_long_text(model):
    long = " John" * (N_CTX + 5)
    tokens = model.to_tokens(long)
    assert tokens.shape == (1, N_CTX) and tokens[0, 0] == BOS
    assert model.to_tokens(long, truncate=False).shape == (1, N_CTX + 6)
    with pytest.raises(InputError, match="n_ctx"):
        model(long)


# ---------------------------------------------------------------------- decoding
@pytest.mark.parametrize(
    "text", ["Hello world", "  two leading spaces", "tabs\tand\nnewlines", "naïve café ✓", "John"]
)
def test_to_string_round_trip(model, text):
    tokens = model.to_tokens(text, prepend_bos=False, truncate=False)[0]
    assert model.to_string(tokens) == text
    assert model.to_string(tokens.tolist()) == text
    assert model.to_string(model.to_tokens(text, truncate=False)[0]) == "<|endoftext|>" + text


def test_to_string_of_a_batch_gives_a_list(model):
    tokens = model.to_tokens(TEXTS, prepend_bos=False)
    strings = model.to_string(tokens)
    assert isinstance(strings, list) and len(strings) == len(TEXTS)
    for s, text in zip(strings, TEXTS, strict=True):
        assert s.startswith(text) and set(s[len(text) :].split("<|endoftext|>")) <= {""}


def test_to_str_tokens(model, tokenizer):
    text = TEXTS[0]
    pieces = model.to_str_tokens(text)
    assert pieces[0] == "<|endoftext|>" and "".join(pieces[1:]) == text
    assert pieces[1:] == [tokenizer.decode([i]) for i in _ids(tokenizer, text)]
    assert " John" in pieces
    assert model.to_str_tokens(text, prepend_bos=False) == pieces[1:]
    tokens = model.to_tokens(text)
    assert model.to_str_tokens(tokens) == pieces
    assert model.to_str_tokens(tokens[0]) == pieces
    batch = model.to_str_tokens(TEXTS)
    assert len(batch) == 3 and batch[0] == pieces
    assert model.to_str_tokens(torch.cat([tokens, tokens])) == [pieces, pieces]


def test_to_single_token(model, tokenizer):
    john = model.to_single_token(" John")
    assert john == tokenizer.convert_tokens_to_ids("ĠJohn")
    assert model.to_single_str_token(john) == " John"
    with pytest.raises(InputError, match=r"not a single token.*2 tokens"):
        model.to_single_token("Mary")
    with pytest.raises(InputError, match="not a single token"):
        model.to_single_token("")


def test_get_token_position(model):
    text = TEXTS[0]  # "When", " John", ..., " John", ...
    first, last = (
        model.get_token_position(" John", text),
        model.get_token_position(" John", text, mode="last"),
    )
    tokens = model.to_tokens(text)[0].tolist()
    john = model.to_single_token(" John")
    assert (first, last) == (tokens.index(john), len(tokens) - 1 - tokens[::-1].index(john))
    assert first < last and first == 2
    assert model.get_token_position(" John", text, prepend_bos=False) == first - 1
    assert model.get_token_position(john, model.to_tokens(text), mode="last") == last
    with pytest.raises(InputError, match="does not occur"):
        model.get_token_position(" Mary", "the lazy dog")
    with pytest.raises(InputError, match="batch"):
        model.get_token_position(" John", model.to_tokens(TEXTS))
    with pytest.raises(rejected(InputError), match="mode"):
        model.get_token_position(" John", text, mode="middle")


def test_errors_without_a_tokenizer_or_with_bad_input(model):
    bare = make_model(seed=0)
    for call in (lambda: bare.to_tokens("hi"), lambda: bare.to_string([1, 2]), lambda: bare("hi")):
        with pytest.raises(InputError, match="no tokenizer"):
            call()
    with pytest.raises(InputError, match="empty list"):
        model.to_tokens([])
    with pytest.raises(rejected(InputError), match=r"string|\['ok', 3\]"):
        model.to_tokens(["ok", 3])


# ------------------------------------------------------------ TransformerLens agreement
@pytest.mark.parametrize("prepend_bos", [True, False])
def test_to_tokens_agrees_with_transformerlens(model, tl_model, prepend_bos):
    for text in [*TEXTS, ""]:
        if text == "" and not prepend_bos:
            continue  # TransformerLens returns an empty float tensor; we an empty long one
        ours = model.to_tokens(text, prepend_bos=prepend_bos)
        theirs = tl_model.to_tokens(text, prepend_bos=prepend_bos)
        assert torch.equal(ours, theirs), text
    for side in ("left", "right"):
        ours = model.to_tokens(TEXTS, prepend_bos=prepend_bos, padding_side=side)
        theirs = tl_model.to_tokens(TEXTS, prepend_bos=prepend_bos, padding_side=side)
        assert torch.equal(ours, theirs), side
    # Truncation: both keep n_ctx tokens with BOS; without BOS TransformerLens keeps only
    # n_ctx - 1 (its tokenizer adds BOS, truncates, then BOS is removed), we keep n_ctx.
    long = " John" * (N_CTX + 5)
    ours = model.to_tokens(long, prepend_bos=prepend_bos)
    theirs = tl_model.to_tokens(long, prepend_bos=prepend_bos)
    assert ours.shape == (1, N_CTX)
    if prepend_bos:
        assert torch.equal(ours, theirs)
    else:
        assert torch.equal(ours[:, : N_CTX - 1], theirs) and theirs.shape == (1, N_CTX - 1)


def test_str_tokens_string_and_positions_agree_with_transformerlens(model, tl_model):
    for text in TEXTS:
        for bos in (True, False):
            assert model.to_str_tokens(text, prepend_bos=bos) == tl_model.to_str_tokens(
                text, prepend_bos=bos
            )
        tokens = model.to_tokens(text)
        assert model.to_str_tokens(tokens) == tl_model.to_str_tokens(tokens)
        assert model.to_str_tokens(tokens[0]) == tl_model.to_str_tokens(tokens[0])
        assert model.to_string(tokens[0]) == tl_model.to_string(tokens[0])
    assert model.to_str_tokens(TEXTS) == tl_model.to_str_tokens(TEXTS)
    batch = model.to_tokens(TEXTS)
    assert model.to_string(batch) == tl_model.to_string(batch)
    assert model.to_single_token(" Mary") == tl_model.to_single_token(" Mary")
    for mode in ("first", "last"):
        for bos in (True, False):
            ours = model.get_token_position(" John", TEXTS[0], mode=mode, prepend_bos=bos)
            theirs = tl_model.get_token_position(" John", TEXTS[0], mode=mode, prepend_bos=bos)
            assert ours == theirs, (mode, bos)
