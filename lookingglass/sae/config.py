"""`SAEConfig`: what an SAE is, with SAELens 6's field names and `cfg.json` layout.

SAELens 6 writes `cfg.json` with the architecture fields at the top level (`d_in`,
`d_sae`, `dtype`, `device`, `apply_b_dec_to_input`, `normalize_activations`,
`reshape_activations`, `architecture`, and per architecture `k`,
`rescale_acts_by_decoder_norm` (top-k) or `d_out` (transcoders)) and where the SAE
belongs in a nested `metadata` dict (`hook_name`, `hook_name_out`, `model_name`,
`hook_head_index`, `prepend_bos`, ...). Configs written before SAELens 6 keep everything
flat (and call the hook `hook_point`); `from_dict` reads both, as SAELens's
`handle_pre_6_0_config` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lookingglass.errors import ConfigError

ARCHITECTURES = (
    "standard",
    "gated",
    "jumprelu",
    "topk",
    "transcoder",
    "skip_transcoder",
    "jumprelu_transcoder",
)
NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")
_TRANSCODERS = ("transcoder", "skip_transcoder", "jumprelu_transcoder")
# Keys SAELens keeps under "metadata" (its LLM_METADATA_KEYS); anything else there is kept.
_METADATA_KEYS = (
    "model_name",
    "hook_name",
    "hook_head_index",
    "hook_name_out",
    "hook_head_index_out",
    "model_class_name",
    "model_from_pretrained_kwargs",
    "prepend_bos",
    "exclude_special_tokens",
    "neuronpedia_id",
    "context_size",
    "seqpos_slice",
    "dataset_path",
    "sae_lens_version",
    "sae_lens_training_version",
    "hf_hook_name",
    "hf_hook_name_out",
)


@dataclass
class SAEConfig:
    """An SAE's shape, architecture and the hook point(s) it reads and writes.

    `hook_name` is where the SAE reads its input; `hook_name_out` (transcoders only) is
    where its output goes, `None` meaning the same hook. `metadata` keeps every other
    SAELens metadata key (model name, context size, ...) so a folder round-trips.
    """

    d_in: int
    d_sae: int
    architecture: str = "standard"
    hook_name: str | None = None
    hook_name_out: str | None = None
    hook_head_index: int | None = None
    d_out: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    reshape_activations: str = "none"
    k: int | None = None
    rescale_acts_by_decoder_norm: bool = False
    model_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"SAE architecture {self.architecture!r} is not supported; use one of "
                f"{', '.join(ARCHITECTURES)}."
            )
        if self.normalize_activations not in NORMALIZATIONS:
            raise ConfigError(
                f"normalize_activations={self.normalize_activations!r} is not supported; use "
                f"one of {', '.join(NORMALIZATIONS)}."
            )
        if self.reshape_activations != "none":
            raise ConfigError(
                f"reshape_activations={self.reshape_activations!r} (hook_z SAEs) is not "
                "supported yet; only 'none'."
            )
        if self.architecture == "topk" and (self.k is None or self.k < 1):
            raise ConfigError(f"A top-k SAE needs k >= 1 (got k={self.k}).")
        if self.is_transcoder:
            if self.apply_b_dec_to_input:
                raise ConfigError(
                    "apply_b_dec_to_input must be False for transcoders (b_dec has the "
                    "output's size d_out), as in SAELens."
                )
            if self.d_out is None:
                self.d_out = self.d_in
        elif self.d_out not in (None, self.d_in):
            raise ConfigError(
                f"d_out={self.d_out} differs from d_in={self.d_in}; only transcoders map "
                "to another size (architecture='transcoder')."
            )

    @property
    def is_transcoder(self) -> bool:
        """True for architectures whose decoder writes to `hook_name_out` (size `d_out`)."""
        return self.architecture in _TRANSCODERS

    @property
    def out_dim(self) -> int:
        """The decoder's output size: `d_out` for transcoders, `d_in` otherwise."""
        return self.d_out if self.d_out is not None else self.d_in

    def to_dict(self) -> dict[str, Any]:
        """The SAELens 6 `cfg.json` dict (architecture fields on top, hooks in metadata)."""
        out: dict[str, Any] = {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "dtype": self.dtype,
            "device": self.device,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "normalize_activations": self.normalize_activations,
            "reshape_activations": self.reshape_activations,
            "architecture": self.architecture,
        }
        if self.architecture == "topk":
            out["k"] = self.k
            out["rescale_acts_by_decoder_norm"] = self.rescale_acts_by_decoder_norm
        if self.is_transcoder:
            out["d_out"] = self.d_out
        meta = dict(self.metadata)
        meta.setdefault("sae_lens_version", "6.0.0")
        meta.setdefault("sae_lens_training_version", meta["sae_lens_version"])
        for key in ("model_name", "hook_name", "hook_name_out", "hook_head_index"):
            meta[key] = getattr(self, key)
        out["metadata"] = meta
        return out

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> SAEConfig:
        """Read a `cfg.json` dict written by SAELens 6, an older SAELens, or `to_dict`."""
        flat = {("hook_name" if k == "hook_point" else k): v for k, v in cfg.items()}
        meta = dict(flat.pop("metadata", None) or {})
        for key in _METADATA_KEYS:
            if key in flat and key not in meta:
                meta[key] = flat[key]
        if "metadata" not in cfg:  # before SAELens 6 (its handle_pre_6_0_config)
            if flat.get("activation_fn") == "topk" or flat.get("activation_fn_str") == "topk":
                flat["architecture"] = "topk"
                flat["k"] = (flat.get("activation_fn_kwargs") or {}).get("k", flat.get("k"))
            norm = flat.get("normalize_activations")
            if isinstance(norm, bool) or norm is None:
                flat["normalize_activations"] = "expected_average_only_in" if norm else "none"
        missing = [k for k in ("d_in", "d_sae") if k not in flat]
        if missing:
            raise ConfigError(f"SAE config lacks {', '.join(missing)}; keys: {sorted(cfg)}.")
        names = {f.name for f in fields(cls)} - {"metadata"}
        kwargs = {k: v for k, v in flat.items() if k in names}
        for key in ("model_name", "hook_name", "hook_name_out", "hook_head_index"):
            kwargs[key] = meta.pop(key, kwargs.get(key))
        return cls(**kwargs, metadata=meta)
