"""`train_char_tokenizer`: one token per character, exact round trip, saved and reloaded
through Hugging Face's `AutoTokenizer`."""

from __future__ import annotations

from transformers import AutoTokenizer

from lookingglass.training.tokenizer import train_char_tokenizer


def test_one_token_per_character_and_an_exact_round_trip(tmp_path):
    texts = ["In the beginning God created\nthe heaven and the earth.", "Jesus wept."]
    tokenizer = train_char_tokenizer(texts)
    chars = sorted(set("".join(texts)))
    assert len(tokenizer) == len(chars) + 2
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.pad_token_id == 0
    text = "the  earth\nwept."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == [chars.index(ch) + 2 for ch in text]
    assert tokenizer.decode(ids) == text
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text, add_special_tokens=False)["input_ids"] == ids
    assert reloaded.decode(ids) == text


def test_unknown_characters_become_the_unknown_token():
    tokenizer = train_char_tokenizer(["abc"])
    ids = tokenizer("abz", add_special_tokens=False)["input_ids"]
    assert ids == [2, 3, tokenizer.unk_token_id] and tokenizer.unk_token_id == 1
