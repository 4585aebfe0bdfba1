"""TransformerLens's `evals`: quick checks of a model (`sanity_check`, `induction_loss`,
the indirect-object-identification eval `IOIDataset` / `ioi_eval`) and loss on a dataset
(`evaluate_on_dataset`), with TransformerLens's definitions.

The `make_*_data_loader` functions and `evaluate` read Hugging Face hub datasets
(wikitext, OpenWebText, the Pile, code, MMLU). lookingglass downloads nothing by
itself: they load the dataset if `datasets` can (network or local cache), and otherwise
raise an `InputError` saying how to pass local text instead
(`make_data_loader_from_texts`, then `evaluate_on_dataset`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from lookingglass import utils
from lookingglass.errors import InputError
from lookingglass.evals_mmlu import (
    MMLU_ANSWER_LETTERS,
    MMLU_SUBJECTS,
    make_mmlu_data_loader,
    mmlu_eval,
)

SANITY_CHECK_TEXT = (
    "Many important transition points in the history of science have been moments when "
    "science 'zoomed in.' At these points, we develop a visualization or tool that allows us "
    "to see the world in a new level of detail, and a new field of science develops to study "
    "the world through this lens."
)


def sanity_check(model: Any) -> torch.Tensor:
    """The model's mean next-token loss on the first paragraph of "Circuits: Zoom In"
    (below 5: probably fine; above 7: something is wrong)."""
    return model(SANITY_CHECK_TEXT, return_type="loss")


def make_data_loader_from_texts(
    texts: list[str], tokenizer: Any, batch_size: int = 8, max_length: int = 1024
) -> DataLoader:
    """The data loader the `make_*_data_loader` functions build, from local texts:
    `utils.tokenize_and_concatenate` on them, shuffled batches, the last partial dropped."""
    import datasets

    dataset = utils.tokenize_and_concatenate(
        datasets.Dataset.from_dict({"text": list(texts)}),
        tokenizer,
        max_length=max_length,
        num_proc=None,
    )
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)


def _hub_data_loader(tokenizer: Any, batch_size: int, *load_args: Any, **load_kwargs: Any):
    import datasets

    try:
        data = datasets.load_dataset(*load_args, split="train", **load_kwargs)
    except (OSError, ConnectionError, ValueError) as error:
        raise InputError(
            f"The Hugging Face dataset {load_args[0]!r} could not be loaded ({error}). "
            "lookingglass downloads nothing itself: without network access, build a loader "
            "from local text with lookingglass.evals.make_data_loader_from_texts(texts, "
            "tokenizer) and pass it to evaluate_on_dataset."
        ) from error
    dataset = utils.tokenize_and_concatenate(data, tokenizer)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)


def make_wiki_data_loader(tokenizer: Any, batch_size: int = 8) -> DataLoader:
    """Wikitext-2 (train split), tokenized and packed (needs the hub dataset)."""
    return _hub_data_loader(tokenizer, batch_size, "wikitext", "wikitext-2-v1")


def make_owt_data_loader(tokenizer: Any, batch_size: int = 8) -> DataLoader:
    """10k OpenWebText documents, tokenized and packed (needs the hub dataset)."""
    return _hub_data_loader(tokenizer, batch_size, "stas/openwebtext-10k")


def make_pile_data_loader(tokenizer: Any, batch_size: int = 8) -> DataLoader:
    """10k Pile documents, tokenized and packed (needs the hub dataset)."""
    return _hub_data_loader(tokenizer, batch_size, "NeelNanda/pile-10k")


def make_code_data_loader(tokenizer: Any, batch_size: int = 8) -> DataLoader:
    """10k Python files (CodeParrot), tokenized and packed (needs the hub dataset)."""
    return _hub_data_loader(tokenizer, batch_size, "NeelNanda/code-10k")


DATASET_NAMES = ["wiki", "owt", "pile", "code"]
DATASET_LOADERS = [
    make_wiki_data_loader,
    make_owt_data_loader,
    make_pile_data_loader,
    make_code_data_loader,
]


def _model_device(model: Any, device: Any) -> Any:
    # TransformerLens defaults to "cuda"; we default to where the model is.
    return device if device is not None else next(model.parameters()).device


@torch.inference_mode()
def evaluate_on_dataset(model: Any, data_loader: Any, truncate: int = 100, device: Any = None):
    """The mean over batches of the model's loss on `batch["tokens"]`, stopping after
    `truncate + 1` batches (TransformerLens's count). `device`: the model's by default."""
    device = _model_device(model, device)
    utils.warn_if_mps(device)
    running_loss, total = 0.0, 0
    for batch in data_loader:
        running_loss += model(batch["tokens"].to(device), return_type="loss").mean().item()
        total += 1
        if total > truncate:
            break
    return running_loss / total


@torch.inference_mode()
def induction_loss(
    model: Any,
    tokenizer: Any = None,
    batch_size: int = 4,
    subseq_len: int = 384,
    prepend_bos: bool | None = None,
    device: Any = None,
) -> torch.Tensor:
    """Mean loss on the second half of random token sequences repeated twice (a model
    with induction heads gets it low). Tokens are drawn with `torch.randint(100, 20000)`
    from the global generator; with BOS (`prepend_bos`, default the model's), the first
    token is replaced by BOS. The loss covers positions `subseq_len + 1` onwards of the
    per-token loss."""
    device = _model_device(model, device)
    utils.warn_if_mps(device)
    first_half = torch.randint(100, 20000, (batch_size, subseq_len)).to(device)
    repeated = first_half.repeat(1, 2)
    prepend_bos = utils.override_or_use_default_value(
        model.cfg.default_prepend_bos, override=prepend_bos
    )
    if prepend_bos:
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        repeated[:, 0] = tokenizer.bos_token_id
    logits = model(repeated, return_type="logits")
    per_token = utils.lm_cross_entropy_loss(logits, repeated, per_token=True)
    return per_token[:, subseq_len + 1 :].mean()


@torch.inference_mode()
def evaluate(model: Any, truncate: int = 100, batch_size: int = 8, tokenizer: Any = None):
    """Loss on each of wiki, owt, pile and code (needs the hub datasets), as
    `{"wiki_loss": ..., ...}`, printing each."""
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    losses = {}
    for name, make_loader in zip(DATASET_NAMES, DATASET_LOADERS, strict=True):
        loader = make_loader(tokenizer=tokenizer, batch_size=batch_size)
        losses[f"{name}_loss"] = evaluate_on_dataset(model, loader, truncate=truncate)
        print(f"{name}: {losses[f'{name}_loss']}")
    return losses


from lookingglass.evals_ioi import IOIDataset, ioi_eval  # noqa: E402  (re-exported)

__all__ = [
    "DATASET_LOADERS",
    "DATASET_NAMES",
    "IOIDataset",
    "MMLU_ANSWER_LETTERS",
    "MMLU_SUBJECTS",
    "evaluate",
    "evaluate_on_dataset",
    "induction_loss",
    "ioi_eval",
    "make_code_data_loader",
    "make_data_loader_from_texts",
    "make_mmlu_data_loader",
    "make_owt_data_loader",
    "make_pile_data_loader",
    "make_wiki_data_loader",
    "mmlu_eval",
    "sanity_check",
]
