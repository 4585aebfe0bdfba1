"""The parts of a BERT encoder that a decoder-only transformer does not have.

    embed:  LayerNorm(W_E[token] + W_pos[position] + W_token_type[segment])
    block:  resid_mid  = resid_pre + attn(resid_pre)                 (no mask: bidirectional)
            resid_post = ln1(resid_mid) + mlp(ln1(resid_mid))
            output     = ln2(resid_post)                             (post-LN, "normalized")
    MLM head:   ln(act(resid @ W + b)), then the unembedding          [batch pos d_vocab]
    pooler:     tanh(resid[:, 0] @ W + b)                             [batch d_model]
    NSP head:   pooled @ W + b                                        [batch 2]

Names, shapes and hook points are TransformerLens 3.9's (`BertEmbed`, `BertBlock`,
`BertMLMHead`, `BertPooler`, `BertNSPHead`, `TokenTypeEmbed`). Note TransformerLens's
post-LN naming: `hook_resid_post` is `ln1(resid_mid) + mlp_out`, *before* `ln2`; the
block's output (what the next block reads, and Hugging Face's hidden state) is
`hook_normalized_resid_post`. The attention, MLP, norms and embeddings are the ones
`HookedTransformer` uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from lookingglass.config import ModelConfig
from lookingglass.hooks import HookPoint
from lookingglass.model.attention import Attention, AttentionContext
from lookingglass.model.block import _optional_hook, per_head
from lookingglass.model.embed import Embed, PosEmbed
from lookingglass.model.mlp import ACTIVATIONS, MLP
from lookingglass.model.norm import LayerNorm

N_TOKEN_TYPES = 2  # segment A and segment B, as in BERT (and TransformerLens)


class TokenTypeEmbed(nn.Module):
    """Segment embedding `W_token_type [2, d_model]`: row 0 for sentence A, 1 for B."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_token_type = nn.Parameter(torch.empty(N_TOKEN_TYPES, cfg.d_model, dtype=cfg.dtype))

    def forward(
        self, token_type_ids: Int[Tensor, "batch pos"]
    ) -> Float[Tensor, "batch pos d_model"]:
        return F.embedding(token_type_ids, self.W_token_type)


class BertEmbed(nn.Module):
    """Token + position + token-type embeddings, then a LayerNorm (`embed.ln`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.token_type_embed = TokenTypeEmbed(cfg)
        self.ln = LayerNorm(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_token_type_embed = HookPoint()  # [batch, pos, d_model]

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        token_type_ids: Int[Tensor, "batch pos"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        if token_type_ids is None:  # one segment
            token_type_ids = torch.zeros_like(tokens)
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        embed = self.hook_embed(self.embed(tokens))
        pos_embed = self.hook_pos_embed(self.pos_embed(positions))
        token_type_embed = self.hook_token_type_embed(self.token_type_embed(token_type_ids))
        return self.ln(embed + pos_embed + token_type_embed)


class BertBlock(nn.Module):
    """A post-LN encoder block: attention and MLP each followed by a LayerNorm."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.attn = Attention(cfg, layer_id=layer)
        self.ln1 = LayerNorm(cfg)
        self.mlp = MLP(cfg)
        self.ln2 = LayerNorm(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        self.hook_normalized_resid_post = HookPoint()  # [batch, pos, d_model]
        self.set_hook_options(cfg)

    def set_hook_options(self, cfg: ModelConfig) -> None:
        """(Re)build the optional hook points for `use_split_qkv_input` (per-head copies
        of `resid_pre`, which every head reads: there is no norm before attention),
        `use_hook_mlp_in` and `use_attn_result`."""
        split = cfg.use_split_qkv_input
        self.n_heads_to_copy = cfg.n_heads if split else 0
        self.hook_q_input = _optional_hook(split)  # [batch, pos, head_index, d_model]
        self.hook_k_input = _optional_hook(split)  # [batch, pos, head_index, d_model]
        self.hook_v_input = _optional_hook(split)  # [batch, pos, head_index, d_model]
        self.hook_mlp_in = _optional_hook(cfg.use_hook_mlp_in)  # [batch, pos, d_model]
        self.attn.set_hook_options(cfg)

    def forward(
        self, resid_pre: Float[Tensor, "batch pos d_model"], context: AttentionContext
    ) -> Float[Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        copies = self.n_heads_to_copy
        # q, k and v each read their own per-head copy, as in TransformerLens's BertBlock.
        q_in, k_in, v_in = (
            (per_head(resid_pre, copies) for _ in range(3)) if copies else [resid_pre] * 3
        )
        attn_out = self.hook_attn_out(
            self.attn(
                self.hook_q_input(q_in),
                self.hook_k_input(k_in),
                self.hook_v_input(v_in),
                context=context,
            )
        )
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        normalized_resid_mid = self.ln1(self.hook_mlp_in(resid_mid))
        mlp_out = self.hook_mlp_out(self.mlp(normalized_resid_mid))
        resid_post = self.hook_resid_post(normalized_resid_mid + mlp_out)
        return self.hook_normalized_resid_post(self.ln2(resid_post))


class BertMLMHead(nn.Module):
    """The masked-LM transform before the unembedding: `ln(act(resid @ W + b))`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(cfg.d_model, cfg.d_model, dtype=cfg.dtype))
        self.b = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.act_fn = ACTIVATIONS[cfg.act_fn or "gelu"]
        self.ln = LayerNorm(cfg)

    def forward(
        self, resid: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_model"]:
        return self.ln(self.act_fn(resid @ self.W + self.b))


class BertPooler(nn.Module):
    """The sequence summary for classification: `tanh(resid[:, 0] @ W + b)` ([CLS])."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(cfg.d_model, cfg.d_model, dtype=cfg.dtype))
        self.b = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.hook_pooler_out = HookPoint()  # [batch, d_model]

    def forward(self, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch d_model"]:
        return self.hook_pooler_out(torch.tanh(resid[:, 0] @ self.W + self.b))


class BertNSPHead(nn.Module):
    """Next-sentence logits from the pooled output: `[is next, is not next]`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(cfg.d_model, 2, dtype=cfg.dtype))
        self.b = nn.Parameter(torch.zeros(2, dtype=cfg.dtype))
        self.hook_nsp_out = HookPoint()  # [batch, 2]

    def forward(self, pooled: Float[Tensor, "batch d_model"]) -> Float[Tensor, "batch 2"]:
        return self.hook_nsp_out(pooled @ self.W + self.b)
