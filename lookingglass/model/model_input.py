"""What enters block 0: token embeddings, positions and the attention context.

`ModelInput` is a mixin of `HookedTransformer` (which provides `cfg`, `embed`,
`pos_embed`, the hook points and the tokenization methods): TransformerLens's
`input_to_embed`, `get_residual` and `get_pos_offset`, and the per-pass
`AttentionContext` (positions, padding and causal masks, the KV cache's offset) that
every block reads.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lookingglass.errors import InputError
from lookingglass.model import tokenization as tok
from lookingglass.model import validate
from lookingglass.model.attention import AttentionContext, attention_context
from lookingglass.model.kv_cache import TransformerLensKeyValueCache

TextOrTokens = str | list[str] | Int[Tensor, "batch pos"] | Int[Tensor, " pos"]
# 1 for real tokens, 0 for padding, in any dtype (checked by `validate.attention_mask`).
AttentionMask = (
    Int[Tensor, "batch mask_pos"] | Bool[Tensor, "batch mask_pos"] | Float[Tensor, "batch mask_pos"]
)


class ModelInput:
    """Mixin for `HookedTransformer`: from tokens (or strings) to the residual stream and
    attention context entering the first block."""

    def input_to_embed(
        self,
        input: TextOrTokens,
        prepend_bos: bool | None = None,
        padding_side: tok.PaddingSide | None = None,
        attention_mask: AttentionMask | None = None,
        past_kv_cache: TransformerLensKeyValueCache | None = None,
    ) -> tuple[
        Float[Tensor, "batch pos d_model"],
        Int[Tensor, "batch pos"],
        Float[Tensor, "batch pos d_model"] | None,
        Int[Tensor, "batch mask_pos"] | None,
    ]:
        """The residual stream entering block 0, as TransformerLens: returns
        `(residual, tokens, shortformer_pos_embed, attention_mask)`.

        The attention mask is None unless it is needed: when one is given, with a
        `past_kv_cache` (then it is appended to the cache's and covers every position),
        or when padding is on the left (then it is computed from the pad tokens, see
        `tokenization.get_attention_mask`). A batch of strings that was padded always
        gets the tokenizer's mask.
        """
        string_mask = None
        if isinstance(input, str | list):
            if input == "":
                raise InputError(
                    "The input string is empty. To run the model on the BOS token alone, pass "
                    "model.to_tokens('') (token ids) instead."
                )
            tokens, string_mask = self._tokens_and_mask(input, prepend_bos, padding_side)
        else:
            tokens = self._token_tensor(input)
        n_past = self.get_pos_offset(past_kv_cache, tokens.shape[0])
        self._check_tokens(tokens, n_past)
        if attention_mask is not None:
            attention_mask = validate.attention_mask(attention_mask, tuple(tokens.shape))
        if attention_mask is None and string_mask is not None and bool((string_mask == 0).any()):
            attention_mask = string_mask
        side = padding_side or self.padding_side
        if (self.tokenizer is not None and side == "left") or (
            attention_mask is not None or past_kv_cache is not None
        ):
            if attention_mask is None:
                bos = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
                attention_mask = tok.get_attention_mask(self.tokenizer, tokens, bos, side)
            if attention_mask.shape != tokens.shape:
                raise InputError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, but the tokens "
                    f"have shape {tuple(tokens.shape)}."
                )
            attention_mask = attention_mask.to(tokens.device)
            if past_kv_cache is not None:
                attention_mask = past_kv_cache.append_attention_mask(attention_mask)
        else:
            attention_mask = None
        tokens = self.hook_tokens(tokens)
        embed = self.hook_embed(self.embed(tokens))
        residual, shortformer_pos_embed = self.get_residual(
            embed, n_past, attention_mask=attention_mask
        )
        return residual, tokens, shortformer_pos_embed, attention_mask

    def get_residual(
        self,
        embed: Float[Tensor, "batch pos d_model"],
        pos_offset: int,
        prepend_bos: bool | None = None,
        attention_mask: Int[Tensor, "batch offset_pos"] | None = None,
        tokens: Int[Tensor, "batch pos"] | None = None,
        return_shortformer_pos_embed: bool = True,
        device: torch.device | str | None = None,
    ):
        """`embed` plus the positional embedding of positions `pos_offset, ...` (counting
        only real tokens when `attention_mask`, which covers the cached positions too, is
        given). Returns `(residual, shortformer_pos_embed)` (the latter None except for
        shortformer models, whose residual has no positions), or only the residual."""
        residual = embed
        if hasattr(self, "pos_embed"):
            q_len = embed.shape[1]
            if attention_mask is None:
                positions = torch.arange(pos_offset, pos_offset + q_len, device=embed.device)
                positions = positions.expand(embed.shape[0], -1)
            else:
                positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)[:, -q_len:]
            positions = positions.to(embed.device)
            pos_embed = self.pos_embed(positions, positions=positions)
            if attention_mask is not None:  # padding gets no position, as in TransformerLens
                pos_embed = pos_embed * attention_mask[:, -q_len:, None].to(pos_embed)
            pos_embed = self.hook_pos_embed(pos_embed)
            if self.cfg.positional_embedding_type == "shortformer":
                # Added to queries and keys only (TransformerLens's shortformer).
                return (residual, pos_embed) if return_shortformer_pos_embed else residual
            residual = embed + pos_embed
        return (residual, None) if return_shortformer_pos_embed else residual

    def get_pos_offset(
        self, past_kv_cache: TransformerLensKeyValueCache | None, batch_size: int
    ) -> int:
        """How many positions `past_kv_cache` holds (0 without one)."""
        if past_kv_cache is None:
            return 0
        cached_batch, n_past = past_kv_cache[0].past_keys.shape[:2]
        if n_past and cached_batch != batch_size:
            raise InputError(
                f"past_kv_cache holds batch size {cached_batch}, the input {batch_size}."
            )
        return n_past

    def _token_tensor(self, input: Any) -> Int[Tensor, "batch pos"]:
        return validate.token_tensor(input, "input").to(self._input_device())

    def _context(self, shape, attention_mask, n_past: int, device) -> AttentionContext:
        """Positions and the attention mask for this pass; `attention_mask`, when given,
        covers the `n_past` cached positions and the new ones."""
        batch, q_len = shape
        k_len = n_past + q_len
        if attention_mask is not None and attention_mask.shape[-1] != k_len:
            raise InputError(
                f"attention_mask covers {attention_mask.shape[-1]} positions, but there are "
                f"{n_past} cached and {q_len} new ones. After start_at_layer with a KV cache, "
                "pass the mask of every position."
            )
        return attention_context(batch, q_len, n_past, attention_mask, device)

    def _check_tokens(self, tokens: Tensor, n_past: int) -> None:
        if tokens.shape[1] == 0:
            raise InputError("The input has no tokens.")
        total = n_past + tokens.shape[1]
        if total > self.cfg.n_ctx:
            raise InputError(
                f"The input has {total} positions (including BOS and any cached ones) but "
                f"the model's context n_ctx is {self.cfg.n_ctx}. Shorten it, or tokenize with "
                "model.to_tokens(..., truncate=True)."
            )
        validate.token_range(tokens, self.cfg.d_vocab, "input")
