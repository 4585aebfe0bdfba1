"""Sparse autoencoders and transcoders as hooked modules, in SAELens's folder format.

    from lookingglass.sae import SAE, HookedSAETransformer, run_with_saes
    sae = SAE.load_from_disk("my_sae/")                # cfg.json + sae_weights.safetensors
    logits, cache = run_with_cache_with_saes(model, tokens, saes=[sae])
    cache["blocks.3.hook_resid_post.hook_sae_acts_post"]

See docs/sae.md.
"""

from lookingglass.sae.attribution import ablate_features, feature_attribution
from lookingglass.sae.config import ARCHITECTURES, SAEConfig
from lookingglass.sae.folder import load_sae, load_sparsity, save_sae
from lookingglass.sae.hooked_sae_transformer import HookedSAETransformer
from lookingglass.sae.sae import SAE, SAE_HOOK_NAMES
from lookingglass.sae.splice import (
    SplicedHookPoint,
    add_sae,
    attached_saes,
    reset_saes,
    run_with_cache_with_saes,
    run_with_hooks_with_saes,
    run_with_saes,
    saes,
)

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "SAE_HOOK_NAMES",
    "HookedSAETransformer",
    "SAEConfig",
    "SplicedHookPoint",
    "ablate_features",
    "add_sae",
    "attached_saes",
    "feature_attribution",
    "load_sae",
    "load_sparsity",
    "reset_saes",
    "run_with_cache_with_saes",
    "run_with_hooks_with_saes",
    "run_with_saes",
    "save_sae",
    "saes",
]
