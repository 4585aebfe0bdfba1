"""`HookedTransformer`: embed -> blocks -> final norm -> unembed, every activation hooked.

The class composes small parts: components (this folder), tokenization
(`tokenization.py`), generation (`generation.py`), loading and export (`loading/`). Its
own job is the forward pass and the TransformerLens-compatible surface.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from lookingglass import utils
from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError, InputError
from lookingglass.hooks import HookedRootModule, HookPoint
from lookingglass.model import tokenization as tok
from lookingglass.model.attention import (
    Attention,
    AttentionContext,
    as_head_major_layout,
    causal_mask,
)
from lookingglass.model.block import TransformerBlock
from lookingglass.model.embed import Embed, PosEmbed, Unembed
from lookingglass.model.kv_cache import KeyValueCache
from lookingglass.model.norm import make_norm
from lookingglass.model.weights import WeightProperties

ReturnType = Literal["logits", "loss", "both"] | None
TextOrTokens = str | list[str] | Int[Tensor, "batch pos"] | Int[Tensor, "pos"]


class HookedTransformer(WeightProperties, HookedRootModule):
    """A decoder-only transformer in which every activation passes a named `HookPoint`.

    Build a fresh random model with `HookedTransformer(ModelConfig(...))`, or load one
    with `HookedTransformer.from_pretrained(name_or_folder)`.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        tokenizer: Any = None,
        move_to_device: bool = True,
        default_padding_side: tok.PaddingSide = "right",
    ) -> None:
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise ConfigError(
                f"HookedTransformer takes a ModelConfig, got {type(cfg).__name__}; for a dict "
                "use HookedTransformer(ModelConfig(**d))."
            )
        if cfg.d_vocab == -1:
            if tokenizer is None:
                raise ConfigError("d_vocab is not set and there is no tokenizer to take it from.")
            cfg = cfg.replace(d_vocab=len(tokenizer), d_vocab_out=len(tokenizer))
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.default_padding_side = default_padding_side
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional_embedding_type == "standard":
            self.pos_embed = PosEmbed(cfg)
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList(TransformerBlock(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = make_norm(cfg)
        self.unembed = Unembed(cfg)
        self._set_optional_hooks()
        if cfg.init_weights:
            self.init_weights()
        if move_to_device and cfg.device is not None:
            self.to(cfg.device)

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
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        stop_at_layer: int | None = None,
        past_kv_cache: KeyValueCache | None = None,
    ) -> Any:
        """Run the model.

        Args:
            input: a string, a list of strings (padded, see `to_tokens`), token ids
                `[batch, pos]` or `[pos]`; or, with `start_at_layer`, the residual
                stream `[batch, pos, d_model]` entering that layer.
            return_type: "logits" `[batch, pos, d_vocab_out]`, "loss" (mean next-token
                loss, or `[batch, pos-1]` with `loss_per_token`), "both" (logits, loss),
                or None.
            attention_mask: `[batch, pos]`, 1 for real tokens and 0 for padding (left or
                right). Computed automatically for lists of strings.
            stop_at_layer: return the residual stream entering this block instead.
            past_kv_cache: a `KeyValueCache` holding earlier positions (generation).
        """
        if start_at_layer is None:
            tokens, attention_mask = self._prepare_tokens(
                input, prepend_bos, padding_side, attention_mask
            )
            residual, context = self._embed_input(tokens, attention_mask, past_kv_cache)
        else:
            residual = input
            context = self._context(
                residual.shape[:2], attention_mask, past_kv_cache, residual.device
            )
        start = start_at_layer or 0
        for offset, block in enumerate(self.blocks[start:stop_at_layer]):
            entry = None if past_kv_cache is None else past_kv_cache[start + offset]
            residual = block(residual, context, entry)
        if stop_at_layer is not None:
            return residual
        logits = self.unembed(self.ln_final(residual))
        if return_type is None:
            return None
        if return_type == "logits":
            return logits
        if tokens is None:
            raise InputError("A loss needs the input tokens: pass tokens=... with start_at_layer.")
        loss = utils.lm_cross_entropy_loss(logits, tokens, attention_mask, per_token=loss_per_token)
        if return_type == "loss":
            return loss
        if return_type == "both":
            return logits, loss
        raise InputError(
            f"return_type must be 'logits', 'loss', 'both' or None, got {return_type!r}."
        )

    def _prepare_tokens(self, input, prepend_bos, padding_side, attention_mask):
        if isinstance(input, str | list):
            if isinstance(input, str) and input == "":
                raise InputError(
                    "The input string is empty. To run the model on the BOS token alone, pass "
                    "model.to_tokens('') (token ids) instead."
                )
            tokens, mask = self._tokenize(input, prepend_bos, padding_side, truncate=False)
            return tokens, (
                mask if attention_mask is None and (mask == 0).any() else attention_mask
            )
        if not isinstance(input, Tensor):
            raise InputError(
                f"Expected a string, list of strings or token tensor, got {type(input).__name__}."
            )
        tokens = input if input.dim() == 2 else input.reshape(1, -1)
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise InputError(
                f"Token ids must be an integer tensor, got {tokens.dtype}. To feed a residual "
                "stream, pass start_at_layer=."
            )
        return tokens.to(self.W_E.device), attention_mask

    def _embed_input(self, tokens, attention_mask, past_kv_cache):
        self._check_tokens(tokens, 0 if past_kv_cache is None else len(past_kv_cache))
        context = self._context(tokens.shape, attention_mask, past_kv_cache, tokens.device)
        tokens = self.hook_tokens(tokens)
        residual = self.hook_embed(self.embed(tokens))
        if hasattr(self, "pos_embed"):
            residual = residual + self.hook_pos_embed(
                self.pos_embed(tokens, positions=context.positions)
            )
        return residual, context

    def _context(self, shape, attention_mask, past_kv_cache, device) -> AttentionContext:
        """Positions and the attention mask for this pass (extending the KV cache's mask)."""
        batch, q_len = shape
        n_past = 0 if past_kv_cache is None else len(past_kv_cache)
        if past_kv_cache is not None:
            new_mask = (
                attention_mask
                if attention_mask is not None
                else torch.ones(shape, dtype=torch.long)
            )
            attention_mask = past_kv_cache.extend_attention_mask(new_mask.to(device))
        if attention_mask is None or bool(attention_mask.all()):
            key_positions = torch.arange(n_past + q_len, device=device).expand(batch, -1)
            mask = None if n_past == 0 else causal_mask(q_len, n_past + q_len, device)
        else:
            attention_mask = attention_mask.to(device)
            # Count only real tokens, so a padded row is embedded as it would be unpadded.
            key_positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
            allowed = (
                causal_mask(q_len, attention_mask.shape[1], device)
                & attention_mask.bool()[:, None, None, :]
            )
            # A padding query sees no real key; letting it see itself keeps softmax finite.
            mask = allowed | _own_position(q_len, attention_mask.shape[1], device)
        key_is_real = None if mask is None or attention_mask is None else attention_mask.bool()
        return AttentionContext(mask, key_positions[:, -q_len:], key_positions, key_is_real)

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
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.cfg.d_vocab:
            bad = low if low < 0 else high
            raise InputError(f"Token id {bad} is out of range for d_vocab={self.cfg.d_vocab}.")

    # ------------------------------------------------------------- tokenization
    def to_tokens(
        self,
        input: str | list[str],
        prepend_bos: bool | None = None,
        padding_side: tok.PaddingSide | None = None,
        move_to_device: bool = True,
        truncate: bool = True,
    ) -> Int[Tensor, "batch pos"]:
        """Token ids `[batch, pos]` for a string or list of strings (see the BOS policy
        in `lookingglass.model.tokenization`); truncated to `n_ctx` when `truncate`."""
        tokens, _ = self._tokenize(input, prepend_bos, padding_side, truncate)
        return tokens.to(self.W_E.device) if move_to_device else tokens

    def _tokenize(self, input, prepend_bos, padding_side, truncate):
        bos = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        side = padding_side or self.default_padding_side
        tokens, mask = tok.tokenize(
            self.tokenizer, input, bos, side, self.cfg.n_ctx if truncate else None
        )
        return tokens.to(self.W_E.device), mask.to(self.W_E.device)

    def to_string(self, tokens: Tensor | list[int]) -> str | list[str]:
        """Decode token ids to text (a list of strings for a 2-D tensor)."""
        return tok.to_string(self.tokenizer, tokens)

    def to_str_tokens(
        self, input: str | Tensor | list, prepend_bos: bool | None = None, padding_side=None
    ) -> list[str] | list[list[str]]:
        """Each token as a string: for a string, a 1-D or a `[1, pos]` tensor a list; for a
        list of strings or a `[batch, pos]` tensor a list of lists."""
        if isinstance(input, list) and input and isinstance(input[0], str):
            return [self.to_str_tokens(s, prepend_bos, padding_side) for s in input]
        if isinstance(input, str):
            tokens = self.to_tokens(input, prepend_bos, padding_side)[0]
        elif isinstance(input, Tensor):
            tokens = input[0] if input.dim() == 2 and input.shape[0] == 1 else input
        else:
            tokens = torch.tensor(input)
        return tok.to_str_tokens(self.tokenizer, tokens.cpu())

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token."""
        return tok.to_single_token(self.tokenizer, string)

    def to_single_str_token(self, token: int) -> str:
        """The string of one token id."""
        return tok.to_string(self.tokenizer, [token])

    def get_token_position(
        self,
        single_token: str | int,
        input: str | Tensor,
        mode: Literal["first", "last"] = "first",
        prepend_bos: bool | None = None,
        padding_side: tok.PaddingSide | None = None,
    ) -> int:
        """Position of `single_token` in `input` (first or last occurrence)."""
        if mode not in ("first", "last"):
            raise InputError(f"mode must be 'first' or 'last', got {mode!r}.")
        tokens = (
            self.to_tokens(input, prepend_bos, padding_side) if isinstance(input, str) else input
        )
        tokens = tokens.reshape(-1) if tokens.dim() == 1 or tokens.shape[0] == 1 else None
        if tokens is None:
            raise InputError("get_token_position takes one sequence, not a batch.")
        token = (
            self.to_single_token(single_token) if isinstance(single_token, str) else single_token
        )
        hits = (tokens == token).nonzero().reshape(-1)
        if len(hits) == 0:
            raise InputError(f"Token {single_token!r} does not occur in the input.")
        return int(hits[0] if mode == "first" else hits[-1])

    def set_tokenizer(
        self, tokenizer: Any, default_padding_side: tok.PaddingSide = "right"
    ) -> None:
        """Attach a Hugging Face tokenizer."""
        self.tokenizer = tokenizer
        self.default_padding_side = default_padding_side

    # --------------------------------------------------------------- generation
    def generate(self, input: TextOrTokens = "", max_new_tokens: int = 10, **kwargs: Any):
        """Sample or greedily decode continuations; see `lookingglass.model.generation`."""
        from lookingglass.model.generation import generate

        return generate(self, input, max_new_tokens, **kwargs)

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2-style initialization: weights ~ N(0, init_range), biases 0, norms 1."""
        if self.W_E.is_meta:
            return
        generator = None
        if self.cfg.seed is not None:
            generator = torch.Generator(device=self.W_E.device).manual_seed(self.cfg.seed)
        for name, param in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1].lstrip("_")
            if leaf.startswith("W_"):
                nn.init.normal_(param, std=self.cfg.init_range, generator=generator)
            elif leaf.startswith("b_"):
                nn.init.zeros_(param)

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
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.relayout_parameters()
        return result

    # --------------------------------------------------------------- hook flags
    def set_use_attn_result(self, use: bool) -> None:
        """Add or remove `attn.hook_result` (each head's output, `[batch pos head d_model]`)."""
        self._set_flag(use_attn_result=use)

    def set_use_split_qkv_input(self, use: bool) -> None:
        """Add or remove `hook_q/k/v_input` (the block's input before ln1, per head)."""
        self._set_flag(use_split_qkv_input=use)

    def set_use_hook_mlp_in(self, use: bool) -> None:
        """Add or remove `hook_mlp_in` (the MLP's input before its norm)."""
        self._set_flag(use_hook_mlp_in=use)

    def set_use_attn_in(self, use: bool) -> None:
        """Add or remove `hook_attn_in` (the block's input before ln1, per head)."""
        self._set_flag(use_attn_in=use)

    def _set_flag(self, **flag: bool) -> None:
        self.cfg = self.cfg.replace(**flag)
        for block in self.blocks:
            block.set_hook_options(self.cfg)
        self._set_optional_hooks()

    def _set_optional_hooks(self) -> None:
        self.hook_tokens = HookPoint() if self.cfg.use_hook_tokens else nn.Identity()
        self.setup()

    def all_head_labels(self) -> list[str]:
        """Labels `L{layer}H{head}` for every head, layer-major."""
        return [f"L{l}H{h}" for l in range(self.cfg.n_layers) for h in range(self.cfg.n_heads)]

    # ------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, model_name: str | Path, **kwargs: Any) -> HookedTransformer:
        """Load a checkpoint by name (registry alias, hub id) or local folder, with
        TransformerLens's default weight processing. See `lookingglass.loading`."""
        from lookingglass.loading.pretrained import from_pretrained

        return from_pretrained(model_name, **kwargs)

    @classmethod
    def from_pretrained_no_processing(
        cls, model_name: str | Path, **kwargs: Any
    ) -> HookedTransformer:
        """Load a checkpoint with no weight processing: the raw Hugging Face numbers."""
        from lookingglass.loading.pretrained import from_pretrained

        processing = dict(
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            fold_value_biases=False,
            refactor_factored_attn_matrices=False,
        )
        return from_pretrained(model_name, **{**processing, **kwargs})

    def save_pretrained(self, folder: str | Path) -> Path:
        """Save config, weights (safetensors) and tokenizer in lookingglass's own format."""
        from lookingglass.loading.pretrained import save_pretrained

        return save_pretrained(self, folder)

    def to_hf(self):
        """This model as a Hugging Face `transformers` model (same weights)."""
        from lookingglass.loading.hf_export import to_hf

        return to_hf(self)


def _own_position(q_len: int, k_len: int, device) -> Tensor:
    offset = k_len - q_len
    own = torch.zeros(q_len, k_len, dtype=torch.bool, device=device)
    own[torch.arange(q_len), torch.arange(q_len) + offset] = True
    return own[None, None]
