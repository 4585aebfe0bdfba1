"""`HookedTransformer`: embed -> blocks -> final norm -> unembed, every activation hooked.

The class composes small parts: components (this folder), tokenization
(`tokenization.py`), generation (`generation.py`), weight views and processing
(`weights.py`), what enters the first block (`model_input.py`: `input_to_embed`, positions,
the attention context), loading and export (`loading/`). Its own job is the forward pass
and the TransformerLens-compatible surface (`start_at_layer`/`stop_at_layer`,
`past_kv_cache`, `loss_fn`, devices), with TransformerLens 3.9's names and meanings.

Where we differ from TransformerLens on purpose: a batch of strings that needed padding
always gets its attention mask (TransformerLens drops it for right padding, so its loss
counts the padding); invalid inputs raise `InputError` instead of asserting, or of
answering silently (the checks are in `validate.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from lookingglass import utils
from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError, InputError
from lookingglass.hooks import HookedRootModule, HookPoint
from lookingglass.model import initialization, validate
from lookingglass.model import tokenization as tok
from lookingglass.model.attention import (
    Attention,
    as_head_major_layout,
)
from lookingglass.model.block import TransformerBlock
from lookingglass.model.devices import DeviceMethods
from lookingglass.model.embed import Embed, PosEmbed, Unembed
from lookingglass.model.hook_flags import HookFlags
from lookingglass.model.kv_cache import TransformerLensKeyValueCache
from lookingglass.model.model_input import AttentionMask, ModelInput, TextOrTokens
from lookingglass.model.norm import make_final_norm
from lookingglass.model.tokenization import TokenizationMethods
from lookingglass.model.weights import _TL_BUFFERS, WeightProcessing, WeightProperties

ReturnType = Literal["logits", "loss", "both"] | None


class Output(NamedTuple):
    """`return_type="both"`: the logits and the loss (TransformerLens's `Output`)."""

    logits: Float[Tensor, "batch pos d_vocab"]
    loss: Tensor


class HookedTransformer(
    ModelInput,
    TokenizationMethods,
    WeightProperties,
    WeightProcessing,
    HookFlags,
    DeviceMethods,
    HookedRootModule,
):
    """A decoder-only transformer in which every activation passes a named `HookPoint`.

    Build a fresh random model with `HookedTransformer(ModelConfig(...))`, or load one
    with `HookedTransformer.from_pretrained(name_or_folder)`. Without a `tokenizer`, one
    is loaded from `cfg.tokenizer_name` when that is set (offline: a local folder, a
    shipped model, or a Hugging Face id already downloaded).
    """

    def __init__(
        self,
        cfg: ModelConfig | dict[str, Any],
        tokenizer: Any = None,
        move_to_device: bool = True,
        default_padding_side: tok.PaddingSide | None = None,
    ) -> None:
        super().__init__()
        if isinstance(cfg, dict):  # as TransformerLens, which unwraps a dict of fields
            try:
                cfg = ModelConfig.from_dict(cfg)
            except TypeError as error:
                raise ConfigError(f"Cannot build a ModelConfig from this dict: {error}") from error
        if not isinstance(cfg, ModelConfig):
            raise ConfigError(
                f"HookedTransformer takes a ModelConfig (or a dict of its fields), got "
                f"{type(cfg).__name__}. To load a pretrained model, use "
                "HookedTransformer.from_pretrained()."
            )
        self.cfg = cfg
        self.tokenizer = None
        if tokenizer is None and cfg.tokenizer_name is not None and not _on_meta_device():
            # As TransformerLens, which only warns for names it cannot load; a model
            # built on the meta device is a shape probe or a loader's shell: no tokenizer.
            try:
                tokenizer = tok.load_tokenizer(cfg.tokenizer_name)
            except InputError as error:
                logging.warning("No tokenizer: %s", error)
        if tokenizer is not None:
            self.set_tokenizer(tokenizer, default_padding_side=default_padding_side)
        elif cfg.d_vocab == -1:
            raise ConfigError("d_vocab is not set and there is no tokenizer to take it from.")
        elif default_padding_side is not None:
            logging.warning(
                "default_padding_side is explicitly given but ignored because tokenizer is not set."
            )
        cfg = self.cfg
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional_embedding_type in ("standard", "shortformer"):
            self.pos_embed = PosEmbed(cfg)
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList(TransformerBlock(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = make_final_norm(cfg)
        self.unembed = Unembed(cfg)
        self.dataset = None  # sample_datapoint's data: set it to a list of {"text": ...}
        self._set_optional_hooks()
        if cfg.init_weights:
            self.init_weights()
        if move_to_device and cfg.device is not None:
            self.move_model_modules_to_device()

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input: TextOrTokens | Float[Tensor, "batch pos d_model"],
        return_type: ReturnType = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool | None = None,
        padding_side: tok.PaddingSide | None = None,
        start_at_layer: int | None = None,
        tokens: Int[Tensor, "batch pos"] | None = None,
        shortformer_pos_embed: Float[Tensor, "batch pos d_model"] | None = None,
        attention_mask: AttentionMask | None = None,
        stop_at_layer: int | None = None,
        past_kv_cache: TransformerLensKeyValueCache | None = None,
    ) -> Any:
        """Run the model (TransformerLens's arguments and meanings).

        Args:
            input: a string, a list of strings (padded, see `to_tokens`), token ids
                `[batch, pos]` or `[pos]`; or, with `start_at_layer`, the residual
                stream `[batch, pos, d_model]` entering that layer.
            return_type: "logits" `[batch, pos, d_vocab_out]`, "loss" (mean next-token
                loss, or `[batch, pos-1]` with `loss_per_token`), "both" (an `Output`
                of logits and loss), or None.
            start_at_layer: run blocks `[start_at_layer:stop_at_layer]` (Python slice
                semantics, so negative layers count from the end) on the residual
                stream `input`. A loss then needs `tokens`.
            shortformer_pos_embed: only for shortformer models: the positional embedding
                added to the queries' and keys' inputs (computed when not given).
            attention_mask: `[batch, pos]`, 1 for real tokens and 0 for padding. With
                `past_kv_cache` it covers only the new positions (the cache's mask is
                prepended), except after `start_at_layer`, where it must cover the
                cached ones too, as in TransformerLens.
            stop_at_layer: return the residual stream entering this block instead
                (exclusive; negative counts from the end).
            past_kv_cache: a `TransformerLensKeyValueCache` holding earlier positions;
                the new keys, values and mask are appended unless it is frozen.
        """
        shortformer = self.cfg.positional_embedding_type == "shortformer"
        validate.forward_options(
            self.cfg, start_at_layer, stop_at_layer, past_kv_cache, prepend_bos, padding_side,
            return_type,
        )  # fmt: skip
        if shortformer_pos_embed is not None and not shortformer:
            raise InputError(
                "shortformer_pos_embed is for shortformer models; this model's "
                f"positional_embedding_type is {self.cfg.positional_embedding_type!r}."
            )
        embedded = start_at_layer is None
        if embedded:
            residual, tokens, shortformer_pos_embed, attention_mask = self.input_to_embed(
                input, prepend_bos, padding_side, attention_mask, past_kv_cache
            )
            start_at_layer = 0
        layers = list(enumerate(self.blocks))[start_at_layer:stop_at_layer]
        n_past = 0
        if past_kv_cache is not None:
            past_keys = past_kv_cache[layers[0][0] if layers else 0].past_keys
            n_past = past_keys.shape[1]
        if not embedded:
            cached_batch = past_keys.shape[0] if n_past else None
            residual = validate.residual(
                input, self.cfg.d_model, self.cfg.n_ctx, n_past, cached_batch
            )
            if attention_mask is not None:
                mask_shape = (residual.shape[0], n_past + residual.shape[1])
                attention_mask = validate.attention_mask(
                    attention_mask, mask_shape, "the cached and new positions"
                )
        context = self._context(residual.shape[:2], attention_mask, n_past, residual.device)
        if shortformer:
            # Positions are added to the queries' and keys' inputs only. After start_at_layer
            # without shortformer_pos_embed they are computed from the pass's positions.
            if shortformer_pos_embed is None:
                positions = context.positions
                shortformer_pos_embed = self.pos_embed(positions, positions=positions)
            context.shortformer_pos_embed = shortformer_pos_embed
        for layer, block in layers:
            entry = None if past_kv_cache is None else past_kv_cache[layer]
            residual = block(residual, context, entry)
        if stop_at_layer is not None:
            return residual
        residual = self.ln_final(residual)  # run (and hooked) even for return_type=None, as TL
        if return_type is None:
            return None
        logits = self.unembed(residual)
        if return_type == "logits":
            return logits
        if return_type not in ("loss", "both"):
            raise InputError(
                f"return_type must be 'logits', 'loss', 'both' or None, got {return_type!r}."
            )
        if tokens is None:
            raise InputError("A loss needs the input tokens: pass tokens=... with start_at_layer.")
        loss = self.loss_fn(logits, tokens, attention_mask, per_token=loss_per_token)
        return loss if return_type == "loss" else Output(logits, loss)

    def loss_fn(
        self,
        logits: Float[Tensor, "batch pos d_vocab"],
        tokens: Int[Tensor, "batch pos"],
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        per_token: bool = False,
    ) -> Float[Tensor, ""] | Float[Tensor, "batch pos_minus_1"]:
        """Next-token cross-entropy (`utils.lm_cross_entropy_loss`), as in `forward`."""
        if attention_mask is not None and attention_mask.shape != tokens.shape:
            raise InputError(
                f"attention_mask must have the same shape as tokens, got "
                f"{tuple(attention_mask.shape)} and {tuple(tokens.shape)}."
            )
        if not per_token:
            _check_loss_has_targets(tokens, attention_mask)
        return utils.lm_cross_entropy_loss(
            logits, tokens.to(logits.device), attention_mask, per_token
        )

    # --------------------------------------------------------------- generation
    def generate(self, input: Any = "", max_new_tokens: int = 10, **kwargs: Any):
        """Sample or greedily decode continuations, with TransformerLens's arguments; see
        `lookingglass.model.generation.generate`."""
        from lookingglass.model.generation import generate

        return generate(self, input, max_new_tokens, **kwargs)

    def generate_stream(self, input: Any = "", max_new_tokens: int = 10, **kwargs: Any):
        """Like `generate`, yielding token ids as they are produced; see
        `lookingglass.model.generation.generate_stream`."""
        from lookingglass.model.generation import generate_stream

        return generate_stream(self, input, max_new_tokens, **kwargs)

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def init_weights(self) -> None:
        """Draw fresh weights by `cfg.init_mode` ("gpt2": N(0, init_range)); biases 0,
        norms 1. See `lookingglass.model.initialization`."""
        if self.W_E.is_meta:
            return
        initialization.init_weights(self)

    def relayout_parameters(self) -> None:
        """Put W_Q/W_K/W_V back in the fast head-major layout (after loading tensors)."""
        for module in self.modules():
            if isinstance(module, Attention):
                for name in ("W_Q", "W_K", "W_V", "_W_K", "_W_V"):
                    param = module._parameters.get(name)
                    if param is not None:
                        param.data = as_head_major_layout(param.data)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        """Load weights; a TransformerLens state dict loads too (its attention mask and
        constant buffers, which are not weights, are skipped)."""
        state_dict = {k: v for k, v in state_dict.items() if not k.endswith(_TL_BUFFERS)}
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.relayout_parameters()
        return result

    def _set_optional_hooks(self) -> None:
        self.hook_tokens = HookPoint() if self.cfg.use_hook_tokens else nn.Identity()
        self.setup()

    def all_head_labels(self) -> list[str]:
        """Labels `L{layer}H{head}` for every head, layer-major."""
        return [f"L{l}H{h}" for l in range(self.cfg.n_layers) for h in range(self.cfg.n_heads)]

    @property
    def n_params_total(self) -> int:
        """Every parameter counted (embeddings, biases and norms too)."""
        return sum(p.numel() for p in self.parameters())

    def sample_datapoint(
        self,
        tokenize: bool = False,
        prepend_bos: bool | None = None,
        padding_side: tok.PaddingSide | None = None,
    ) -> str | Int[Tensor, "1 pos"]:
        """A random text from `self.dataset` (rows with a "text" field), or its tokens.
        TransformerLens downloads a sample of the training data; we never download, so
        set `model.dataset` first."""
        if self.dataset is None:
            raise InputError(
                "model.dataset is None: set it to a dataset or list of {'text': ...} rows "
                "(lookingglass does not download training data)."
            )
        index = int(torch.randint(len(self.dataset), ()).item())
        text = self.dataset[index]["text"]
        if not tokenize:
            return text
        return self.to_tokens(
            text, prepend_bos=prepend_bos, padding_side=padding_side, truncate=True
        )

    # ------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, model_name: str | Path, **kwargs: Any) -> HookedTransformer:
        """Load a checkpoint by name (registry alias, hub id) or local folder, with
        TransformerLens's default weight processing and keyword arguments. See
        `lookingglass.loading.pretrained.from_pretrained` and, for TransformerLens's
        other arguments, `lookingglass.model.pretrained_args`."""
        from lookingglass.model.pretrained_args import load_with_tl_arguments

        return load_with_tl_arguments(model_name, **kwargs)

    @classmethod
    def from_pretrained_no_processing(
        cls, model_name: str | Path, **kwargs: Any
    ) -> HookedTransformer:
        """Load a checkpoint with no weight processing: the raw Hugging Face numbers."""
        processing = dict(
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            fold_value_biases=False,
            refactor_factored_attn_matrices=False,
        )
        return cls.from_pretrained(model_name, **{**processing, **kwargs})

    def save_pretrained(self, folder: str | Path) -> Path:
        """Save config, weights (safetensors) and tokenizer in lookingglass's own format."""
        from lookingglass.loading.pretrained import save_pretrained

        return save_pretrained(self, folder)

    def to_hf(self):
        """This model as a Hugging Face `transformers` model (same weights)."""
        from lookingglass.loading.hf_export import to_hf

        return to_hf(self)


def _check_loss_has_targets(tokens: Tensor, attention_mask: Tensor | None) -> None:
    """The mean loss averages over (position, next token) pairs of real tokens; with none
    it would be 0/0 = NaN."""
    if attention_mask is None:
        n_targets = tokens.shape[0] * (tokens.shape[1] - 1)
    else:
        n_targets = int((attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()).sum())
    if n_targets == 0:
        raise InputError(
            "The loss has no token to predict: it needs two consecutive real tokens (a "
            f"position and the token after it), got tokens of shape {tuple(tokens.shape)}"
            + ("." if attention_mask is None else " and an attention_mask without such a pair.")
            + " Use loss_per_token=True for per-position losses."
        )


def _on_meta_device() -> bool:
    """True inside `with torch.device("meta")` (tensors are created without memory)."""
    return torch.empty(0).device.type == "meta"
