"""TransformerLens's weight properties, stacked over layers (read-only views).

`model.W_Q` is `[n_layers, n_heads, d_model, d_head]`, `model.W_in` is
`[n_layers, d_model, d_mlp]`, and so on; `QK` and `OV` are `FactoredMatrix`es. Also
the weight-only helpers TransformerLens has on the model: `tokens_to_residual_directions`,
`accumulated_bias`, `all_composition_scores`; and TransformerLens's weight-processing
methods (`fold_layer_norm`, `center_writing_weights`, ... on a state dict, and
`process_weights_` on the model itself), thin wrappers of `lookingglass.loading.processing`.
"""

from __future__ import annotations

import logging

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from lookingglass.errors import InputError


class WeightProperties:
    """Mixin for `HookedTransformer`: per-layer weights stacked along a leading layer dim."""

    def _stack(self, module: str, name: str) -> Tensor:
        return torch.stack([getattr(getattr(block, module), name) for block in self.blocks])

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        return self.pos_embed.W_pos

    @property
    def W_E_pos(self) -> Float[Tensor, "d_vocab_plus_n_ctx d_model"]:
        return torch.cat([self.W_E, self.W_pos], dim=0)

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab_out"]:
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[Tensor, " d_vocab_out"]:
        return self.unembed.b_U

    @property
    def W_Q(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("attn", "W_Q")

    @property
    def W_K(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("attn", "W_K")

    @property
    def W_V(self) -> Float[Tensor, "n_layers n_heads d_model d_head"]:
        return self._stack("attn", "W_V")

    @property
    def W_O(self) -> Float[Tensor, "n_layers n_heads d_head d_model"]:
        return self._stack("attn", "W_O")

    @property
    def b_Q(self) -> Float[Tensor, "n_layers n_heads d_head"]:
        return self._stack("attn", "b_Q")

    @property
    def b_K(self) -> Float[Tensor, "n_layers n_heads d_head"]:
        return self._stack("attn", "b_K")

    @property
    def b_V(self) -> Float[Tensor, "n_layers n_heads d_head"]:
        return self._stack("attn", "b_V")

    @property
    def b_O(self) -> Float[Tensor, "n_layers d_model"]:
        return self._stack("attn", "b_O")

    @property
    def W_in(self) -> Float[Tensor, "n_layers d_model d_mlp"]:
        return self._stack("mlp", "W_in")

    @property
    def W_gate(self) -> Float[Tensor, "n_layers d_model d_mlp"] | None:
        """The gate weights of gated MLPs (None for plain MLPs, as TransformerLens)."""
        return self._stack("mlp", "W_gate") if self.cfg.gated_mlp else None

    @property
    def W_out(self) -> Float[Tensor, "n_layers d_mlp d_model"]:
        return self._stack("mlp", "W_out")

    @property
    def b_in(self) -> Float[Tensor, "n_layers d_mlp"]:
        return self._stack("mlp", "b_in")

    @property
    def b_out(self) -> Float[Tensor, "n_layers d_model"]:
        return self._stack("mlp", "b_out")

    @property
    def QK(self):
        """The QK circuit `W_Q @ W_K^T` per layer and head, as a FactoredMatrix
        `[n_layers, n_heads, d_model, d_model]`."""
        from lookingglass.factored_matrix import FactoredMatrix

        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self):
        """The OV circuit `W_V @ W_O` per layer and head, as a FactoredMatrix
        `[n_layers, n_heads, d_model, d_model]`."""
        from lookingglass.factored_matrix import FactoredMatrix

        return FactoredMatrix(self.W_V, self.W_O)

    def tokens_to_residual_directions(
        self, tokens: str | int | Int[Tensor, ""] | Int[Tensor, " pos"] | Int[Tensor, "batch pos"]
    ) -> Float[Tensor, "*token_dims d_model"]:
        """The unembedding direction(s) of token(s): the residual vector whose dot product
        with the final normalized residual is the token's logit (minus b_U), `W_U[:, token]`.

        A string must be a single token; a tensor of several tokens gives one direction per
        token, with the tensor's shape followed by d_model. Meaningful as a logit direction
        once the final norm's weights are folded into W_U (`fold_ln`).
        """
        if isinstance(tokens, Tensor) and tokens.numel() > 1:
            return self.W_U[:, tokens].movedim(0, -1)
        if isinstance(tokens, str):
            token = self.to_single_token(tokens)
        elif isinstance(tokens, Tensor):
            token = int(tokens.item())
        else:
            token = int(tokens)
        return self.W_U[:, token]

    def accumulated_bias(
        self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
    ) -> Float[Tensor, " d_model"]:
        """The sum of the output biases (attention b_O, MLP b_out) written to the residual
        stream before the input of `layer` (0 = none, n_layers = all); with `mlp_input`,
        also that layer's b_O (the MLP's input)."""
        bias = torch.zeros(self.cfg.d_model, device=self.W_E.device, dtype=self.W_E.dtype)
        for block in self.blocks[:layer]:
            bias = bias + block.attn.b_O
            if include_mlp_biases and hasattr(block, "mlp"):
                bias = bias + block.mlp.b_out
        if mlp_input:
            if layer >= self.cfg.n_layers:
                raise InputError(f"mlp_input needs layer < {self.cfg.n_layers}, got {layer}.")
            bias = bias + self.blocks[layer].attn.b_O
        return bias

    def all_composition_scores(
        self, mode: str
    ) -> Float[Tensor, "n_layers n_heads n_layers n_heads"]:
        """Composition scores of every head's OV (writer, first two dims) into every head's
        Q, K or V side (reader, last two dims), as TransformerLens's: `mode` "Q" uses the
        reader's QK, "K" its QK^T, "V" its OV. Pairs whose reader is not in a later layer
        than the writer are 0 (the upper triangle over layers is kept)."""
        from lookingglass.factored_matrix import composition_scores

        readers = {"Q": lambda: self.QK, "K": lambda: self.QK.T, "V": lambda: self.OV}
        if mode not in readers:
            raise InputError(f"mode must be one of 'Q', 'K', 'V', got {mode!r}.")
        scores = composition_scores(self.OV, readers[mode](), broadcast_dims=True)
        layers = torch.arange(self.cfg.n_layers, device=scores.device)
        later = layers[:, None, None, None] < layers[None, None, :, None]
        return torch.where(later, scores, torch.zeros_like(scores))


# TransformerLens buffers that are not weights (attention mask, -inf, rotary tables).
_TL_BUFFERS = ("attn.mask", "attn.IGNORE", "attn.rotary_sin", "attn.rotary_cos")


class WeightProcessing:
    """Mixin for `HookedTransformer`: TransformerLens's weight-processing methods. Each
    step takes and returns a state dict in the model's layout; `process_weights_`
    processes the model's own weights in place."""

    def fold_layer_norm(
        self, state_dict: dict[str, Tensor], fold_biases: bool = True, center_weights: bool = True
    ) -> dict[str, Tensor]:
        """Fold the norms' weights (and biases) into the layers that read them."""
        from lookingglass.loading import processing

        return processing.fold_layer_norm(dict(state_dict), self.cfg, fold_biases, center_weights)

    def center_writing_weights(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Center the weights that write to the residual stream along d_model."""
        from lookingglass.loading import processing

        return processing.center_writing_weights(dict(state_dict), self.cfg)

    def center_unembed(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Center W_U (and b_U) over the vocabulary: log-probabilities do not change."""
        from lookingglass.loading import processing

        return processing.center_unembed(dict(state_dict), self.cfg)

    def fold_value_biases(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Move the value biases into the attention output bias b_O."""
        from lookingglass.loading import processing

        return processing.fold_value_biases(dict(state_dict), self.cfg)

    def refactor_factored_attn_matrices(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Re-factor W_Q/W_K and W_V/W_O by SVD (same QK and OV circuits)."""
        from lookingglass.loading import processing

        return processing.refactor_factored_attn_matrices(dict(state_dict), self.cfg)

    def fill_missing_keys(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """`state_dict` with the keys it lacks taken from the model (as TransformerLens,
        biases and norms only: a missing weight matrix raises `CheckpointError`)."""
        from lookingglass.errors import CheckpointError

        own = self.state_dict()
        missing = sorted(set(own) - set(state_dict))
        matrices = [k for k in missing if k.rsplit(".", 1)[-1].lstrip("_").startswith("W_")]
        if matrices:
            raise CheckpointError(
                f"The state dict lacks weight matrices the model needs: {matrices}. Filling "
                "them would silently zero a sublayer; check the key names."
            )
        for key in missing:
            logging.warning("Missing key %s filled with the model's value.", key)
        return {**state_dict, **{k: own[k] for k in missing}}

    @torch.no_grad()
    def load_and_process_state_dict(
        self,
        state_dict: dict[str, Tensor],
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        fold_value_biases: bool = True,
        refactor_factored_attn_matrices: bool = False,
    ) -> None:
        """Load `state_dict` (our = TransformerLens's layout) and process it, as
        TransformerLens's method: folding the norms rebuilds them as "LNPre"/"RMSPre"."""
        from lookingglass.loading import processing

        sd = {k: v for k, v in state_dict.items() if not k.endswith(_TL_BUFFERS)}
        fold_ln = fold_ln and self.cfg.normalization_type in ("LN", "RMS")
        sd, cfg = processing.process_weights(
            {k: v.clone() for k, v in self.fill_missing_keys(sd).items()},
            self.cfg,
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        )
        if cfg.normalization_type != self.cfg.normalization_type:
            self._rebuild(cfg)
        self.load_state_dict(sd, strict=True)

    def load_sample_training_dataset(self, **kwargs) -> None:
        """TransformerLens downloads a sample of the model's training data here; we never
        download. Set `model.dataset` yourself (see `sample_datapoint`)."""
        from lookingglass.errors import InputError

        raise InputError(
            "lookingglass does not download training data: set model.dataset to a dataset "
            "or a list of {'text': ...} rows."
        )

    @torch.no_grad()
    def process_weights_(
        self,
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        refactor_factored_attn_matrices: bool = False,
    ) -> None:
        """Process this model's weights in place, as `from_pretrained` does (value biases
        are folded too, as in TransformerLens). Folding the norms turns "LN" into "LNPre"
        ("RMS" into "RMSPre"): the norm modules are rebuilt, and hooks on their hook
        points are dropped."""
        self.load_and_process_state_dict(
            self.state_dict(),
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        )

    def _rebuild(self, cfg) -> None:
        """Replace every module with those of a model built for `cfg` (same tokenizer)."""
        # Built for real (not on the meta device) so computed buffers, such as rotary
        # tables, are right; the weights are overwritten by the caller.
        spec = cfg.replace(init_weights=False, tokenizer_name=None)
        shell = type(self)(spec, move_to_device=False)
        self._modules = shell._modules
        self.cfg = cfg
        nn.Module.to(self, self.W_E.device)
        self.setup()
