"""Tokens as text the explorer can show: a token that is only part of a UTF-8 character
(byte-level BPE splits emoji and many accented letters into such pieces) decodes to the
replacement character '�', so every such piece would look the same. Here each byte that
is not a whole character is written `<0xNN>` instead, as SentencePiece tokenizers name
their byte tokens; everything else is the token's own text, spaces and newlines kept
(escaping them for display is `views.shown_token`'s job).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

REPLACEMENT = "\ufffd"
_BYTE_TOKEN = re.compile(r"^(?:<0x[0-9A-Fa-f]{2}>)+$")


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: each of its 256 printable stand-in
    characters to the byte it stands for (`bytes_to_unicode` in GPT-2's encoder.py)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


def bytes_text(raw: bytes) -> str:
    """`raw` decoded as UTF-8, each byte that is not part of a whole character as `<0xNN>`."""
    text = raw.decode("utf-8", errors="surrogateescape")
    return "".join(f"<0x{ord(c) - 0xDC00:02X}>" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)


def token_text(tokenizer, token_id: int) -> str:
    """One token's text; bytes that are not whole characters as `<0xNN>`.

    Args:
        tokenizer: a Hugging Face tokenizer (`model.tokenizer`).
        token_id: the token's id.
    """
    text = tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False)
    if REPLACEMENT not in text:
        return text
    raw = tokenizer.convert_ids_to_tokens(int(token_id))
    if isinstance(raw, str) and _BYTE_TOKEN.match(raw):  # SentencePiece byte fallback
        return raw.upper().replace("<0X", "<0x")
    decoder = _byte_decoder()
    if isinstance(raw, str) and raw and all(c in decoder for c in raw):  # byte-level BPE
        return bytes_text(bytes(decoder[c] for c in raw))
    return text


def str_tokens(model, token_ids: Iterable[int]) -> list[str]:
    """`model.to_str_tokens` of a sequence of ids, with byte pieces as `<0xNN>`. A model
    without a tokenizer shows ids as their numbers."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return [str(int(t)) for t in token_ids]
    return [token_text(tokenizer, int(t)) for t in token_ids]
