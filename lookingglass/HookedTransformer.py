"""TransformerLens's module path `transformer_lens.HookedTransformer`, re-exporting
`lookingglass.model.HookedTransformer`, plus its module-level `DTYPE_FROM_STRING`
(the dtype names `from_pretrained(dtype="...")` accepts in TransformerLens)."""

import torch

from lookingglass.model import HookedTransformer

DTYPE_FROM_STRING: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}

__all__ = ["DTYPE_FROM_STRING", "HookedTransformer"]
