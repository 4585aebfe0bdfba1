"""Hugging Face hub and datasets helpers with TransformerLens's names
(`transformer_lens.utilities.hf_utils`). lookingglass never downloads on its own: the
functions that would fetch from the hub say so and how to pass local data instead."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from lookingglass.errors import InputError, NotSupportedError

# TransformerLens's `get_dataset` names and the hub datasets they stand for.
DATASET_ALIASES = {
    "openwebtext": "stas/openwebtext-10k",
    "owt": "stas/openwebtext-10k",
    "pile": "NeelNanda/pile-10k",
    "c4": "NeelNanda/c4-10k",
    "code": "NeelNanda/code-10k",
    "python": "NeelNanda/code-10k",
    "c4_code": "NeelNanda/c4-code-20k",
    "c4-code": "NeelNanda/c4-code-20k",
    "wiki": "NeelNanda/wiki-10k",
}


def keep_single_column(dataset: Any, col_name: str) -> Any:
    """The Hugging Face dataset with every column but `col_name` removed."""
    for key in list(dataset.features):
        if key != col_name:
            dataset = dataset.remove_columns(key)
    return dataset


def get_dataset(dataset_name: str, **kwargs: Any) -> Any:
    """TransformerLens's 10k-document convenience datasets ("openwebtext"/"owt", "pile",
    "c4", "code"/"python", "c4_code"/"c4-code", "wiki"), train split, loaded with
    `datasets.load_dataset(hub_id, split="train", **kwargs)`.

    This reads the Hugging Face hub (or its local cache). Offline, pass a local copy
    instead: `datasets.load_dataset("json", data_files=...)` or
    `datasets.Dataset.from_dict({"text": texts})`, which every function taking a dataset
    accepts.
    """
    if dataset_name not in DATASET_ALIASES:
        raise InputError(
            f"Dataset {dataset_name} not supported; choose one of {sorted(DATASET_ALIASES)}."
        )
    import datasets

    hub_id = DATASET_ALIASES[dataset_name]
    try:
        return datasets.load_dataset(hub_id, split="train", **kwargs)
    except (OSError, ConnectionError, ValueError) as error:
        raise InputError(
            f"get_dataset({dataset_name!r}) needs the Hugging Face dataset {hub_id!r}, which "
            f"could not be loaded ({error}). Without network access, build a dataset from "
            "local text: datasets.Dataset.from_dict({'text': texts}) or "
            "datasets.load_dataset('json', data_files=...), and pass it on."
        ) from error


def download_file_from_hf(
    repo_name: str,
    file_name: str,
    subfolder: str = ".",
    cache_dir: str | None = None,
    force_is_torch: bool = False,
    **kwargs: Any,
) -> Any:
    """Not provided: lookingglass loads no pickled files from the hub (TransformerLens
    `torch.load`s them with `weights_only=False`, which runs arbitrary code)."""
    raise NotSupportedError(
        f"download_file_from_hf({repo_name!r}, {file_name!r}) is not provided: lookingglass "
        "does not download and unpickle hub files. Download the file yourself "
        "(huggingface_hub.hf_hub_download), then read it: json.load for .json, "
        "safetensors.torch.load_file for weights, or HookedTransformer.from_pretrained(folder) "
        "for a checkpoint folder."
    )


def clear_huggingface_cache() -> None:
    """Not provided: lookingglass does not delete caches it does not own."""
    raise NotSupportedError(
        "clear_huggingface_cache is not provided: lookingglass does not delete the shared "
        "Hugging Face cache. Use `huggingface-cli delete-cache` to choose what to remove."
    )


def select_compatible_kwargs(kwargs_dict: dict[str, Any], callable: Callable) -> dict[str, Any]:
    """The entries of `kwargs_dict` whose keys are named arguments of `callable`."""
    return {k: v for k, v in kwargs_dict.items() if k in inspect.getfullargspec(callable).args}


def get_rotary_pct_from_config(config: Any) -> float:
    """The fraction of each head's dimensions that rotary embeddings rotate, from a
    Hugging Face config (`rotary_pct`, or `rope_parameters["partial_rotary_factor"]`
    in transformers 5); 1.0 when neither is set or `config` is None."""
    if config is None:
        return 1.0
    if hasattr(config, "rotary_pct"):
        return getattr(config, "rotary_pct", 1.0)
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict) and "partial_rotary_factor" in rope:
        return rope["partial_rotary_factor"]
    return 1.0
