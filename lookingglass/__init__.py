"""lookingglass: mechanistic interpretability of transformer language models.

The public surface keeps TransformerLens's names, so tutorials carry over:

    from lookingglass import HookedTransformer
    model = HookedTransformer.from_pretrained("gpt2")
    logits, cache = model.run_with_cache("When Mary and John went to the store, John gave")
    cache["pattern", 5]

TransformerLens's module paths work too (`lookingglass.hook_points`,
`lookingglass.ActivationCache`, `lookingglass.components`, `lookingglass.head_detector`,
`lookingglass.loading_from_pretrained`, `lookingglass.evals`, `lookingglass.patching`,
`lookingglass.utils`, ...); each re-exports our own implementation.
docs/transformerlens_compat.md lists every TransformerLens name and what it is here.
"""

from typing import Any

from lookingglass import (
    components,
    evals,
    head_detector,
    hook_points,
    loading_from_pretrained,
    patching,
    utilities,
    utils,
)

# As in TransformerLens, these names are both modules (`from lookingglass.ActivationCache
# import ActivationCache`) and, as package attributes, the classes themselves.
from lookingglass.ActivationCache import ActivationCache
from lookingglass.auto import HookedAutoModel
from lookingglass.config import HookedTransformerConfig, ModelConfig
from lookingglass.errors import (
    CheckpointError,
    ConfigError,
    HookError,
    InputError,
    LookingGlassError,
    NotSupportedError,
    UnsupportedArchitectureError,
)
from lookingglass.FactoredMatrix import FactoredMatrix
from lookingglass.HookedRootModule import HookedRootModule
from lookingglass.HookedTransformer import HookedTransformer
from lookingglass.hooks import HookPoint
from lookingglass.loading.registry import list_models
from lookingglass.model import HookedTransformerKeyValueCache, KeyValueCache
from lookingglass.model.encoder import HookedEncoder
from lookingglass.model.kv_cache import KeyValueCacheEntry
from lookingglass.model.next_sentence import BertNextSentencePrediction
from lookingglass.SVDInterpreter import SVDInterpreter

__version__ = "0.1.0"

# TransformerLens 3.9 names under ours.
TransformerLensKeyValueCache = KeyValueCache
TransformerLensKeyValueCacheEntry = KeyValueCacheEntry

# TransformerLens top-level names lookingglass does not provide (yet), and what to use.
_NOT_PROVIDED = {
    "HookedEncoderDecoder": "encoder-decoder (T5) models are not native in lookingglass; "
    "HookedAutoModel wraps any Hugging Face model with hooks.",
    "HookedAudioEncoder": "audio models are not native in lookingglass; "
    "HookedAutoModel wraps any Hugging Face model with hooks.",
    "TransformerBridgeConfig": "lookingglass has no TransformerBridge; HookedAutoModel is "
    "its counterpart (hooks on any Hugging Face model's submodules).",
    "model_bridge": "lookingglass has no TransformerBridge; use HookedAutoModel.",
    "train": "training lives in lookingglass.training (train, TrainConfig).",
    "lit": "the LIT integration is not provided.",
    "conversion_utils": "TransformerLens-internal; loading converters live in "
    "lookingglass.loading.converters.",
    "factories": "TransformerLens-internal (architecture adapters); see lookingglass.loading.",
    "tools": "TransformerLens's model-registry tools; see lookingglass.list_models().",
    "supported_models": "lookingglass.list_models() lists the models we load natively.",
    "weight_processing": "weight processing is lookingglass.loading.processing.",
    "pretrained": "TransformerLens-internal; see lookingglass.loading.",
}


def __getattr__(name: str) -> Any:
    if name in _NOT_PROVIDED:
        raise NotSupportedError(f"transformer_lens.{name}: {_NOT_PROVIDED[name]}")
    raise AttributeError(f"module 'lookingglass' has no attribute {name!r}")


__all__ = [
    "ActivationCache",
    "BertNextSentencePrediction",
    "CheckpointError",
    "ConfigError",
    "FactoredMatrix",
    "HookError",
    "HookPoint",
    "HookedAutoModel",
    "HookedEncoder",
    "HookedRootModule",
    "HookedTransformer",
    "HookedTransformerConfig",
    "HookedTransformerKeyValueCache",
    "InputError",
    "KeyValueCache",
    "LookingGlassError",
    "ModelConfig",
    "NotSupportedError",
    "SVDInterpreter",
    "TransformerLensKeyValueCache",
    "TransformerLensKeyValueCacheEntry",
    "UnsupportedArchitectureError",
    "components",
    "evals",
    "head_detector",
    "hook_points",
    "list_models",
    "loading_from_pretrained",
    "patching",
    "utilities",
    "utils",
]
