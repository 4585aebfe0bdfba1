"""Load Hugging Face BERT checkpoints into a `HookedEncoder`.

    name or folder --resolve--> folder --load_checkpoint--> (config.json dict, tensors)
        --converters.bert--> (ModelConfig, state dict in our layout)
        --assign--> model built on "meta"

The same path as `HookedTransformer.from_pretrained` (`loading.pretrained`): local
folders, TransformerLens's BERT names (`"bert-base-cased"`, ... -> `google-bert/...` on
the Hub, downloaded once) and Hub ids; or a model already in memory (`hf_model=`). As in
TransformerLens, no weight processing is applied (post-LN norms cannot be folded).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import Tensor

from lookingglass import utils
from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError, InputError, UnsupportedArchitectureError
from lookingglass.loading import checks, pretrained
from lookingglass.loading.converters import architectures_of, bert
from lookingglass.loading.converters._common import check_state_dict
from lookingglass.model.encoder import HookedEncoder, init_parameters

# TransformerLens 3.9's BERT names -> Hub ids.
BERT_MODELS = {
    "bert-base-cased": "google-bert/bert-base-cased",
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "bert-large-cased": "google-bert/bert-large-cased",
    "bert-large-uncased": "google-bert/bert-large-uncased",
}


def from_pretrained_encoder(
    model_name: str | Path,
    checkpoint_index: int | None = None,
    checkpoint_value: int | None = None,
    hf_model: Any = None,
    device: str | torch.device | None = None,
    tokenizer: Any = None,
    move_to_device: bool = True,
    dtype: torch.dtype | str = torch.float32,
    revision: str | None = None,
    **cfg_overrides: Any,
) -> HookedEncoder:
    """A `HookedEncoder` with a Hugging Face BERT's weights (TransformerLens's signature).

    Args:
        model_name: a local folder, a BERT name (`BERT_MODELS`) or a Hub id; with
            `hf_model`, only the model's name.
        hf_model: a loaded `BertForMaskedLM` / `BertForPreTraining` / `BertModel` to
            take the config and weights from instead of reading `model_name`.
        device: defaults to the best available; `move_to_device=False` keeps the CPU.
        tokenizer: overrides the folder's tokenizer.
        dtype: parameter dtype (`torch_dtype=` is accepted too, as in TransformerLens).
        revision: Hub revision when downloading.
        cfg_overrides: other `ModelConfig` fields (e.g. `use_attn_result=True`).

    Raises:
        InputError: an unknown name, or a training checkpoint asked of a model without.
        UnsupportedArchitectureError: the checkpoint is not one of `bert.ARCHITECTURES`.
        CheckpointError: unreadable checkpoint, or weights that do not match the config.
        ConfigError: an unknown override, or a BERT variant the converter refuses.
    """
    if "torch_dtype" in cfg_overrides:  # TransformerLens's (and older transformers') name
        dtype = cfg_overrides.pop("torch_dtype")
    if checkpoint_index is not None or checkpoint_value is not None:
        raise InputError("BERT models have no training checkpoints; leave checkpoint_* unset.")
    unknown = sorted(set(cfg_overrides) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise ConfigError(f"from_pretrained got unknown argument(s) {unknown}.")
    name = str(model_name).rstrip("/")
    folder = None
    if hf_model is not None:
        hf_config = {**hf_model.config.to_dict(), "architectures": [type(hf_model).__name__]}
        # Copies: the encoder's parameters must not share memory with `hf_model`'s.
        checkpoint = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    else:
        name = BERT_MODELS.get(name.lower(), name)
        folder = pretrained.resolve(name, revision)
        # Config against the weights' headers first: a mismatch fails before any read.
        hf_config, checkpoint = pretrained.load_checkpoint_shapes(folder)
    _check_architecture(hf_config, name)
    naming = {"model_name": name.split("/")[-1], "tokenizer_name": name}
    cfg = bert.config_from_hf(hf_config, **{**naming, **cfg_overrides, "dtype": dtype})
    checks.check_layer_count(cfg.n_layers, checkpoint, name)
    sd = bert.state_dict_from_hf(checkpoint, cfg, hf_config)
    if folder is not None:
        hf_config, checkpoint = pretrained.load_checkpoint(folder)
        sd = bert.state_dict_from_hf(checkpoint, cfg, hf_config)
    target = str(device if device is not None else utils.get_device())
    target = target if move_to_device else "cpu"
    cfg = cfg.replace(device=target)
    sd = {key: _untied(key, tensor, sd).to(target, cfg.dtype) for key, tensor in sd.items()}
    if tokenizer is None and folder is not None:
        tokenizer = _load_tokenizer(folder)
    return _assign(cfg, sd, tokenizer, name)


def _check_architecture(hf_config: dict[str, Any], name: str) -> None:
    architectures = architectures_of(hf_config, ", ".join(bert.ARCHITECTURES))
    if hf_config.get("model_type") == bert.MODEL_TYPE and (
        not architectures or set(architectures) & set(bert.ARCHITECTURES)
    ):
        return
    raise UnsupportedArchitectureError(
        f"{name} is a {architectures or hf_config.get('model_type')} checkpoint; "
        f"HookedEncoder loads BERT checkpoints of the classes {', '.join(bert.ARCHITECTURES)}. "
        "Decoder-only models load with HookedTransformer.from_pretrained."
    )


def _untied(key: str, tensor: Tensor, sd: dict[str, Tensor]) -> Tensor:
    # Tied checkpoints give W_U as a view of W_E; separate parameters (as in
    # TransformerLens) keep an edit of one from changing the other.
    if key == "unembed.W_U":
        W_E = sd["embed.embed.W_E"]
        if W_E.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr():
            return tensor.clone()
    return tensor


def _assign(cfg: ModelConfig, sd: dict[str, Tensor], tokenizer: Any, source: str) -> HookedEncoder:
    """Build the encoder without allocating weights, make `sd`'s tensors its parameters,
    and give the heads the checkpoint lacks initialized weights (they refuse to run)."""
    with torch.device("meta"):
        model = HookedEncoder(cfg, tokenizer=tokenizer, move_to_device=False)
    missing = bert.missing_heads(sd)
    expected = {
        key: tuple(tensor.shape)
        for key, tensor in model.state_dict().items()
        if key.split(".")[0] not in missing
    }
    check_state_dict(sd, expected, f"converted from {source}")
    model.load_state_dict(sd, strict=False, assign=True)
    for head in missing:
        module = getattr(model, head).to_empty(device=cfg.device)
        init_parameters(module, cfg.init_range)
    model.heads_without_weights = frozenset(missing)
    return model


def _load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer (BERT's may be only a WordPiece `vocab.txt`), or None."""
    tokenizer = pretrained._load_tokenizer(folder)
    if tokenizer is None and (folder / "vocab.txt").is_file():
        tokenizer = transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    return tokenizer
