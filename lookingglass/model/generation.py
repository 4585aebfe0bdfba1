"""Autoregressive generation with a key/value cache, as TransformerLens 3.9's `generate`.

Each step feeds only the new position when `use_past_kv_cache` is on, so generating n
tokens costs one prompt pass plus n single-position passes; greedy decoding
(`do_sample=False`) gives the same tokens with and without the cache. The input may be
a string, a list of strings (padded on the left, so every row continues from its last
real token), token ids, or embeddings `[batch, pos, d_model]`.

TransformerLens's meanings kept: a batch-1 result with `return_type="str"` is a string
(not a list); text is decoded without special tokens (BOS, EOS, padding); rows that
reach EOS are padded with EOS; `return_type="embeds"` gives the token embeddings of
input and output; for embedding input, "tokens" and "str" hold only the new tokens.
Different on purpose: hooks on `hook_embed` run during generation (TransformerLens
embeds without its hook point), and a prompt that does not fit `n_ctx` raises.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lookingglass.errors import InputError
from lookingglass.model import tokenization as tok
from lookingglass.model import validate
from lookingglass.model.kv_cache import TransformerLensKeyValueCache

if TYPE_CHECKING:
    from lookingglass.model.transformer import HookedTransformer

_RETURN_TYPES = ("input", "str", "tokens", "embeds")


@torch.no_grad()
def generate(
    model: HookedTransformer,
    input: str | list[str] | Tensor = "",
    max_new_tokens: int = 10,
    stop_at_eos: bool = True,
    eos_token_id: int | list[int] | None = None,
    do_sample: bool = True,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
    use_past_kv_cache: bool = True,
    prepend_bos: bool | None = None,
    padding_side: Literal["left", "right"] | None = None,
    return_type: Literal["input", "str", "tokens", "embeds"] = "input",
    verbose: bool = True,
    **generation_kwargs: Any,
) -> Any:
    """Continue `input` by up to `max_new_tokens` tokens (TransformerLens's arguments).

    `eos_token_id` may be a list of stop tokens. `generation_kwargs` accepts
    `output_logits=True` (then a Hugging Face `GenerateDecoderOnlyOutput` with
    `sequences` and per-step `logits` is returned); other keys are ignored with a warning.
    """
    validate.choice("return_type", return_type, _RETURN_TYPES)
    max_new_tokens = _check_arguments(
        max_new_tokens, temperature, top_k, top_p, freq_penalty, prepend_bos, padding_side
    )
    output_logits = _output_logits_flag(generation_kwargs)
    tokens, embeds, input_type = _prepare_input(model, input, prepend_bos, padding_side)
    if return_type == "input":
        return_type = {"str": "str", "tokens": "tokens", "embeds": "embeds"}[input_type]
    batch, prompt_len = embeds.shape[:2]
    if prompt_len + max_new_tokens > model.cfg.n_ctx:
        raise InputError(
            f"Prompt ({prompt_len} positions) plus max_new_tokens={max_new_tokens} exceeds "
            f"n_ctx={model.cfg.n_ctx}."
        )
    initial_mask = None
    if tokens is not None and model.tokenizer is not None:
        bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        batched = isinstance(input, list) and len(input) > 1
        side = "left" if batched else (padding_side or model.padding_side)
        initial_mask = tok.get_attention_mask(model.tokenizer, tokens, bos, side)
    stop_tokens, eos_for_padding = _stop_tokens(model, stop_at_eos, eos_token_id)
    sampling = dict(
        do_sample=do_sample, top_k=top_k, top_p=top_p, temperature=temperature,
        freq_penalty=freq_penalty,
    )  # fmt: skip
    sampled: list[Tensor] = []
    step_logits: list[Tensor] = []
    batch = embeds.shape[0]
    for next_tokens, final_logits, all_embeds in _decode(
        model, tokens, embeds, initial_mask, use_past_kv_cache, sampling,
        stop_tokens, eos_for_padding, max_new_tokens, verbose,
    ):  # fmt: skip
        sampled.append(next_tokens[:, None])
        embeds = all_embeds
        if output_logits:
            step_logits.append(final_logits.clone())
    new_tokens = torch.cat(sampled, dim=1) if sampled else embeds.new_zeros(batch, 0).long()
    output_tokens = new_tokens if tokens is None else torch.cat([tokens, new_tokens], dim=1)
    if return_type == "str":
        texts = [
            tok.require_tokenizer(model.tokenizer).decode(row, skip_special_tokens=True)
            for row in output_tokens.tolist()
        ]
        result: Any = texts[0] if len(texts) == 1 else texts
    elif return_type == "tokens":
        result = output_tokens
    else:
        result = embeds
    if output_logits:
        from transformers.generation.utils import GenerateDecoderOnlyOutput

        return GenerateDecoderOnlyOutput(sequences=output_tokens, logits=tuple(step_logits))
    return result


def _decode(
    model: HookedTransformer,
    tokens: Tensor | None,
    embeds: Float[Tensor, "batch pos d_model"],
    initial_mask: Tensor | None,
    use_past_kv_cache: bool,
    sampling: dict[str, Any],
    stop_tokens: list[int],
    eos_for_padding: int,
    max_new_tokens: int,
    verbose: bool,
) -> Iterator[tuple[Int[Tensor, " batch"], Float[Tensor, "batch d_vocab"], Tensor]]:
    """The decoding loop: yields each step's new tokens, the logits they came from, and
    the embeddings of everything so far; stops after `max_new_tokens` or when every row
    has produced a stop token."""
    batch, device = embeds.shape[0], embeds.device
    cache = (
        TransformerLensKeyValueCache.init_cache(model.cfg, device, batch)
        if use_past_kv_cache
        else None
    )
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    sampled: list[Tensor] = []
    model.eval()
    for _ in tqdm(range(max_new_tokens), disable=not verbose):
        mask = None
        if initial_mask is not None:
            ones = torch.ones(batch, len(sampled), dtype=initial_mask.dtype, device=device)
            mask = torch.cat([initial_mask.to(device), ones], dim=1)
        n_past = 0 if cache is None else cache[0].past_keys.shape[1]
        residual = model.get_residual(embeds[:, n_past:], n_past, attention_mask=mask)[0]
        logits = model(residual, start_at_layer=0, attention_mask=mask, past_kv_cache=cache)
        final_logits = logits[:, -1, :]
        previous = None if tokens is None else torch.cat([tokens, *sampled], dim=1)
        next_tokens = sample_logits(final_logits, previous, **sampling).to(device)
        if stop_tokens:
            next_tokens[finished] = eos_for_padding
            finished |= torch.isin(next_tokens, torch.tensor(stop_tokens, device=device))
        sampled.append(next_tokens[:, None])
        new_embed = model.hook_embed(model.embed(model.hook_tokens(next_tokens[:, None])))
        embeds = torch.cat([embeds, new_embed], dim=1)
        yield next_tokens, final_logits, embeds
        if stop_tokens and bool(finished.all()):
            break


@torch.no_grad()
def generate_stream(
    model: HookedTransformer,
    input: str | Tensor = "",
    max_new_tokens: int = 10,
    max_tokens_per_yield: int = 25,
    stop_at_eos: bool = True,
    eos_token_id: int | list[int] | None = None,
    do_sample: bool = True,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
    use_past_kv_cache: bool = True,
    prepend_bos: bool | None = None,
    padding_side: Literal["left", "right"] | None = None,
    return_type: str | None = "input",
    verbose: bool = True,
) -> Iterator[Int[Tensor, "batch n_tokens"]]:
    """`generate`, yielding token ids as they come, as TransformerLens's
    `generate_stream`: the first yield holds the prompt's tokens and the first new ones,
    each later one up to `max_tokens_per_yield` new tokens. `return_type` is accepted
    for TransformerLens's signature; the yields are always token ids."""
    max_new_tokens = _check_arguments(
        max_new_tokens, temperature, top_k, top_p, freq_penalty, prepend_bos, padding_side
    )
    validate.integer("max_tokens_per_yield", max_tokens_per_yield, minimum=1)
    tokens, embeds, _ = _prepare_input(model, input, prepend_bos, padding_side)
    if tokens is None:
        raise InputError("generate_stream takes a string or token ids, not embeddings.")
    bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    initial_mask = None
    if model.tokenizer is not None:
        side = padding_side or model.padding_side
        initial_mask = tok.get_attention_mask(model.tokenizer, tokens, bos, side)
    stop_tokens, eos_for_padding = _stop_tokens(model, stop_at_eos, eos_token_id)
    sampling = dict(
        do_sample=do_sample, top_k=top_k, top_p=top_p, temperature=temperature,
        freq_penalty=freq_penalty,
    )  # fmt: skip
    pending: Tensor | None = None
    n_pending = 0
    for step, (next_tokens, _, _) in enumerate(
        _decode(
            model, tokens, embeds, initial_mask, use_past_kv_cache, sampling,
            stop_tokens, eos_for_padding, max_new_tokens, verbose,
        )
    ):  # fmt: skip
        new = next_tokens[:, None]
        if step == 0:  # the first yield carries the prompt, which counts towards its size
            pending = torch.cat([tokens, new], dim=-1)
            n_pending = pending.shape[1]
        else:
            pending = new if pending is None else torch.cat([pending, new], dim=-1)
            n_pending += 1
        if n_pending >= max_tokens_per_yield:
            yield pending
            pending, n_pending = None, 0
    if pending is not None:
        yield pending


def _check_arguments(
    max_new_tokens, temperature, top_k, top_p, freq_penalty, prepend_bos, padding_side
) -> int:
    """Refuse bad generation arguments before any work; returns `max_new_tokens`."""
    validate.sampling(temperature, top_k, top_p, freq_penalty)
    validate.optional_bool("prepend_bos", prepend_bos)
    validate.padding_side(padding_side)
    return validate.integer("max_new_tokens", max_new_tokens, minimum=0)


def _prepare_input(model, input, prepend_bos, padding_side):
    """(token ids or None, embeddings `[batch, pos, d_model]`, input type)."""
    if isinstance(input, str | list):
        if isinstance(input, list) and not all(isinstance(s, str) for s in input):
            raise InputError("Input must be a string, a list of strings, or a tensor.")
        side = "left" if isinstance(input, list) and len(input) > 1 else padding_side
        tokens = model.to_tokens(input, prepend_bos=prepend_bos, padding_side=side, truncate=False)
        input_type = "str"
    elif isinstance(input, Tensor) and input.is_floating_point():
        embeds = validate.residual(input, model.cfg.d_model, model.cfg.n_ctx)
        return None, embeds.to(model.W_E.device), "embeds"
    elif isinstance(input, Tensor):
        tokens = model._token_tensor(input)
        input_type = "tokens"
    else:
        raise InputError(
            f"Input must be a string, a list of strings, or a tensor; got {type(input).__name__}."
        )
    model._check_tokens(tokens, 0)
    return tokens, model.hook_embed(model.embed(model.hook_tokens(tokens))), input_type


def _stop_tokens(model, stop_at_eos: bool, eos_token_id) -> tuple[list[int], int]:
    """The tokens that end a row, and the token that pads a row once it has ended."""
    if not stop_at_eos:
        return [], 0
    tokenizer_eos = None if model.tokenizer is None else model.tokenizer.eos_token_id
    if eos_token_id is None:
        if tokenizer_eos is None:
            raise InputError(
                "stop_at_eos needs an eos_token_id: pass eos_token_id=..., or stop_at_eos="
                "False (the model has no tokenizer EOS)."
            )
        eos_token_id = tokenizer_eos
    d_vocab = model.cfg.d_vocab
    if not isinstance(eos_token_id, list | tuple | Tensor):
        stop = validate.token_ids("eos_token_id", eos_token_id, d_vocab)
        return stop, stop[0]
    # In a list, an id the model cannot produce is harmless (TransformerLens accepts it),
    # but one the model can produce must be there, and so must the id that pads.
    stop = validate.token_ids("eos_token_id", eos_token_id, d_vocab=2**63 - 1)
    padding = tokenizer_eos if tokenizer_eos is not None else stop[0]
    if not any(i < d_vocab for i in stop) or padding >= d_vocab:
        raise InputError(
            f"eos_token_id {stop} has no id in the vocabulary [0, {d_vocab}) (or its first, "
            "which pads ended rows, is outside it): generation could never stop."
        )
    return stop, padding


def _output_logits_flag(generation_kwargs: dict[str, Any]) -> bool:
    output_logits = bool(generation_kwargs.pop("output_logits", False))
    generation_kwargs.pop("return_dict_in_generate", None)
    if generation_kwargs:
        warnings.warn(
            "HookedTransformer.generate received unsupported generation kwargs; ignoring: "
            f"{list(generation_kwargs)}",
            UserWarning,
            stacklevel=3,
        )
    return output_logits


def sample_logits(
    logits: Float[Tensor, "batch d_vocab"],
    previous: Int[Tensor, "batch pos"] | None = None,
    do_sample: bool = True,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
) -> Int[Tensor, " batch"]:
    """The next token of each row: argmax, or a sample after temperature, frequency
    penalty, top-k and nucleus (top-p) filtering. The same operations and random draws
    as TransformerLens's `utils.sample_logits`, so a seed gives the same tokens; unlike
    it, `top_k` and `top_p` together apply both filters (as Hugging Face does)."""
    if not do_sample or temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if freq_penalty > 0 and previous is not None:
        counts = torch.zeros_like(logits).scatter_add_(
            1, previous.to(logits.device), torch.ones_like(previous, dtype=logits.dtype)
        )
        logits = logits - freq_penalty * counts
    if top_k is not None:
        if top_k <= 0:
            raise InputError(f"top_k must be > 0, got {top_k}.")
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise InputError(f"top_p must be in (0, 1], got {top_p}.")
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Keep tokens until the mass before them reaches top_p (always keep the first).
        remove_sorted = cumulative > top_p
        remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
        remove_sorted[..., 0] = False
        logits = logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), -float("inf"))
    return torch.distributions.categorical.Categorical(logits=logits.float()).sample()
