"""Train a small byte-level BPE tokenizer (GPT-2 style), or a character-level one, on texts.

Byte-level means every string round-trips exactly: the 256 byte symbols are always in
the vocabulary, so there is no unknown token and `decode(encode(x)) == x`. The one
special token, `<|endoftext|>`, is BOS, EOS and padding at once, as in GPT-2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from lookingglass.errors import InputError

ENDOFTEXT = "<|endoftext|>"


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 4096,
    special_tokens: Sequence[str] = (ENDOFTEXT,),
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts`.

    The same texts (in the same order) give the same vocabulary and merges on every
    run and machine. Save it with `tok.save_pretrained(folder)`; reload it with
    `transformers.AutoTokenizer.from_pretrained(folder)`.

    Args:
        texts: training documents.
        vocab_size: final vocabulary size, special tokens and the 256 bytes included.
        special_tokens: added first, so `special_tokens[0]` (the BOS/EOS/pad token) is id 0.
        min_frequency: a pair must occur this often to be merged.

    Returns:
        A fast tokenizer whose `bos_token`, `eos_token` and `pad_token` are
        `special_tokens[0]`; it adds no special tokens on its own when encoding.

    Raises:
        InputError: no texts, or a vocabulary too small to hold the bytes and specials.
    """
    texts = list(texts)
    if not texts:
        raise InputError("train_tokenizer got no texts; pass at least one document")
    if not special_tokens:
        raise InputError("train_tokenizer needs at least one special token (used as BOS/EOS)")
    n_base = len(pre_tokenizers.ByteLevel.alphabet()) + len(special_tokens)
    if vocab_size < n_base:
        raise InputError(
            f"vocab_size={vocab_size} is below the {n_base} bytes and special tokens; "
            f"use >= {n_base}"
        )

    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: a document's first word is not silently changed, which is
    # what makes decode(encode(x)) == x hold for every string.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))

    special = special_tokens[0]
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=special,
        eos_token=special,
        pad_token=special,
        additional_special_tokens=list(special_tokens[1:]),
        # Keep the text exactly as decoded: no " ." -> "." clean-up.
        clean_up_tokenization_spaces=False,
    )


UNKNOWN = "<|unk|>"


def train_char_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per character that occurs in `texts`.

    Id 0 is `<|endoftext|>` (BOS, EOS and padding, as in `train_tokenizer`), id 1 is
    `<|unk|>` (a character not in `texts`), then the characters in code-point order. A
    small vocabulary (the King James Bible has 73 characters) keeps the unembedding from
    dominating a tiny model, and every token of a random-token probe is one the model has
    seen in training. Text made of known characters round-trips exactly.

    Raises:
        InputError: no characters in `texts`.
    """
    chars = sorted(set().union(*(set(text) for text in texts)))
    if not chars:
        raise InputError("train_char_tokenizer got no characters; pass at least one document")
    vocab = {ENDOFTEXT: 0, UNKNOWN: 1, **{ch: i + 2 for i, ch in enumerate(chars)}}
    # BPE with no merges is a character lookup; no pre-tokenizer, so spaces are tokens.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNKNOWN))
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=UNKNOWN,
        clean_up_tokenization_spaces=False,
    )
