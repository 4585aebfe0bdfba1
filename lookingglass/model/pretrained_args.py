"""TransformerLens's `from_pretrained` keyword arguments, translated for our loader.

`HookedTransformer.from_pretrained` accepts every argument of TransformerLens 3.9's:
the weight-processing flags, `checkpoint_index`/`checkpoint_value`, `device`, `dtype`,
`default_prepend_bos` pass straight to `lookingglass.loading.pretrained.from_pretrained`;
the rest are handled here with the same meaning:

- `default_padding_side`: the tokenizer's padding side.
- `move_to_device=False`: keep the model on the CPU.
- `n_devices`: split the blocks over that many CUDA devices from `device` on (loaded on
  the CPU first); `device_map` (Hugging Face's name, not a TransformerLens 3.9
  `HookedTransformer` argument): "auto", "balanced" or a dict of parts to devices.
  Both are `lookingglass.model.placement`.
- `hf_model`: load the weights of this Hugging Face model instead of the checkpoint's.
- `first_n_layers`: keep only the first n blocks (after the same processing, which is
  per layer, so the numbers equal loading a truncated checkpoint).
- Hugging Face's own `from_pretrained` arguments: `torch_dtype` means `dtype`;
  `revision` is the loader's; `trust_remote_code`, `token`, `cache_dir` and
  `local_files_only` do not apply to our loader and are ignored with a warning.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lookingglass.errors import ConfigError
from lookingglass.model import placement

_IGNORED_HF_ARGS = ("trust_remote_code", "token", "cache_dir", "local_files_only")


def load_with_tl_arguments(model_name: str | Path, **kwargs: Any):
    """`from_pretrained(model_name, **kwargs)` with TransformerLens's arguments."""
    from lookingglass.loading.pretrained import from_pretrained

    padding_side = kwargs.pop("default_padding_side", None)
    if not kwargs.pop("move_to_device", True) and kwargs.get("device") is None:
        kwargs["device"] = "cpu"
    n_devices = kwargs.pop("n_devices", None) or 1
    device_map = kwargs.pop("device_map", None)
    placed = n_devices != 1 or device_map is not None
    if placed:
        if device_map is not None and kwargs.get("device") is not None:
            raise ConfigError("device and device_map are mutually exclusive: pass one.")
        if device_map is not None and n_devices != 1:
            raise ConfigError("n_devices and device_map are mutually exclusive: pass one.")
        base = kwargs.pop("device", None) or "cuda"
        if n_devices != 1:
            placement.check_n_devices(torch.device(base), n_devices)  # before loading
        kwargs["device"] = "cpu"  # load once on the CPU, then spread over the devices
    if "torch_dtype" in kwargs:
        kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
    ignored = [name for name in _IGNORED_HF_ARGS if kwargs.pop(name, None) is not None]
    if ignored:
        warnings.warn(f"from_pretrained ignores {ignored}: they do not apply here.", stacklevel=3)
    first_n_layers = kwargs.pop("first_n_layers", None)
    hf_model = kwargs.pop("hf_model", None)
    if hf_model is None:
        model = from_pretrained(model_name, **kwargs)
    else:
        with tempfile.TemporaryDirectory() as folder:
            hf_model.save_pretrained(folder)
            kwargs.setdefault("tokenizer", _tokenizer_of(model_name))
            kwargs.setdefault("model_name", str(model_name).split("/")[-1])
            kwargs.setdefault("tokenizer_name", str(model_name))
            model = from_pretrained(folder, **kwargs)
    if first_n_layers is not None:
        _keep_first_layers(model, first_n_layers)
    if placed:
        if device_map is not None:
            model.place_on_devices(device_map=device_map)
        else:
            model.cfg = model.cfg.replace(device=str(base))
            model.place_on_devices(n_devices=n_devices)
    if padding_side is not None and model.tokenizer is not None:
        model.tokenizer.padding_side = padding_side
    return model


def _tokenizer_of(model_name: str | Path) -> Any:
    """The tokenizer of `model_name` if it is available offline, else None."""
    from lookingglass.model.tokenization import load_tokenizer

    try:
        return load_tokenizer(str(model_name))
    except Exception:
        return None


def _keep_first_layers(model: Any, n: int) -> None:
    if not 1 <= n <= model.cfg.n_layers:
        raise ConfigError(f"first_n_layers must be in [1, {model.cfg.n_layers}], got {n}.")
    model.blocks = nn.ModuleList(list(model.blocks)[:n])
    model.cfg = model.cfg.replace(n_layers=n)
    model.setup()
