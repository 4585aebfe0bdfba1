"""Loading and saving models: checkpoints in, weight processing, export out.

* `registry`: known names and aliases, models shipped in the package, and registered
  GGUF models from other packages (`smollm2-135m`).
* `pretrained`: `from_pretrained` (local folder, alias, GGUF file or Hub id), `save_pretrained`.
* `reading` (+ `checks`): a checkpoint folder's config and weights (or their shapes alone),
  never a file outside the folder; a config checked against its weights before loading.
* `gguf` (+ `gguf_tokenizer`): GGUF files (llama.cpp's format), converted once into a
  cached Hugging Face Llama folder.
* `converters/`: one file per Hugging Face family, mapping configs and weight names.
* `processing`: TransformerLens's weight processing as pure functions.
* `hf_export`: `to_hf` / `save_hf`, back to a Hugging Face model.
"""

import importlib
from typing import Any

# Imported on first use: the converters pull in `transformers`, which takes seconds, and
# `import lookingglass` should not pay for that before a checkpoint is loaded.
_EXPORTS = {
    "from_pretrained": "pretrained",
    "list_models": "registry",
    "load_checkpoint": "reading",
    "process_weights": "processing",
    "resolve": "pretrained",
    "save_hf": "hf_export",
    "save_pretrained": "pretrained",
    "to_hf": "hf_export",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"lookingglass.loading.{_EXPORTS[name]}"), name)
    # `transformer_lens.loading` is TransformerLens's `loading_from_pretrained`: its names
    # (get_pretrained_model_config, OFFICIAL_MODEL_NAMES, ...) are found here too.
    compat = importlib.import_module("lookingglass.loading_from_pretrained")
    if not name.startswith("_") and hasattr(compat, name):
        return getattr(compat, name)
    raise AttributeError(f"module 'lookingglass.loading' has no attribute {name!r}")
