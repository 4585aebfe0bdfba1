"""TransformerLens's module `transformer_lens.loading_from_pretrained` (also
`transformer_lens.loading`), built on our registry (`lookingglass.loading.registry`)
and converters.

One difference of spelling, not of meaning: our official name of a model is its Hub id
today (`get_official_model_name("gpt2-small") == "openai-community/gpt2"`, where
TransformerLens says "gpt2"), and our lists hold only the models of families we load
natively (`lookingglass.list_models()`); every alias TransformerLens knows for those
resolves the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lookingglass.config import ModelConfig
from lookingglass.errors import CheckpointError, InputError, NotSupportedError
from lookingglass.loading import registry
from lookingglass.loading.registry import PYTHIA_CHECKPOINTS, PYTHIA_V0_CHECKPOINTS

OFFICIAL_MODEL_NAMES: list[str] = sorted(
    {repo_id for ids in registry.OFFICIAL_MODELS.values() for repo_id in ids}, key=str.lower
)


def make_model_alias_map() -> dict[str, str]:
    """Every known name and alias, lower case -> official name (the Hub id)."""
    return dict(registry.HUB_IDS)


def _aliases() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in OFFICIAL_MODEL_NAMES}
    for alias, repo_id in registry.HUB_IDS.items():
        if repo_id in out and alias != repo_id.lower():
            out[repo_id].append(alias)
    return {name: sorted(aliases) for name, aliases in out.items()}


MODEL_ALIASES: dict[str, list[str]] = _aliases()


def get_official_model_name(model_name: str) -> str:
    """The official name (Hub id) of a name or alias, ignoring case.

    Raises:
        InputError (a ValueError, as TransformerLens raises): unknown name, with close matches.
    """
    official = registry.hub_id(model_name)
    if official is None:
        raise InputError(registry.unknown_name_message(model_name))
    return official


def get_checkpoint_labels(model_name: str, **kwargs: Any) -> tuple[list[int], str]:
    """(training steps with a checkpoint, "step") for a model with training checkpoints
    (Pythia); an `InputError` for other models."""
    return list(registry.checkpoint_steps(model_name)), "step"


def _hf_config(model_name: str, revision: str | None) -> dict[str, Any]:
    path = Path(model_name).expanduser()
    if path.is_dir():
        return json.loads((path / "config.json").read_text())
    packaged = registry.packaged_models().get(model_name)
    if packaged is not None:
        return json.loads((packaged / "config.json").read_text())
    from huggingface_hub import hf_hub_download

    repo_id = get_official_model_name(model_name) if "/" not in model_name else model_name
    try:
        return json.loads(
            Path(hf_hub_download(repo_id, "config.json", revision=revision)).read_text()
        )
    except Exception as error:
        raise CheckpointError(
            f"The config of {repo_id!r} could not be read from the Hugging Face Hub ({error}). "
            "Offline, pass hf_cfg=<the config.json dict> or a local folder as model_name."
        ) from error


def convert_hf_model_config(model_name: str, **kwargs: Any) -> dict[str, Any]:
    """The `HookedTransformerConfig` fields of a model, as a dict, from its Hugging Face
    config (read from the folder, the package or the Hub); see `get_pretrained_model_config`."""
    return get_pretrained_model_config(model_name, **kwargs).to_dict()


def get_pretrained_model_config(
    model_name: str,
    hf_cfg: dict[str, Any] | None = None,
    checkpoint_index: int | None = None,
    checkpoint_value: int | None = None,
    fold_ln: bool = False,
    device: str | torch.device | None = None,
    n_devices: int = 1,
    default_prepend_bos: bool | None = None,
    dtype: torch.dtype = torch.float32,
    first_n_layers: int | None = None,
    n_ctx: int | None = None,
    **kwargs: Any,
) -> ModelConfig:
    """The config `from_pretrained(model_name)` would build, without loading weights, with
    TransformerLens's arguments: `hf_cfg` (the `config.json` dict; read from the model's
    folder or the Hub when None), a training checkpoint (recorded in `from_checkpoint`,
    `checkpoint_*`), `fold_ln` (normalization "LN" -> "LNPre", "RMS" -> "RMSPre" and
    `layer_norm_folding`), `device` (default `utils.get_device()`), `default_prepend_bos`,
    `dtype`, `first_n_layers` (keep only that many layers), `n_ctx`, and other config
    fields in `kwargs`."""
    from lookingglass import utils
    from lookingglass.loading.converters import converter_for
    from lookingglass.loading.pretrained import NATIVE_KEY

    revision = None
    if checkpoint_index is not None or checkpoint_value is not None:
        revision = registry.checkpoint_revision(model_name, checkpoint_index, checkpoint_value)
        step = int(revision.removeprefix("step"))
        kwargs.update(
            from_checkpoint=True,
            checkpoint_label_type="step",
            checkpoint_value=step,
            checkpoint_index=registry.checkpoint_steps(model_name).index(step),
        )
    hf_config = hf_cfg if hf_cfg is not None else _hf_config(model_name, revision)
    overrides: dict[str, Any] = {**kwargs, "dtype": dtype, "n_devices": n_devices}
    overrides["device"] = str(device) if device is not None else utils.get_device()
    if default_prepend_bos is not None:
        overrides["default_prepend_bos"] = default_prepend_bos
    if n_ctx is not None:
        overrides["n_ctx"] = n_ctx
    if first_n_layers is not None:
        overrides["n_layers"] = first_n_layers
    if NATIVE_KEY in hf_config:
        cfg = ModelConfig.from_dict({**hf_config[NATIVE_KEY], **overrides})
    else:
        name = registry.hub_id(model_name) or str(model_name).rstrip("/")
        naming = {"model_name": name.split("/")[-1], "tokenizer_name": name}
        cfg = converter_for(hf_config).config_from_hf(hf_config, **{**naming, **overrides})
    if fold_ln:
        folded = {"LN": "LNPre", "LNPre": "LNPre", "RMS": "RMSPre", "RMSPre": "RMSPre"}
        if cfg.normalization_type in folded:
            cfg = cfg.replace(normalization_type=folded[cfg.normalization_type])
            cfg.layer_norm_folding = True
    return cfg


def get_num_params_of_pretrained(model_name: str) -> int:
    """TransformerLens's `n_params` of a pretrained model (from its config)."""
    return get_pretrained_model_config(model_name).n_params


def get_pretrained_state_dict(*args: Any, **kwargs: Any) -> Any:
    """Not provided under this name: see `lookingglass.loading.load_checkpoint`."""
    raise NotSupportedError(
        "get_pretrained_state_dict is not provided: HookedTransformer.from_pretrained(name)"
        ".state_dict() gives the converted weights, and lookingglass.loading.load_checkpoint"
        "(folder) the raw Hugging Face ones."
    )


__all__ = [
    "MODEL_ALIASES",
    "OFFICIAL_MODEL_NAMES",
    "PYTHIA_CHECKPOINTS",
    "PYTHIA_V0_CHECKPOINTS",
    "convert_hf_model_config",
    "get_checkpoint_labels",
    "get_num_params_of_pretrained",
    "get_official_model_name",
    "get_pretrained_model_config",
    "get_pretrained_state_dict",
    "make_model_alias_map",
]
