"""The tokenizer a GGUF file describes, rebuilt as a `transformers` fast tokenizer.

A GGUF file carries no `tokenizer.json`: llama.cpp stores the vocabulary, the merges and
the special-token ids as metadata (`tokenizer.ggml.*`). For byte-level BPE vocabularies
(`tokenizer.ggml.model == "gpt2"`: GPT-2, SmolLM, Llama 3, Qwen 2) that is everything a
`tokenizers.Tokenizer` needs:

* `tokens` (index = id) and `merges` ("a b" strings, best first) make the BPE model;
* `pre` names how text is split before merging (llama.cpp's pre-tokenizer type); the
  GPT-2 split regex unless the type is one with its own regex (Llama 3's);
* tokens of type 3 (CONTROL, e.g. `<|im_start|>`) are special tokens kept whole;
  type 4 (USER_DEFINED) tokens are kept whole but are not special;
* `bos_token_id`, `eos_token_id`, `unknown_token_id`, `padding_token_id`,
  `add_bos_token` and `chat_template` become the tokenizer's settings.

The result tokenizes exactly as `transformers.AutoTokenizer.from_pretrained(folder,
gguf_file=...)` does (checked in tests/integration/test_gguf.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from lookingglass.errors import CheckpointError

CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# llama.cpp pre-tokenizer type -> split regex; None: the GPT-2 regex of `ByteLevel`.
# (SmolLM's type also splits digits one by one; its vocabulary has no multi-digit token,
# so the GPT-2 regex tokenizes identically, as transformers' GGUF loader does.)
PRE_TOKENIZER_SPLITS: dict[str, str | None] = {
    "default": None,
    "gpt2": None,
    "smollm": None,
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
}
_SPELLING = bytes_to_unicode()  # byte -> the character byte-level BPE writes it as
_ALPHABET = frozenset(_SPELLING.values())
_SPECIAL = {
    "bos_token": "bos_token_id",
    "eos_token": "eos_token_id",
    "unk_token": "unknown_token_id",
    "pad_token": "padding_token_id",
}


def tokenizer_from_gguf(metadata: Mapping[str, Any]) -> PreTrainedTokenizerFast:
    """A fast tokenizer for the `tokenizer.ggml.*` metadata of a GGUF file.

    Args:
        metadata: GGUF key -> value (arrays as lists), as `gguf.read_metadata` returns.

    Raises:
        CheckpointError: no vocabulary, a tokenizer model other than byte-level BPE
            ("gpt2"), or a pre-tokenizer type we do not know (both named, with the
            supported ones).
    """
    meta = {k.removeprefix("tokenizer.ggml."): v for k, v in metadata.items()}
    kind = meta.get("model")
    if kind != "gpt2" or "tokens" not in meta or "merges" not in meta:
        raise CheckpointError(
            f"The GGUF tokenizer is {kind!r}{'' if 'merges' in meta else ' without merges'}; "
            "only byte-level BPE ('gpt2', with tokens and merges) is supported. Pass "
            "tokenizer=... to from_pretrained to use another tokenizer."
        )
    pre = meta.get("pre", "default")
    if pre not in PRE_TOKENIZER_SPLITS:
        raise CheckpointError(
            f"The GGUF pre-tokenizer type {pre!r} is not supported; supported: "
            f"{', '.join(PRE_TOKENIZER_SPLITS)}. Pass tokenizer=... to from_pretrained."
        )
    tokens: list[str] = list(meta["tokens"])
    types: list[int] = list(meta.get("token_type") or [1] * len(tokens))
    vocab = {_byte_spelling(token): index for index, token in enumerate(tokens)}
    merges = [tuple(merge.split(" ", 1)) for merge in meta["merges"]]
    backend = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", fuse_unk=False)
    )
    backend.pre_tokenizer = _pre_tokenizer(PRE_TOKENIZER_SPLITS[pre])
    backend.decoder = decoders.ByteLevel()
    # A "control" token spelled outside the byte alphabet is a llama.cpp mislabel; adding
    # it would grow the vocabulary past the model's (transformers skips it too).
    backend.add_special_tokens(
        [
            AddedToken(token, normalized=False, special=True)
            for token, kind in zip(tokens, types, strict=True)
            if kind == CONTROL and set(token) <= _ALPHABET
        ]
    )
    backend.add_tokens(
        [
            AddedToken(token, normalized=False, special=False)
            for token, kind in zip(tokens, types, strict=True)
            if kind == USER_DEFINED and _byte_spelling(token) in vocab
        ]
    )
    specials = {
        name: tokens[meta[key]]
        for name, key in _SPECIAL.items()
        if isinstance(meta.get(key), int) and 0 <= meta[key] < len(tokens)
    }
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        add_bos_token=bool(meta.get("add_bos_token", False)),
        add_eos_token=bool(meta.get("add_eos_token", False)),
        **specials,
    )
    if "tokenizer.chat_template" in metadata:
        tokenizer.chat_template = metadata["tokenizer.chat_template"]
    return tokenizer


def _byte_spelling(token: str) -> str:
    """The token in the byte-to-unicode alphabet of byte-level BPE (files store most
    tokens that way already; some store raw UTF-8 text)."""
    if set(token) <= _ALPHABET:
        return token
    return "".join(_SPELLING[byte] for byte in token.encode("utf-8"))


def _pre_tokenizer(split: str | None) -> Any:
    # No prefix space: `tokenizer.ggml.add_space_prefix` is a sentencepiece setting that
    # llama.cpp (and transformers) ignore for byte-level BPE.
    if split is None:
        return pre_tokenizers.ByteLevel(add_prefix_space=False)
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
