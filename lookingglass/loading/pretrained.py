"""Load checkpoints into a `HookedTransformer`, and save models in lookingglass's own format.

Data flow of `from_pretrained`:

    name or folder --resolve--> folder --load_checkpoint_shapes--> (config dict, shapes)
        --converter, on shapes only--> config checked against the weights (nothing read)
        --load_checkpoint--> (config.json dict, tensors)
        --converter--> (ModelConfig, state dict in our layout, views of the tensors)
        --process_weights--> processed state dict --assign--> model built on "meta"

The model is built on the meta device and takes the loaded tensors as its parameters
(`load_state_dict(assign=True)`). Safetensors files are memory-mapped copy-on-write and
processing writes into the mapped tensors, so loading needs one copy of the weights
(plus the untied unembedding of a tied checkpoint), as Hugging Face's own loader.
Reading the folder (and refusing files outside it) is `loading.reading`.

Native format (`save_pretrained`): `config.json` holding `{"lookingglass_config":
ModelConfig.to_dict()}`, `model.safetensors` with our key names, and the tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors.torch
import torch
import transformers
from torch import Tensor

from lookingglass import utils
from lookingglass.config import ModelConfig
from lookingglass.errors import CheckpointError, ConfigError, InputError
from lookingglass.loading import checks, gguf, gguf_models, registry
from lookingglass.loading.converters import converter_for
from lookingglass.loading.converters._common import check_state_dict
from lookingglass.loading.processing import LAYER_NORMS, process_weights, step_applies
from lookingglass.loading.reading import (
    CONFIG,
    SAFETENSORS,
    SAFETENSORS_INDEX,
    TORCH_BIN,
    TORCH_BIN_INDEX,
    load_checkpoint,
    load_checkpoint_shapes,
)

if TYPE_CHECKING:
    from lookingglass.model.transformer import HookedTransformer

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
NATIVE_KEY = "lookingglass_config"
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


# -------------------------------------------------------------------------- resolving
def resolve(name_or_path: str | Path, revision: str | None = None) -> Path:
    """The local folder for a model: the folder itself, a model shipped in the package,
    a GGUF file (a `.gguf` path, a folder holding one, or a registered GGUF model such as
    "smollm2-135m"; converted once into a cached folder, see `loading.gguf`), or a
    Hugging Face Hub snapshot (known alias or `org/name` id, downloaded once).

    Raises:
        InputError: neither a folder, nor a known name, nor a Hub id.
        CheckpointError: the download failed, or a registered GGUF model's package is
            not installed (with the command that installs it).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        gguf_file = gguf.gguf_file_in(path)
        return gguf.converted_folder(gguf_file) if gguf_file is not None else path
    if path.suffix == gguf.SUFFIX:  # a missing file is named as such
        return gguf.converted_folder(path)
    name = str(name_or_path)
    packaged = registry.packaged_models().get(name)
    if packaged is not None:
        return packaged
    gguf_model = gguf_models.gguf_model(name)
    if gguf_model is not None:
        return gguf.converted_folder(gguf_models.gguf_path(gguf_model))
    repo_id = registry.hub_id(name) or (name if _HUB_ID.fullmatch(name) else None)
    if repo_id is None:
        raise InputError(registry.unknown_name_message(name))
    return _download(repo_id, revision)


def _download(repo_id: str, revision: str | None) -> Path:
    # Only needed when downloading.
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.errors import LocalEntryNotFoundError

    common = [CONFIG, *TOKENIZER_FILES]
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=[*common, SAFETENSORS, SAFETENSORS_INDEX, "model-*.safetensors"],
            )
        )
        if not any(folder.glob("*.safetensors")):  # older repositories only have .bin
            folder = Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    allow_patterns=[*common, TORCH_BIN, TORCH_BIN_INDEX, "pytorch_model-*.bin"],
                )
            )
    except LocalEntryNotFoundError as error:  # offline, or the Hub could not be reached
        raise CheckpointError(
            f"{repo_id!r} is not in the local Hugging Face cache ({HF_HUB_CACHE}) and the "
            "Hub could not be reached (offline, or HF_HUB_OFFLINE=1). Download it once where "
            "there is a network (`hf download " + repo_id + "`), or pass the path of a local "
            "folder holding its config.json and weights: from_pretrained('/path/to/folder')."
        ) from error
    except Exception as error:
        raise CheckpointError(
            f"{repo_id!r} is not a local folder and could not be downloaded from the Hugging "
            f"Face Hub ({error}). To work offline, pass the path of a downloaded checkpoint."
        ) from error
    return folder


# -------------------------------------------------------------------------- loading
def from_pretrained(
    name_or_path: str | Path,
    *,
    fold_ln: bool | None = None,
    center_writing_weights: bool | None = None,
    center_unembed: bool | None = None,
    fold_value_biases: bool = True,
    refactor_factored_attn_matrices: bool = False,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = None,
    tokenizer: Any = None,
    default_prepend_bos: bool | None = None,
    revision: str | None = None,
    checkpoint_index: int | None = None,
    checkpoint_value: int | None = None,
    **cfg_overrides: Any,
) -> HookedTransformer:
    """Load a model from a local folder, a shipped model, a registry alias, a GGUF file
    or a Hub id.

    Args:
        name_or_path: folder (Hugging Face or native format), alias (`"gpt2"`), GGUF
            file or registered GGUF model (`"smollm2-135m"`), or Hub id.
        fold_ln, center_writing_weights, center_unembed, fold_value_biases,
            refactor_factored_attn_matrices: weight processing, as in TransformerLens
            (see `lookingglass.loading.processing`). `fold_ln`,
            `center_writing_weights` and `center_unembed` default to "on where it
            applies" (every norm but none / LayerNorm only / logits not soft-capped);
            True where it cannot apply raises `ConfigError`.
        dtype: parameter dtype. Processing is computed in float32 first.
        device: defaults to the best available (CUDA, MPS, CPU).
        tokenizer: overrides the tokenizer found in the folder (None if there is none).
        default_prepend_bos: overrides the config's BOS default.
        revision: Hub revision (branch, tag or commit) when downloading.
        checkpoint_index, checkpoint_value: a training checkpoint of a model that has
            them (Pythia), by position in `registry.checkpoint_steps(name)` or by step;
            instead of `revision`.
        cfg_overrides: other `ModelConfig` fields, e.g. `n_ctx=256`.

    Raises:
        CheckpointError: unreadable checkpoint, or weights that do not match the config.
        UnsupportedArchitectureError: the config's architecture has no converter.
        ConfigError: an unknown override, or processing that cannot apply.
        InputError: an unknown name (with close matches), or a checkpoint the model
            does not have.
    """
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(cfg_overrides) - fields)
    if unknown:
        raise ConfigError(
            f"from_pretrained got unknown argument(s) {unknown}; not ModelConfig fields."
        )
    if checkpoint_index is not None or checkpoint_value is not None:
        if revision is not None:
            raise InputError("Pass revision or a checkpoint (index or value), not both.")
        revision = registry.checkpoint_revision(
            str(name_or_path), checkpoint_index, checkpoint_value
        )
    folder = resolve(name_or_path, revision)
    # Config against weights from the headers first: a mismatch fails before any
    # weight is read or anything is built.
    hf_config, shapes = load_checkpoint_shapes(folder)
    overrides = {**cfg_overrides, "dtype": dtype}
    if default_prepend_bos is None:  # a converted GGUF file: as its tokenizer says
        default_prepend_bos = gguf.default_prepend_bos(hf_config)
    if default_prepend_bos is not None:
        overrides["default_prepend_bos"] = default_prepend_bos
    device = str(device if device is not None else utils.get_device())
    name = _source_name(name_or_path)
    _to_our_layout(hf_config, shapes, overrides, name)
    del shapes
    hf_config, checkpoint = load_checkpoint(folder)
    cfg, sd = _to_our_layout(hf_config, checkpoint, overrides, name)
    del checkpoint  # the state dict now holds the only references (mostly views)

    norm = cfg.normalization_type
    # Defaults as TransformerLens: on where valid (off for shortformer models, ...).
    if fold_ln is None:
        fold_ln = norm is not None and step_applies(cfg, "fold_ln")
    if center_writing_weights is None:
        center_writing_weights = norm in LAYER_NORMS and step_applies(cfg, "center_writing_weights")
    if center_unembed is None:  # soft-capped logits (Gemma 2) are not shift-invariant
        center_unembed = step_applies(cfg, "center_unembed")
    # Process in at least float32; cast down to a reduced-precision dtype only afterwards.
    if cfg.dtype.itemsize >= 4:
        _cast(sd, cfg.dtype)
    _untie_embeddings(sd)
    # The tensors are ours (memory-mapped copy-on-write, or cast copies): process them
    # where they lie, so processing needs no second copy of the weights.
    sd, cfg = process_weights(
        sd,
        cfg,
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        in_place=True,
    )
    cfg = cfg.replace(device=device)
    _cast(sd, cfg.dtype, device)
    return _assign(cfg, sd, tokenizer if tokenizer is not None else _load_tokenizer(folder), folder)


def _to_our_layout(
    hf_config: dict[str, Any], checkpoint: dict[str, Tensor], overrides: dict[str, Any], name: str
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Config and state dict in our layout, from a native or a Hugging Face checkpoint."""
    if NATIVE_KEY in hf_config:
        cfg = ModelConfig.from_dict({**hf_config[NATIVE_KEY], **overrides})
        checks.check_layer_count(cfg.n_layers, checkpoint, name)
        check_state_dict(checkpoint, _expected_shapes(cfg), f"in {name}")
        return cfg, checkpoint
    converter = converter_for(hf_config)
    naming = {"model_name": name.split("/")[-1], "tokenizer_name": name}
    cfg = converter.config_from_hf(hf_config, **{**naming, **overrides})
    checks.check_layer_count(cfg.n_layers, checkpoint, name)
    return cfg, converter.state_dict_from_hf(checkpoint, cfg, hf_config)


def _source_name(name_or_path: str | Path) -> str:
    """The Hub id for an alias, else the name or path as given (without a trailing /)."""
    name = str(name_or_path).rstrip("/")
    return registry.hub_id(name) or name


def _cast(sd: dict[str, Tensor], dtype: torch.dtype, device: str | None = None) -> None:
    for key, tensor in sd.items():  # one tensor at a time; .to() is free when nothing changes
        if tensor.is_floating_point():
            sd[key] = tensor.to(device=device, dtype=dtype)


def _untie_embeddings(sd: dict[str, Tensor]) -> None:
    # A tied checkpoint gives W_U as a view of W_E. Separate parameters (as in
    # TransformerLens) keep an edit of one, e.g. an ablation, from changing the other.
    W_E, W_U = sd.get("embed.W_E"), sd.get("unembed.W_U")
    if W_E is not None and W_U is not None:
        if W_E.untyped_storage().data_ptr() == W_U.untyped_storage().data_ptr():
            sd["unembed.W_U"] = W_U.clone()


def _assign(
    cfg: ModelConfig, sd: dict[str, Tensor], tokenizer: Any, folder: Path
) -> HookedTransformer:
    """Build the model without allocating weights, then make `sd`'s tensors its parameters."""
    model = _meta_model(cfg, tokenizer)
    check_state_dict(sd, _expected_shapes(cfg, model), f"in {folder}")
    model.load_state_dict(sd, strict=True, assign=True)
    # Buffers derived from the config (rotary frequencies, ALiBi slopes) were computed on
    # the CPU; the parameters are already on cfg.device, so this moves only the buffers.
    return model.to(cfg.device)


def _meta_model(cfg: ModelConfig, tokenizer: Any = None) -> HookedTransformer:
    """The model for `cfg` with parameters on the meta device (no memory, no init)."""
    from lookingglass.model.transformer import HookedTransformer  # the model imports us lazily

    with torch.device("meta"):
        return HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)


def _expected_shapes(
    cfg: ModelConfig, model: HookedTransformer | None = None
) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the model for `cfg`, with its shape."""
    model = model if model is not None else _meta_model(cfg)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _load_tokenizer(folder: Path) -> Any:
    present = [name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not present:
        return None
    for name in present:
        checks.inside_folder(folder, name, "a link in the folder")
    try:
        return transformers.AutoTokenizer.from_pretrained(folder)
    except Exception as error:
        raise CheckpointError(
            f"The tokenizer files in {folder} could not be loaded ({error}). Pass "
            "tokenizer=... to from_pretrained to use another tokenizer."
        ) from error


# --------------------------------------------------------------------------- saving
def save_pretrained(model: HookedTransformer, folder: str | Path) -> Path:
    """Save `model` in lookingglass's native format (config, safetensors, tokenizer).

    The folder is written complete under a temporary name and then renamed into place,
    so a crash never leaves a half-written model; an existing model folder there is
    replaced as a whole. `from_pretrained(folder)` loads it back.
    """
    cfg = model.cfg.replace(device=None)  # where a model runs is not part of what it is
    config = {NATIVE_KEY: cfg.to_dict(), "format": "lookingglass"}
    tensors = _separate_storages(model.state_dict())
    with atomic_folder(folder) as tmp:
        safetensors.torch.save_file(tensors, tmp / SAFETENSORS, metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(tmp)
    return Path(folder)


def _separate_storages(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous tensors, no two sharing memory (safetensors refuses shared storage)."""
    out, seen = {}, set()
    for key, tensor in sd.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `folder`; on success it replaces `folder` by rename.

    On an error the temporary folder is removed and `folder` is untouched.

    Raises:
        InputError: `folder` is a file, or a non-empty folder without `config.json`
            (we replace only what looks like a model folder, never unrelated files).
    """
    target = Path(folder).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise InputError(f"Cannot save to {target}: it is a file.")
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG).is_file():
        raise InputError(
            f"Refusing to replace {target}: it is not empty and holds no {CONFIG}, so it does "
            "not look like a saved model. Choose an empty or new folder."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            )
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
