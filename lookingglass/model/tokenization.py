"""Text <-> tokens for a model, with one explicit BOS policy.

BOS policy: strings get the tokenizer's BOS token prepended when `prepend_bos` is True;
when `prepend_bos` is None the model's `cfg.default_prepend_bos` decides (True for GPT-2,
as in TransformerLens). The BOS id is prepended directly rather than left to the
tokenizer, so tokenizers that add BOS on their own (Llama's) and those that do not
(GPT-2's) behave the same. Token tensors are never modified. Batches of strings are
padded with the pad token (eos when there is none) on `padding_side` ("right" unless
told otherwise), and the attention mask says which positions are real.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.model import validate

PaddingSide = Literal["left", "right"]


def require_tokenizer(tokenizer):
    """The tokenizer, or a clear error when the model has none."""
    if tokenizer is None:
        raise InputError(
            "This model has no tokenizer, so it cannot take strings. Pass token ids, or "
            "attach one with model.set_tokenizer(tokenizer)."
        )
    return tokenizer


def bos_id(tokenizer) -> int:
    """The BOS token id (eos for tokenizers that define no BOS, as GPT-2's effectively)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise InputError(
            "The tokenizer defines neither a BOS nor an EOS token; use prepend_bos=False."
        )
    return bos


def pad_id(tokenizer) -> int:
    """The id used for padding: the pad token, else eos, else BOS."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id):
        if candidate is not None:
            return candidate
    return 0


def tokenize(
    tokenizer,
    text: str | list[str],
    prepend_bos: bool,
    padding_side: PaddingSide = "right",
    max_length: int | None = None,
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Token ids and attention mask for one string or a batch (padded), BOS per the policy.

    `max_length` truncates each row (after BOS) when given."""
    tokenizer = require_tokenizer(tokenizer)
    texts = (
        [text] if isinstance(text, str) else list(text) if isinstance(text, list | tuple) else None
    )
    if texts is not None and not texts:
        raise InputError("Got an empty list of strings; pass at least one string.")
    if texts is None or not all(isinstance(t, str) for t in texts):
        shown = type(text).__name__ if texts is None else [type(t).__name__ for t in texts][:5]
        raise InputError(f"Expected a string or a list of strings, got {shown}.")
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if prepend_bos:
        rows = [[bos_id(tokenizer), *row] for row in rows]
    if max_length is not None:
        rows = [row[:max_length] for row in rows]
    width = max(len(row) for row in rows)
    tokens = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if padding_side == "left" else slice(0, len(row))
        tokens[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return tokens, mask


def to_string(tokenizer, tokens, d_vocab: int = 0) -> str | list[str]:
    """Decode ids as TransformerLens's `to_string`: an int, a 0-D or 1-D tensor, a list of
    ids or an array gives a string; a 2-D tensor (or list of rows) a list of strings.

    Ids must lie in the tokenizer's vocabulary or below `d_vocab` (a model's padded
    vocabulary, whose extra ids decode to '')."""
    tokenizer = require_tokenizer(tokenizer)
    if not isinstance(tokens, Tensor):
        try:
            tokens = (
                torch.tensor(tokens)
                if not isinstance(tokens, list) or not tokens or not isinstance(tokens[0], Tensor)
                else torch.stack(tokens)
            )
        except (TypeError, ValueError, RuntimeError) as error:
            raise InputError(
                f"to_string takes token ids (an int, a list of ints, a tensor or an array), "
                f"got {type(tokens).__name__}: {error}"
            ) from error
    if tokens.is_floating_point() or tokens.is_complex():
        raise InputError(f"to_string takes integer token ids, got a {tokens.dtype} tensor.")
    validate.token_range(tokens, max(len(tokenizer), d_vocab), "to_string's tokens")
    if tokens.dim() == 2:
        return [
            tokenizer.decode(row.tolist(), clean_up_tokenization_spaces=False) for row in tokens
        ]
    if tokens.dim() > 2:
        raise InputError(
            f"to_string takes ids of at most 2 dimensions, got shape {tuple(tokens.shape)}."
        )
    return tokenizer.decode(tokens.reshape(-1).tolist(), clean_up_tokenization_spaces=False)


def to_str_tokens(tokenizer, tokens: Tensor, d_vocab: int = 0) -> list[str] | list[list[str]]:
    """Each token decoded on its own: a list (1-D input) or a list of lists (2-D). Ids
    must be below the tokenizer's size or `d_vocab` (see `to_string`)."""
    tokenizer = require_tokenizer(tokenizer)
    if tokens.dim() > 2 or tokens.is_floating_point():
        raise InputError(
            f"to_str_tokens takes integer token ids of at most 2 dimensions, got a "
            f"{tokens.dtype} tensor of shape {tuple(tokens.shape)}."
        )
    validate.token_range(tokens, max(len(tokenizer), d_vocab), "to_str_tokens's tokens")
    tokens = tokens[None] if tokens.dim() == 0 else tokens
    if tokens.dim() == 2:
        return [to_str_tokens(tokenizer, row) for row in tokens]
    return [tokenizer.decode([t], clean_up_tokenization_spaces=False) for t in tokens.tolist()]


def to_single_token(tokenizer, string: str) -> int:
    """The id of a string that is exactly one token; an error naming the split otherwise."""
    tokenizer = require_tokenizer(tokenizer)
    ids = tokenizer(string, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise InputError(
            f"{string!r} is not a single token: it tokenizes to {len(ids)} tokens {pieces}."
        )
    return ids[0]


def get_attention_mask(
    tokenizer, tokens: Int[Tensor, "batch pos"], prepend_bos: bool, padding_side: PaddingSide
) -> Int[Tensor, "batch pos"]:
    """TransformerLens's attention mask for token ids: 1 everywhere except the pad tokens
    at the padded end (trailing pads for "right", leading pads for "left"). When BOS and
    pad are the same token and `prepend_bos`, the last leading pad is the BOS and stays 1.
    All ones without a tokenizer."""
    attention_mask = torch.ones_like(tokens)
    if tokenizer is None:
        return attention_mask
    is_not_pad = tokens.ne(pad_id(tokenizer)).long()
    if padding_side == "right":
        is_trailing_pad = is_not_pad.flip(-1).cumsum(-1).flip(-1) == 0
        attention_mask[is_trailing_pad] = 0
    else:
        is_leading_pad = is_not_pad.cumsum(-1) == 0
        attention_mask[is_leading_pad] = 0
        if prepend_bos and tokenizer.bos_token_id == tokenizer.pad_token_id:
            bos_positions = is_leading_pad.sum(-1) - 1
            attention_mask[torch.arange(attention_mask.shape[0]), bos_positions] = 1
    return attention_mask


def get_tokenizer_with_bos(tokenizer):
    """A copy of `tokenizer` that prepends BOS when called (`add_bos_token=True`), as
    TransformerLens's `set_tokenizer` arranges, so `model.tokenizer(text)` gives
    `[BOS, ...]` for GPT-2 too. TransformerLens reloads the tokenizer from its name; we
    copy it, which also works offline and for tokenizers built in memory. Tokenizers
    without a BOS, or that cannot add one, are returned unchanged."""
    if tokenizer.bos_token is None or getattr(tokenizer, "add_bos_token", False):
        return tokenizer
    try:
        with_bos = copy.deepcopy(tokenizer)
        with_bos.add_bos_token = True
        if with_bos.encode("")[:1] != [tokenizer.bos_token_id]:
            return tokenizer
    except Exception:  # a tokenizer type that cannot prepend BOS: keep it as it is
        return tokenizer
    return with_bos


def load_tokenizer(name: str):
    """The tokenizer named by `cfg.tokenizer_name` (a local folder, a shipped model or a
    Hugging Face id already in the local cache), loaded without network access.

    Raises:
        InputError: no tokenizer of that name can be found locally.
    """
    import transformers

    from lookingglass.loading import registry

    source = registry.packaged_models().get(name) or registry.hub_id(name) or name
    try:
        return transformers.AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except Exception as error:
        raise InputError(
            f"cfg.tokenizer_name={name!r} names no tokenizer available offline ({error}). "
            "Pass tokenizer=... to HookedTransformer, set tokenizer_name to a local folder, "
            "or set tokenizer_name=None to build the model without one."
        ) from error


class TokenizationMethods:
    """Mixin for `HookedTransformer`: its tokenizer and the text <-> token methods, with
    TransformerLens's names and arguments. Padding goes on `padding_side`, else the
    tokenizer's own `padding_side` (TransformerLens keeps the default there too)."""

    tokenizer: Any
    cfg: Any

    def set_tokenizer(
        self, tokenizer: Any, default_padding_side: PaddingSide | None = None
    ) -> None:
        """Attach a Hugging Face tokenizer, as TransformerLens's `set_tokenizer`: a copy
        that prepends BOS when called (`get_tokenizer_with_bos`), padding on
        `default_padding_side` (else the tokenizer's, else "right"), and EOS, pad and BOS
        filled in from each other where missing; `d_vocab` comes from it when unset."""
        if default_padding_side not in ("right", "left", None):
            raise InputError(
                f"padding_side must be 'right', 'left' or None, got {default_padding_side!r}."
            )
        if self.cfg.original_architecture not in _NO_BOS_WRAPPING:
            tokenizer = get_tokenizer_with_bos(tokenizer)
        if default_padding_side is not None:
            tokenizer.padding_side = default_padding_side
        if tokenizer.padding_side is None:
            tokenizer.padding_side = "right"
        if tokenizer.eos_token is None:
            tokenizer.eos_token = "<|endoftext|>"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer.bos_token is None:
            tokenizer.bos_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        if self.cfg.d_vocab == -1:
            d_vocab = max(tokenizer.get_vocab().values()) + 1
            self.cfg = self.cfg.replace(d_vocab=d_vocab, d_vocab_out=d_vocab)

    @property
    def padding_side(self) -> PaddingSide:
        """Where batches of strings are padded by default: the tokenizer's side."""
        return getattr(self.tokenizer, "padding_side", None) or "right"

    @property
    def default_padding_side(self) -> PaddingSide:
        """Alias of `padding_side` (the name of the constructor argument)."""
        return self.padding_side

    @default_padding_side.setter
    def default_padding_side(self, side: PaddingSide) -> None:
        require_tokenizer(self.tokenizer).padding_side = side

    def to_tokens(
        self,
        input: str | list[str],
        prepend_bos: bool | None = None,
        padding_side: PaddingSide | None = None,
        move_to_device: bool = True,
        truncate: bool = True,
    ) -> Int[Tensor, "batch pos"]:
        """Token ids `[batch, pos]` for a string or list of strings (see the BOS policy
        above); truncated to `n_ctx` when `truncate`."""
        tokens, _ = self._tokens_and_mask(input, prepend_bos, padding_side, truncate)
        return tokens if move_to_device else tokens.cpu()

    def _tokens_and_mask(self, input, prepend_bos, padding_side, truncate: bool = False):
        validate.optional_bool("prepend_bos", prepend_bos)
        validate.padding_side(padding_side)
        bos = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        side = padding_side or self.padding_side
        tokens, mask = tokenize(
            self.tokenizer, input, bos, side, self.cfg.n_ctx if truncate else None
        )
        device = self._input_device()
        return tokens.to(device), mask.to(device)

    def _input_device(self) -> torch.device:
        """Where token inputs go: the embedding's device; for a model whose modules were
        never built (TransformerLens's tokenizer-only subclass pattern) `cfg.device`, as
        TransformerLens's `to_tokens` uses."""
        embed = self.__dict__.get("_modules", {}).get("embed")
        if embed is not None:
            return self.W_E.device
        return torch.device(getattr(self.cfg, "device", None) or "cpu")

    def to_string(self, tokens: Any) -> str | list[str]:
        """Decode ids: a string for an int, a 0-D/1-D tensor, a list of ids or an array; a
        list of strings for a 2-D tensor."""
        return to_string(self.tokenizer, tokens, self.cfg.d_vocab)

    def to_str_tokens(
        self,
        input: str | Tensor | list | np.ndarray,
        prepend_bos: bool | None = None,
        padding_side: PaddingSide | None = None,
    ) -> list[str] | list[list[str]]:
        """Each token as a string: for a string, a 1-D or a `[1, pos]` tensor or array a
        list; for a list (of strings or of token tensors) or a `[batch, pos]` tensor a
        list of lists."""
        if isinstance(input, list) and input and isinstance(input[0], str | Tensor | np.ndarray):
            return [self.to_str_tokens(item, prepend_bos, padding_side) for item in input]
        if isinstance(input, str):
            tokens = self.to_tokens(input, prepend_bos, padding_side)[0]
        elif isinstance(input, Tensor | np.ndarray):
            tokens = torch.as_tensor(input).squeeze()
            tokens = tokens[None] if tokens.dim() == 0 else tokens
        else:
            try:
                tokens = torch.tensor(input)
            except (TypeError, ValueError, RuntimeError) as error:
                raise InputError(
                    "to_str_tokens takes a string, a list of strings, token ids or a list of "
                    f"token tensors, got {type(input).__name__}: {error}"
                ) from error
        return to_str_tokens(self.tokenizer, tokens.cpu(), self.cfg.d_vocab)

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token."""
        return to_single_token(self.tokenizer, string)

    def to_single_str_token(self, int_token: int) -> str:
        """The string of one token id."""
        return to_string(self.tokenizer, [int(int_token)])

    def get_token_position(
        self,
        single_token: str | int | Tensor,
        input: str | Tensor,
        mode: Literal["first", "last"] = "first",
        prepend_bos: bool | None = None,
        padding_side: PaddingSide | None = None,
    ) -> int:
        """Position of `single_token` in `input` (first or last occurrence)."""
        if mode not in ("first", "last"):
            raise InputError(f"mode must be 'first' or 'last', not {mode!r}.")
        tokens = (
            self.to_tokens(input, prepend_bos, padding_side) if isinstance(input, str) else input
        )
        if tokens.dim() == 2 and tokens.shape[0] != 1:
            raise InputError(
                "get_token_position takes one sequence, not a batch: rank-two tokens must have "
                "shape [1, seq_len], not "
                f"{tuple(tokens.shape)}."
            )
        tokens = tokens.reshape(-1)
        if isinstance(single_token, str):
            single_token = self.to_single_token(single_token)
        elif isinstance(single_token, Tensor):
            single_token = int(single_token.item())
        hits = (tokens == single_token).nonzero().reshape(-1)
        if len(hits) == 0:
            # TransformerLens's exact message: code written for it matches on the string.
            raise InputError("The token does not occur in the prompt")
        return int(hits[0] if mode == "first" else hits[-1])


# Architectures whose tokenizers TransformerLens does not wrap to add BOS.
_NO_BOS_WRAPPING = ("OlmoForCausalLM", "OlmoeForCausalLM", "Olmo2ForCausalLM")
