"""Small helpers with TransformerLens 3.9's `utils` names and meanings, plus
`write_atomic`/`atomic_file`, how the library writes every file a reader may open.

`from lookingglass import utils; utils.get_act_name("pattern", 0)` works as
`transformer_lens.utils` does. The TransformerLens names lookingglass does not provide
(multi-GPU placement helpers, hub downloads of pickles) raise `NotSupportedError` when
used, naming what to use instead; docs/transformerlens_compat.md lists every name.

Modules: `names` (get_act_name), `activations`, `tensors`, `slice`, `lm` (losses,
sampling, logits_to_df), `init` (weight initialization), `tokenize`, `hf` (datasets),
`defaults` (LocallyOverridenDefaults), `devices`, `matrix`, `exploratory`
(test_prompt), `files` (atomic writes).
"""

from typing import Any

import torch

from lookingglass.errors import NotSupportedError
from lookingglass.utils.activations import (
    SOFTCAP_DISABLED,
    SUPPORTED_ACTIVATIONS,
    ActivationFunction,
    apply_softcap,
    gelu_fast,
    gelu_new,
    gelu_pytorch_tanh,
    softcap_enabled,
    solu,
)
from lookingglass.utils.defaults import (
    USE_DEFAULT_VALUE,
    LocallyOverridenDefaults,
    override_or_use_default_value,
)
from lookingglass.utils.devices import (
    ModelWithCfg,
    get_device,
    is_library_available,
    move_to_and_update_config,
    print_gpu_mem,
    warn_if_mps,
)
from lookingglass.utils.exploratory import AnswerTokenStats, test_prompt
from lookingglass.utils.files import atomic_file, write_atomic
from lookingglass.utils.hf import (
    clear_huggingface_cache,
    download_file_from_hf,
    get_dataset,
    get_rotary_pct_from_config,
    keep_single_column,
    select_compatible_kwargs,
)
from lookingglass.utils.init import (
    NonlinearityType,
    calc_fan_in_and_fan_out,
    init_kaiming_normal_,
    init_kaiming_uniform_,
    init_xavier_normal_,
    init_xavier_uniform_,
)
from lookingglass.utils.lm import lm_accuracy, lm_cross_entropy_loss, logits_to_df, sample_logits
from lookingglass.utils.matrix import composition_scores, get_matrix_corner
from lookingglass.utils.names import get_act_name
from lookingglass.utils.slice import Slice, SliceInput
from lookingglass.utils.tensors import (
    check_structure,
    filter_dict_by_prefix,
    get_corner,
    get_cumsum_along_dim,
    get_nested_attr,
    get_offset_position_ids,
    is_lower_triangular,
    is_square,
    remove_batch_dim,
    repeat_along_head_dimension,
    set_nested_attr,
    temporarily_swap_parameter,
    to_numpy,
    transpose,
)
from lookingglass.utils.tokenize import (
    get_attention_mask,
    get_input_with_manually_prepended_bos,
    get_tokenizer_with_bos,
    get_tokens_with_bos_removed,
    tokenize_and_concatenate,
)

_MULTI_GPU = (
    "TransformerLens's CUDA-memory helpers are not provided; split a model with "
    "from_pretrained(..., n_devices=N) or device_map=... (lookingglass.model.placement; "
    "utils.get_device_for_block_index gives the split), or wrap a Hugging Face model "
    "loaded with device_map='auto' in HookedAutoModel."
)
# TransformerLens `utils` names lookingglass does not provide, and what to use instead.
NOT_PROVIDED = {
    "calculate_available_device_cuda_memory": _MULTI_GPU,
    "count_unique_devices": _MULTI_GPU,
    "determine_available_memory_for_available_devices": _MULTI_GPU,
    "find_embedding_device": _MULTI_GPU,
    "get_best_available_cuda_device": _MULTI_GPU,
    "get_best_available_device": _MULTI_GPU,
    "resolve_device_map": _MULTI_GPU,
    "sort_devices_based_on_available_memory": _MULTI_GPU,
    "TypedModuleList": "use torch.nn.ModuleList (our model's blocks are one).",
}


def get_device_for_block_index(
    index: int, cfg: Any, device: torch.device | str | None = None
) -> torch.device:
    """The device of block `index` when `cfg.n_layers` blocks are split over
    `cfg.n_devices` devices from `device` (default `cfg.device`) on, as TransformerLens."""
    from lookingglass.model.placement import block_device

    base = torch.device(device if device is not None else cfg.device)
    return block_device(index, cfg.n_layers, cfg.n_devices, base)


def __getattr__(name: str) -> Any:
    if name in NOT_PROVIDED:
        raise NotSupportedError(
            f"transformer_lens.utils.{name} is not provided by lookingglass: {NOT_PROVIDED[name]}"
        )
    raise AttributeError(f"module 'lookingglass.utils' has no attribute {name!r}")


__all__ = [
    "SOFTCAP_DISABLED",
    "SUPPORTED_ACTIVATIONS",
    "USE_DEFAULT_VALUE",
    "ActivationFunction",
    "AnswerTokenStats",
    "LocallyOverridenDefaults",
    "ModelWithCfg",
    "NonlinearityType",
    "Slice",
    "SliceInput",
    "apply_softcap",
    "atomic_file",
    "calc_fan_in_and_fan_out",
    "check_structure",
    "clear_huggingface_cache",
    "composition_scores",
    "download_file_from_hf",
    "filter_dict_by_prefix",
    "gelu_fast",
    "gelu_new",
    "gelu_pytorch_tanh",
    "get_act_name",
    "get_attention_mask",
    "get_corner",
    "get_cumsum_along_dim",
    "get_dataset",
    "get_device",
    "get_input_with_manually_prepended_bos",
    "get_matrix_corner",
    "get_nested_attr",
    "get_offset_position_ids",
    "get_rotary_pct_from_config",
    "get_tokenizer_with_bos",
    "get_tokens_with_bos_removed",
    "init_kaiming_normal_",
    "init_kaiming_uniform_",
    "init_xavier_normal_",
    "init_xavier_uniform_",
    "is_library_available",
    "is_lower_triangular",
    "is_square",
    "keep_single_column",
    "lm_accuracy",
    "lm_cross_entropy_loss",
    "logits_to_df",
    "move_to_and_update_config",
    "override_or_use_default_value",
    "print_gpu_mem",
    "remove_batch_dim",
    "repeat_along_head_dimension",
    "sample_logits",
    "select_compatible_kwargs",
    "set_nested_attr",
    "softcap_enabled",
    "solu",
    "temporarily_swap_parameter",
    "test_prompt",
    "to_numpy",
    "tokenize_and_concatenate",
    "transpose",
    "warn_if_mps",
    "write_atomic",
]
