"""Loading and saving models: checkpoints in, weight processing, export out.

* `registry`: known names and aliases, and models shipped in the package.
* `pretrained`: `from_pretrained` (local folder, alias or Hub id), `save_pretrained`.
* `converters/`: one file per Hugging Face family, mapping configs and weight names.
* `processing`: TransformerLens's weight processing as pure functions.
* `hf_export`: `to_hf` / `save_hf`, back to a Hugging Face model.
"""

from lookingglass.loading.hf_export import save_hf, to_hf
from lookingglass.loading.pretrained import (
    from_pretrained,
    load_checkpoint,
    resolve,
    save_pretrained,
)
from lookingglass.loading.processing import process_weights
from lookingglass.loading.registry import list_models

__all__ = [
    "from_pretrained",
    "list_models",
    "load_checkpoint",
    "process_weights",
    "resolve",
    "save_hf",
    "save_pretrained",
    "to_hf",
]
