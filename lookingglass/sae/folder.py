"""The SAELens folder format: `cfg.json`, `sae_weights.safetensors` and the optional
`sparsity.safetensors` (one tensor, `sparsity`: log10 feature firing frequencies).

Weight names are SAELens's: `W_enc` [d_in, d_sae], `W_dec` [d_sae, d_out], `b_enc`,
`b_dec`, and per architecture `threshold` (JumpReLU), `b_gate`/`b_mag`/`r_mag` (gated),
`W_skip` [d_out, d_in] (skip transcoders). Files are written to a temporary name and
renamed, so a crash never leaves a half-written folder that loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from lookingglass.errors import CheckpointError
from lookingglass.sae.config import SAEConfig
from lookingglass.sae.sae import SAE

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SPARSITY_FILENAME = "sparsity.safetensors"


def _replace(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)


def save_sae(
    sae: SAE, path: str | os.PathLike, sparsity: Tensor | None = None
) -> tuple[Path, Path]:
    """Write `sae` as a SAELens folder; returns (weights path, cfg path)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous() for k, v in sae.state_dict().items()}
    w_path, c_path = folder / WEIGHTS_FILENAME, folder / CFG_FILENAME
    save_file(weights, str(w_path) + ".tmp")
    _replace(Path(str(w_path) + ".tmp"), w_path)
    Path(str(c_path) + ".tmp").write_text(json.dumps(sae.cfg.to_dict(), indent=2))
    _replace(Path(str(c_path) + ".tmp"), c_path)
    if sparsity is not None:
        s_path = folder / SPARSITY_FILENAME
        save_file({"sparsity": sparsity.detach().contiguous()}, str(s_path) + ".tmp")
        _replace(Path(str(s_path) + ".tmp"), s_path)
    return w_path, c_path


def load_sae(path: str | os.PathLike, device: str = "cpu", dtype: str | None = None) -> SAE:
    """Load a SAELens folder (SAELens 6 or older `cfg.json`) into an `SAE`."""
    folder = Path(path)
    c_path, w_path = folder / CFG_FILENAME, folder / WEIGHTS_FILENAME
    for p in (c_path, w_path):
        if not p.is_file():
            raise CheckpointError(
                f"{p} is missing: an SAELens folder holds {CFG_FILENAME} and "
                f"{WEIGHTS_FILENAME} (and optionally {SPARSITY_FILENAME})."
            )
    cfg_dict = json.loads(c_path.read_text())
    cfg_dict["device"] = device
    if dtype is not None:
        cfg_dict["dtype"] = dtype
    cfg = SAEConfig.from_dict(cfg_dict)
    state = load_file(str(w_path), device=device)
    meta_cfg = SAEConfig.from_dict({**cfg.to_dict(), "device": "meta"})
    sae = SAE(meta_cfg)
    expected = set(sae.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{w_path} does not fit a {cfg.architecture!r} SAE: missing "
            f"{sorted(missing)}, unexpected {sorted(unexpected)}. Check 'architecture' "
            f"in {c_path}."
        )
    for name, tensor in state.items():
        want = tuple(sae.state_dict()[name].shape)
        if tuple(tensor.shape) != want:
            raise CheckpointError(
                f"{w_path}: {name} has shape {tuple(tensor.shape)}, but d_in/d_sae in "
                f"{c_path} give {want}."
            )
    sae.load_state_dict({k: v.to(getattr(torch, cfg.dtype)) for k, v in state.items()}, assign=True)
    sae.cfg = cfg
    return sae


def load_sparsity(path: str | os.PathLike) -> Tensor | None:
    """The `sparsity` tensor of an SAELens folder, or None if it has no sparsity file."""
    s_path = Path(path) / SPARSITY_FILENAME
    return load_file(str(s_path))["sparsity"] if s_path.is_file() else None
