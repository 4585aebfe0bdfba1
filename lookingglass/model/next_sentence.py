"""`BertNextSentencePrediction`: a `HookedEncoder` used for next-sentence prediction.

TransformerLens 3.9's wrapper of the same name: `BertNextSentencePrediction(encoder)`
takes a pair of sentences (or tokens with their segment ids) and gives the logits
`[batch, 2]` of "B follows A" (index 0) and "B does not follow A" (index 1), computed
as `nsp_head(pooler(encoder_output))`. Hooks are the encoder's.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.cache import ActivationCache
from lookingglass.errors import InputError
from lookingglass.hooks import NameFilter
from lookingglass.model.encoder import HookedEncoder

PREDICTIONS = ("The sentences are sequential", "The sentences are NOT sequential")


class BertNextSentencePrediction:
    """Next-sentence prediction with a `HookedEncoder` (`self.model`)."""

    def __init__(self, model: HookedEncoder) -> None:
        self.model = model

    def __call__(
        self,
        input: list[str] | Int[Tensor, "batch pos"],
        return_type: Literal["logits", "predictions"] | None = "logits",
        token_type_ids: Int[Tensor, "batch pos"] | None = None,
        one_zero_attention_mask: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch 2"] | str | None:
        return self.forward(input, return_type, token_type_ids, one_zero_attention_mask)

    def to_tokens(
        self, input: list[str], move_to_device: bool = True, truncate: bool = True
    ) -> tuple[Int[Tensor, "1 pos"], Int[Tensor, "1 pos"], Int[Tensor, "1 pos"]]:
        """`(tokens, token_type_ids, attention_mask)` for the pair `[sentence A,
        sentence B]`: `[CLS] A [SEP] B [SEP]`, segment ids 0 for A and 1 for B."""
        if not isinstance(input, list) or len(input) != 2:
            raise InputError(
                "Next-sentence prediction takes exactly two sentences: pass a list "
                "[sentence_a, sentence_b]."
            )
        tokenizer = self.model._require_tokenizer("to_tokens")
        encodings = tokenizer(
            input[0],
            input[1],
            return_tensors="pt",
            padding=True,
            truncation=truncate,
            max_length=self.model.cfg.n_ctx if truncate else None,
        )
        out = (encodings["input_ids"], encodings["token_type_ids"], encodings["attention_mask"])
        return tuple(t.to(self.model.W_E.device) for t in out) if move_to_device else out

    def forward(
        self,
        input: list[str] | Int[Tensor, "batch pos"],
        return_type: Literal["logits", "predictions"] | None = "logits",
        token_type_ids: Int[Tensor, "batch pos"] | None = None,
        one_zero_attention_mask: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch 2"] | str | None:
        """NSP logits `[batch, 2]`, "predictions" (a sentence saying which is more
        likely, for one pair), or None. Token input needs `token_type_ids`: without them
        both sentences would be read as segment A."""
        if return_type not in ("logits", "predictions", None):
            raise InputError(
                f"return_type must be 'logits', 'predictions' or None, got {return_type!r}."
            )
        if isinstance(input, list):
            tokens, types, mask = self.to_tokens(input)
            token_type_ids = types if token_type_ids is None else token_type_ids
            if one_zero_attention_mask is None:
                one_zero_attention_mask = mask
        elif token_type_ids is None:
            raise InputError(
                "Next-sentence prediction on token ids needs token_type_ids (0 for sentence "
                "A, 1 for sentence B); or pass the two sentences as a list of strings."
            )
        else:
            tokens = input
        resid = self.model.encoder_output(tokens, token_type_ids, one_zero_attention_mask)
        if return_type is None:
            return None
        self.model._require_head("pooler")
        self.model._require_head("nsp_head")
        logits = self.model.nsp_head(self.model.pooler(resid))
        if return_type == "logits":
            return logits
        if logits.shape[0] != 1:
            raise InputError("return_type='predictions' takes one sentence pair, not a batch.")
        return PREDICTIONS[int(logits.argmax(dim=-1))]

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NameFilter = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        pos_slice: slice | int | None = None,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, Any]:
        """`forward` with the encoder's activations cached: `(logits, cache)`; the
        options mean what they mean in `HookedRootModule.run_with_cache`."""
        cache, fwd_hooks, _ = self.model.get_caching_hooks(
            names_filter, device=device, remove_batch_dim=remove_batch_dim, pos_slice=pos_slice
        )
        with self.model.hooks(fwd_hooks):
            out = self.forward(*model_args, **model_kwargs)
        if not return_cache_object:
            return out, cache
        return out, ActivationCache(cache, self.model, has_batch_dim=not remove_batch_dim)
