"""SAEs shipped inside the package (`lookingglass/pretrained_saes/<name>/`, SAELens
folders), and where they are: `shipped_saes()` -> {name: folder}; load one with
`load_pretrained_sae(name)`. See docs/sae.md for how each was trained and its metrics."""

from __future__ import annotations

from pathlib import Path

from lookingglass.errors import InputError
from lookingglass.sae.sae import SAE

ROOT = Path(__file__).resolve().parent.parent / "pretrained_saes"


def shipped_saes() -> dict[str, Path]:
    """{name: folder} of the SAEs shipped with lookingglass."""
    if not ROOT.is_dir():
        return {}
    return {p.parent.name: p.parent for p in sorted(ROOT.glob("*/cfg.json"))}


def load_pretrained_sae(name: str, device: str = "cpu") -> SAE:
    """Load a shipped SAE by name (see `shipped_saes()`)."""
    saes = shipped_saes()
    if name not in saes:
        raise InputError(f"no shipped SAE named {name!r}; shipped: {sorted(saes)}")
    return SAE.load_from_disk(saes[name], device=device)
