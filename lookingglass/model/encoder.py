"""`HookedEncoder`: a BERT-style encoder with TransformerLens 3.9's names and hook points.

    tokens --embed--> hook_full_embed --blocks (bidirectional, post-LN)--> encoder output
        --mlm_head, unembed--> masked-LM logits          (`forward`)
        --pooler, nsp_head--> next-sentence logits       (`BertNextSentencePrediction`)

Every token attends to every (non-padding) token: the attention mask only removes
padding keys (`one_zero_attention_mask`), as in Hugging Face and TransformerLens. The
parts live in `bert_parts.py`; loading Hugging Face BERT checkpoints in
`lookingglass.loading.encoder`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError, InputError
from lookingglass.hooks import HookedRootModule, HookPoint
from lookingglass.model.attention import Attention, AttentionContext, as_head_major_layout
from lookingglass.model.bert_parts import (
    BertBlock,
    BertEmbed,
    BertMLMHead,
    BertNSPHead,
    BertPooler,
)
from lookingglass.model.embed import Unembed
from lookingglass.model.weights import WeightProperties

EncoderInput = str | list[str] | Int[Tensor, "batch pos"]
# Parts that a checkpoint may lack (a `BertModel` has no MLM head, a `BertForMaskedLM`
# no pooler or NSP head): module name -> what it is, for error messages.
HEADS = {
    "mlm_head": "masked-LM head",
    "unembed": "masked-LM head",
    "pooler": "pooler",
    "nsp_head": "next-sentence head",
}
# Architecture fields an encoder block does not read: they must keep their defaults.
_FIXED_FIELDS = (
    "attn_only",
    "positional_embedding_type",
    "n_key_value_heads",
    "parallel_attn_mlp",
    "attn_types",
    "window_size",
    "gated_mlp",
    "num_experts",
    "use_qk_norm",
    "attn_scores_soft_cap",
    "output_logits_soft_cap",
    "norm_placement",
    "post_embedding_ln",
    "smear_keys",
    "attention_score",
    "use_attn_in",
    "use_hook_tokens",
)


class HookedEncoder(HookedRootModule):
    """A BERT-style encoder in which every activation passes a named `HookPoint`.

    Build a random one with `HookedEncoder(ModelConfig(..., act_fn="gelu", eps=1e-12))`
    or load one with `HookedEncoder.from_pretrained(name_or_folder)`. Unlike
    TransformerLens's, the parameters of a fresh model are initialized (normal with
    `init_range`, biases 0), and a part whose weights a checkpoint lacks (see `HEADS`)
    refuses to run instead of computing with random numbers.
    """

    def __init__(self, cfg: ModelConfig, tokenizer: Any = None, move_to_device: bool = True):
        super().__init__()
        self.cfg = _checked_config(cfg, tokenizer)
        self.tokenizer = tokenizer
        self.embed = BertEmbed(self.cfg)
        self.blocks = nn.ModuleList(BertBlock(self.cfg, layer) for layer in range(cfg.n_layers))
        self.mlm_head = BertMLMHead(self.cfg)
        self.unembed = Unembed(self.cfg)
        self.nsp_head = BertNSPHead(self.cfg)
        self.pooler = BertPooler(self.cfg)
        self.hook_full_embed = HookPoint()  # [batch, pos, d_model]
        self.heads_without_weights: frozenset[str] = frozenset()
        if self.cfg.init_weights:
            self.init_weights()
        if move_to_device and self.cfg.device is not None:
            self.to(self.cfg.device)
        self.setup()

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input: EncoderInput,
        return_type: Literal["logits", "predictions"] | None = "logits",
        token_type_ids: Int[Tensor, "batch pos"] | None = None,
        one_zero_attention_mask: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_vocab"] | str | list[str] | None:
        """Masked language modelling.

        Args:
            input: a string, a list of strings (padded; `to_tokens` gives the segment ids
                and the mask) or token ids `[batch, pos]`.
            return_type: "logits" `[batch, pos, d_vocab]`, "predictions" (the most likely
                token at each `[MASK]`, decoded, as TransformerLens), or None.
            token_type_ids: segment ids `[batch, pos]` (0: sentence A, 1: sentence B);
                zeros when not given and not from the tokenizer.
            one_zero_attention_mask: `[batch, pos]`, 1 for tokens to attend to, 0 for
                padding; all ones when not given and not from the tokenizer.
        """
        if return_type not in ("logits", "predictions", None):
            raise InputError(
                f"return_type must be 'logits', 'predictions' or None, got {return_type!r}."
            )
        tokens, token_type_ids, one_zero_attention_mask = self._inputs(
            input, token_type_ids, one_zero_attention_mask
        )
        resid = self.encoder_output(tokens, token_type_ids, one_zero_attention_mask)
        if return_type is None:
            return None
        self._require_head("mlm_head")
        logits = self.unembed(self.mlm_head(resid))
        if return_type == "logits":
            return logits
        return self._predictions(tokens, logits)

    def encoder_output(
        self,
        tokens: Int[Tensor, "batch pos"],
        token_type_ids: Int[Tensor, "batch pos"] | None = None,
        one_zero_attention_mask: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream after the last block (its `hook_normalized_resid_post`)."""
        device = self.W_E.device
        tokens = self._checked_tokens(tokens.to(device))
        if token_type_ids is not None:
            token_type_ids = token_type_ids.to(device)
        resid = self.hook_full_embed(self.embed(tokens, token_type_ids))
        context = _bidirectional_context(tokens.shape, one_zero_attention_mask, device)
        for block in self.blocks:
            resid = block(resid, context)
        return resid

    def _inputs(self, input, token_type_ids, one_zero_attention_mask):
        """(tokens, token type ids, mask): the tokenizer's, unless given explicitly."""
        if isinstance(input, str | list):
            tokens, tokenizer_types, tokenizer_mask = self.to_tokens(input)
            token_type_ids = tokenizer_types if token_type_ids is None else token_type_ids
            if one_zero_attention_mask is None:
                one_zero_attention_mask = tokenizer_mask
            return tokens, token_type_ids, one_zero_attention_mask
        if not isinstance(input, Tensor) or input.dtype.is_floating_point:
            raise InputError(
                "HookedEncoder takes a string, a list of strings or integer token ids "
                f"[batch, pos], got {type(input).__name__}."
            )
        tokens = input if input.dim() == 2 else input.reshape(1, -1)
        return tokens, token_type_ids, one_zero_attention_mask

    def _checked_tokens(self, tokens: Tensor) -> Tensor:
        if tokens.numel() == 0 or tokens.shape[-1] == 0:
            raise InputError("The input has no tokens.")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise InputError(
                f"The input has {tokens.shape[1]} positions but n_ctx is {self.cfg.n_ctx}. "
                "Shorten it, or tokenize with model.to_tokens(..., truncate=True)."
            )
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.cfg.d_vocab:
            bad = low if low < 0 else high
            raise InputError(f"Token id {bad} is out of range for d_vocab={self.cfg.d_vocab}.")
        return tokens

    def _predictions(self, tokens: Tensor, logits: Tensor) -> str | list[str]:
        """TransformerLens's "predictions": the argmax token at each [MASK], decoded."""
        tokenizer = self._require_tokenizer("return_type='predictions'")
        logprobs = logits[tokens == tokenizer.mask_token_id].log_softmax(dim=-1)
        predictions = tokenizer.decode(logprobs.argmax(dim=-1))
        if " " in predictions:  # several masks: one entry each, as TransformerLens
            return [f"Prediction {i}: {p}" for i, p in enumerate(predictions.split(" "))]
        return predictions

    def _require_head(self, head: str) -> None:
        if head in self.heads_without_weights:
            raise InputError(
                f"This model's checkpoint has no {HEADS[head]} ({head}): its output would "
                "come from random weights. Use model.encoder_output(...) or return_type=None "
                "for the residual stream, or load a checkpoint that has the head "
                "(BertForMaskedLM or BertForPreTraining for the masked-LM head, "
                "BertForPreTraining for the pooler and next-sentence head)."
            )

    def _require_tokenizer(self, what: str) -> Any:
        if self.tokenizer is None:
            raise InputError(
                f"{what} needs a tokenizer, and this model has none: pass tokenizer=... to "
                "HookedEncoder or from_pretrained, or pass token ids."
            )
        return self.tokenizer

    # ------------------------------------------------------------- tokenization
    def to_tokens(
        self, input: str | list[str], move_to_device: bool = True, truncate: bool = True
    ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """`(tokens, token_type_ids, attention_mask)`, each `[batch, pos]`, as the
        tokenizer gives them (with [CLS] and [SEP], padded on the right), truncated to
        `n_ctx` when `truncate`."""
        tokenizer = self._require_tokenizer("to_tokens")
        encodings = tokenizer(
            input,
            return_tensors="pt",
            padding=True,
            truncation=truncate,
            max_length=self.cfg.n_ctx if truncate else None,
        )
        out = (encodings["input_ids"], encodings["token_type_ids"], encodings["attention_mask"])
        return tuple(t.to(self.W_E.device) for t in out) if move_to_device else out

    # ------------------------------------------------------------------ weights
    # TransformerLens's stacked weight properties, shared with HookedTransformer.
    W_E_pos = WeightProperties.W_E_pos
    W_Q = WeightProperties.W_Q
    W_K = WeightProperties.W_K
    W_V = WeightProperties.W_V
    W_O = WeightProperties.W_O
    b_Q = WeightProperties.b_Q
    b_K = WeightProperties.b_K
    b_V = WeightProperties.b_V
    b_O = WeightProperties.b_O
    W_in = WeightProperties.W_in
    W_out = WeightProperties.W_out
    b_in = WeightProperties.b_in
    b_out = WeightProperties.b_out
    W_U = WeightProperties.W_U
    b_U = WeightProperties.b_U
    QK = WeightProperties.QK
    OV = WeightProperties.OV
    _stack = WeightProperties._stack

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.embed.W_E

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        return self.embed.pos_embed.W_pos

    def init_weights(self) -> None:
        """Weights (`W_*`, and the heads' `W`) ~ N(0, init_range), biases 0, norms 1."""
        if self.W_E.is_meta:
            return
        generator = None
        if self.cfg.seed is not None:
            generator = torch.Generator(device=self.W_E.device).manual_seed(self.cfg.seed)
        init_parameters(self, self.cfg.init_range, generator)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        for module in self.modules():  # back to the fast head-major layout
            if isinstance(module, Attention):
                for name in ("W_Q", "W_K", "W_V"):
                    module._parameters[name].data = as_head_major_layout(
                        module._parameters[name].data
                    )
        return result

    # --------------------------------------------------------------- hook flags
    def set_use_attn_result(self, use: bool) -> None:
        """Add or remove `attn.hook_result` (each head's output, `[batch pos head d_model]`)."""
        self._set_flag(use_attn_result=use)

    def set_use_split_qkv_input(self, use: bool) -> None:
        """Add or remove per-head `hook_q/k/v_input` (copies of `resid_pre`)."""
        self._set_flag(use_split_qkv_input=use)

    def set_use_hook_mlp_in(self, use: bool) -> None:
        """Add or remove `hook_mlp_in` (the MLP's input before `ln1`)."""
        self._set_flag(use_hook_mlp_in=use)

    def _set_flag(self, **flag: bool) -> None:
        self.cfg = self.cfg.replace(**flag)
        for block in self.blocks:
            block.set_hook_options(self.cfg)
        self.setup()

    def all_head_labels(self) -> list[str]:
        """Labels `L{layer}H{head}` for every head, layer-major."""
        return [f"L{l}H{h}" for l in range(self.cfg.n_layers) for h in range(self.cfg.n_heads)]

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model_name: str | Path, **kwargs: Any) -> HookedEncoder:
        """Load a Hugging Face BERT (`BertForMaskedLM`, `BertForPreTraining`,
        `BertModel`) from a local folder, a known name (`"bert-base-cased"`) or a Hub
        id; or from a loaded model with `hf_model=`. See `lookingglass.loading.encoder`."""
        from lookingglass.loading.encoder import from_pretrained_encoder

        return from_pretrained_encoder(model_name, **kwargs)


@torch.no_grad()
def init_parameters(
    module: nn.Module, init_range: float, generator: torch.Generator | None = None
) -> None:
    """Initialize every parameter of `module` by its name: weight matrices (`W`, `W_*`)
    ~ N(0, init_range), norm gains (`w`) 1, biases 0."""
    for name, param in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "W" or leaf.startswith("W_"):
            nn.init.normal_(param, std=init_range, generator=generator)
        elif leaf == "w":
            nn.init.ones_(param)
        else:
            nn.init.zeros_(param)


def _checked_config(cfg: ModelConfig, tokenizer: Any) -> ModelConfig:
    """`cfg`, with `d_vocab` from the tokenizer when unset; refuses decoder-only options."""
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(
            f"HookedEncoder takes a ModelConfig, got {type(cfg).__name__}; for a dict use "
            "HookedEncoder(ModelConfig(**d)), for a checkpoint HookedEncoder.from_pretrained."
        )
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    changed = [name for name in _FIXED_FIELDS if getattr(cfg, name) != defaults[name]]
    if cfg.normalization_type != "LN":
        changed.append("normalization_type")
    if cfg.n_kv_heads != cfg.n_heads:
        changed.append("n_key_value_heads")
    if changed:
        raise ConfigError(
            f"HookedEncoder does not implement the ModelConfig field(s) {sorted(set(changed))}: "
            "a BERT encoder has learned absolute positions, plain multi-head attention, a "
            "dense MLP and post-LN LayerNorms (normalization_type='LN'). Leave them at "
            "their defaults."
        )
    if cfg.d_vocab == -1:
        if tokenizer is None:
            raise ConfigError("d_vocab is not set and there is no tokenizer to take it from.")
        d_vocab = max(tokenizer.get_vocab().values()) + 1
        cfg = cfg.replace(d_vocab=d_vocab, d_vocab_out=d_vocab)
    return cfg


def _bidirectional_context(
    shape: torch.Size, one_zero_attention_mask: Tensor | None, device: torch.device
) -> AttentionContext:
    """Every query may attend to every key that is not padding (the mask is a
    broadcast view, `[batch or 1, 1, query_pos, key_pos]`)."""
    batch, n_pos = shape
    positions = torch.arange(n_pos, device=device).expand(batch, n_pos)
    if one_zero_attention_mask is None:
        mask = torch.ones(1, 1, 1, n_pos, dtype=torch.bool, device=device)
        return AttentionContext(mask.expand(1, 1, n_pos, n_pos), positions, positions)
    key_is_real = one_zero_attention_mask.to(device).bool()
    mask = key_is_real[:, None, None, :].expand(batch, 1, n_pos, n_pos)
    return AttentionContext(mask, positions, positions, key_is_real)
