"""`SAE`: a sparse autoencoder or transcoder as a hooked module, computing what SAELens 6
computes.

One class serves every architecture; the architecture is a config field (`cfg.architecture`):

- standard:  f = ReLU((x - b_dec·apply_b_dec_to_input) W_enc + b_enc)
- gated:     f = 1[x' W_enc + b_gate > 0] · ReLU(x' (W_enc ⊙ exp(r_mag)) + b_mag)
- jumprelu:  f = ReLU(h) · 1[h > threshold],  h = x' W_enc + b_enc
- topk:      keep the k largest of h (times ‖W_dec‖ rows if `rescale_acts_by_decoder_norm`),
             ReLU them, zero the rest
- transcoders read `hook_name` and write `hook_name_out` (no b_dec subtraction):
  `transcoder` (ReLU), `jumprelu_transcoder`, `skip_transcoder` (adds x W_skipᵀ).
decode: x̂ = f W_dec + b_dec (f / ‖W_dec‖ rows first for top-k with rescaling).

Hook points, as SAELens's: `hook_sae_input` (input after the dtype cast),
`hook_sae_acts_pre`, `hook_sae_acts_post` (the features), `hook_sae_recons`,
`hook_sae_error` and `hook_sae_output`. With `use_error_term` the output is the
reconstruction plus the (gradient-free) error x - x̂, so the SAE changes nothing unless
something edits its hooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor, nn

from lookingglass.hooks import HookedRootModule, HookPoint
from lookingglass.sae.config import SAEConfig

SAE_HOOK_NAMES = (
    "hook_sae_input",
    "hook_sae_acts_pre",
    "hook_sae_acts_post",
    "hook_sae_output",
    "hook_sae_recons",
    "hook_sae_error",
)


class SAE(HookedRootModule):
    """A sparse autoencoder (or transcoder) with SAELens's weights, formulas and hooks.

    Build one from a config (`SAE(SAEConfig(d_in=64, d_sae=256, hook_name=...))`, weights
    zero-initialised except SAELens's Kaiming-uniform W_dec with W_enc = W_decᵀ), or load
    one with `SAE.load_from_disk(folder)`.
    """

    def __init__(self, cfg: SAEConfig, use_error_term: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.use_error_term = use_error_term
        self._hooks_off = False
        self._norm_state: dict[str, Tensor] = {}
        dtype = getattr(torch, cfg.dtype)
        kw = {"dtype": dtype, "device": cfg.device}
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.out_dim
        w_dec = torch.empty(d_sae, d_out, **kw)
        if cfg.device != "meta":
            nn.init.kaiming_uniform_(w_dec)
        self.W_dec = nn.Parameter(w_dec)
        if cfg.is_transcoder:  # SAELens draws W_enc on its own for transcoders
            w_enc = torch.empty(d_in, d_sae, **kw)
            if cfg.device != "meta":
                nn.init.kaiming_uniform_(w_enc)
        else:
            w_enc = w_dec.T.clone().contiguous()
        self.W_enc = nn.Parameter(w_enc)
        self.b_dec = nn.Parameter(torch.zeros(d_out, **kw))
        if cfg.architecture == "gated":
            self.b_gate = nn.Parameter(torch.zeros(d_sae, **kw))
            self.b_mag = nn.Parameter(torch.zeros(d_sae, **kw))
            self.r_mag = nn.Parameter(torch.zeros(d_sae, **kw))
        else:
            self.b_enc = nn.Parameter(torch.zeros(d_sae, **kw))
        if cfg.architecture in ("jumprelu", "jumprelu_transcoder"):
            self.threshold = nn.Parameter(torch.zeros(d_sae, **kw))
        if cfg.architecture == "skip_transcoder":
            self.W_skip = nn.Parameter(torch.zeros(d_out, d_in, **kw))
        for name in SAE_HOOK_NAMES:
            setattr(self, name, HookPoint())
        self.setup()

    # ------------------------------------------------------------------ internals
    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def _hook(self, name: str, x: Tensor) -> Tensor:
        return x if self._hooks_off else getattr(self, name)(x)

    @contextmanager
    def hooks_disabled(self) -> Iterator[None]:
        """Run the SAE's own hook points as identities (for the clean error term)."""
        before, self._hooks_off = self._hooks_off, True
        try:
            yield
        finally:
            self._hooks_off = before

    def _normalize_in(self, x: Tensor) -> Tensor:
        # SAELens's run_time_activation_norm_fn_in ("expected_average_only_in" is folded
        # into the weights when SAELens loads from the hub, an identity at run time).
        mode = self.cfg.normalize_activations
        if mode == "constant_norm_rescale":
            coeff = (self.cfg.d_in**0.5) / x.norm(dim=-1, keepdim=True)
            self._norm_state = {"coeff": coeff}
            return x * coeff
        if mode == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            x = x - mu
            std = x.std(dim=-1, keepdim=True)
            self._norm_state = {"mu": mu, "std": std}
            return x / (std + 1e-5)
        return x

    def _normalize_out(self, x: Tensor) -> Tensor:
        mode, state = self.cfg.normalize_activations, self._norm_state
        if mode == "constant_norm_rescale" and "coeff" in state:
            return x / state["coeff"]
        if mode == "layer_norm" and "std" in state:
            return x * state["std"] + state["mu"]
        return x

    # ------------------------------------------------------------------ public API
    def process_sae_in(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_in"]:
        """Cast, `hook_sae_input`, normalise, subtract b_dec (if `apply_b_dec_to_input`)."""
        x = self._hook("hook_sae_input", x.to(self.dtype))
        x = self._normalize_in(x)
        if self.cfg.is_transcoder:
            return x
        return x - self.b_dec * self.cfg.apply_b_dec_to_input

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """The feature activations (`hook_sae_acts_post`)."""
        arch = self.cfg.architecture
        sae_in = self.process_sae_in(x)
        if arch == "gated":
            active = (sae_in @ self.W_enc + self.b_gate > 0).to(self.dtype)
            mag = self._hook(
                "hook_sae_acts_pre", sae_in @ (self.W_enc * self.r_mag.exp()) + self.b_mag
            )
            return self._hook("hook_sae_acts_post", active * torch.relu(mag))
        pre = self._hook("hook_sae_acts_pre", sae_in @ self.W_enc + self.b_enc)
        if arch == "topk":
            if self.cfg.rescale_acts_by_decoder_norm:
                pre = pre * self.W_dec.norm(dim=-1)
            values, indices = torch.topk(pre, k=self.cfg.k, dim=-1, sorted=False)
            acts = torch.zeros_like(pre).scatter_(-1, indices, values.relu())
        elif arch in ("jumprelu", "jumprelu_transcoder"):
            acts = torch.relu(pre) * (pre > self.threshold).to(self.dtype)
        else:
            acts = torch.relu(pre)
        return self._hook("hook_sae_acts_post", acts)

    def decode(self, feature_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_out"]:
        """The reconstruction (`hook_sae_recons`, then undo the input normalisation)."""
        if self.cfg.architecture == "topk" and self.cfg.rescale_acts_by_decoder_norm:
            feature_acts = feature_acts * (1 / self.W_dec.norm(dim=-1))
        recons = self._hook("hook_sae_recons", feature_acts @ self.W_dec + self.b_dec)
        return recons if self.cfg.is_transcoder else self._normalize_out(recons)

    def reconstruct(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """decode(encode(x)), plus x W_skipᵀ for skip transcoders (SAELens's forward)."""
        out = self.decode(self.encode(x))
        if self.cfg.architecture == "skip_transcoder":
            out = out + x.to(self.dtype) @ self.W_skip.T
        return out

    def splice(
        self, x: Float[Tensor, "... d_in"], target: Float[Tensor, "... d_out"] | None = None
    ) -> Float[Tensor, "... d_out"]:
        """What the SAE writes in place of `target` (`x` itself for SAEs).

        Without the error term: the reconstruction. With it: reconstruction + error, where
        error = target - clean reconstruction (computed with the SAE's hooks off, no
        gradient). Computed as target + (reconstruction - clean reconstruction) when
        `hook_sae_error` left the error alone, so an unedited SAE returns `target`
        bit for bit; gradients flow as in SAELens (through the reconstruction only).
        """
        target = x if target is None else target
        out = self.reconstruct(x)
        if self.use_error_term:
            with torch.no_grad(), self.hooks_disabled():
                clean = self.reconstruct(x)
            raw = (target - clean).detach()
            error = self._hook("hook_sae_error", raw)
            if error is raw:
                out = target.detach().to(out.dtype) + (out - clean)
            else:
                out = out + error
        return self._hook("hook_sae_output", out.to(target.dtype))

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """SAELens's `SAE.forward`: encode, decode, add the error term if asked."""
        return self.splice(x) if not self.cfg.is_transcoder else self._transcode(x)

    def _transcode(self, x: Tensor) -> Tensor:
        return self._hook("hook_sae_output", self.reconstruct(x))

    # ------------------------------------------------------------------ files
    def save_model(self, path, sparsity: Tensor | None = None):
        """Write the SAELens folder (`cfg.json`, `sae_weights.safetensors`, optionally
        `sparsity.safetensors`); returns (weights path, cfg path) as SAELens does."""
        from lookingglass.sae.folder import save_sae

        return save_sae(self, path, sparsity=sparsity)

    @classmethod
    def load_from_disk(cls, path, device: str = "cpu", dtype: str | None = None) -> SAE:
        """Load a folder written by SAELens's `save_model` (or ours)."""
        from lookingglass.sae.folder import load_sae

        return load_sae(path, device=device, dtype=dtype)
