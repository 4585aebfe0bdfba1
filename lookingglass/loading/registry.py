"""Known model names: official Hub ids by family, aliases, checkpoints, shipped models.

`HookedTransformer.from_pretrained(name)` accepts a local folder, a name listed here, or
any Hub id (`org/name`) whose architecture has a converter. The names are every model
TransformerLens 3.9's `OFFICIAL_MODEL_NAMES` lists in a family we implement natively
(under the Hub id it has today, e.g. `openai-community/gpt2` for `gpt2`), plus its
aliases; each id's own name after the `/` is an alias too (`pythia-70m`). Lookups
ignore case. Pythia's training checkpoints load by index or step
(`checkpoint_index=` / `checkpoint_value=`, the Hub revision `step{N}`).

Models shipped inside the package live in `lookingglass/pretrained/<name>/` (a folder
with `config.json`) and load by their folder name, offline. Registered GGUF models
(`gguf_models.GGUF_MODELS`) come as a file inside another installed Python package
(found without importing it) and load offline through `lookingglass.loading.gguf`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from lookingglass.errors import InputError
from lookingglass.loading.gguf_models import GGUF_MODELS

PACKAGED_DIR = Path(__file__).resolve().parent.parent / "pretrained"

# Family (the converter that loads it, by Hugging Face `model_type`) -> Hub ids. The
# StableLM-Alpha models are GPT-NeoX checkpoints; "stablelm" is `StableLmForCausalLM`.
OFFICIAL_MODELS: dict[str, tuple[str, ...]] = {
    "gpt2": (
        "ai-forever/mGPT",
        "distilbert/distilgpt2",
        "openai-community/gpt2",
        "openai-community/gpt2-large",
        "openai-community/gpt2-medium",
        "openai-community/gpt2-xl",
    ),
    "gpt_neo": (
        "EleutherAI/gpt-neo-1.3B",
        "EleutherAI/gpt-neo-125M",
        "EleutherAI/gpt-neo-2.7B",
        "roneneldan/TinyStories-1Layer-21M",
        "roneneldan/TinyStories-1M",
        "roneneldan/TinyStories-28M",
        "roneneldan/TinyStories-2Layers-33M",
        "roneneldan/TinyStories-33M",
        "roneneldan/TinyStories-3M",
        "roneneldan/TinyStories-8M",
        "roneneldan/TinyStories-Instruct-1M",
        "roneneldan/TinyStories-Instruct-28M",
        "roneneldan/TinyStories-Instruct-2Layers-33M",
        "roneneldan/TinyStories-Instruct-33M",
        "roneneldan/TinyStories-Instruct-3M",
        "roneneldan/TinyStories-Instruct-8M",
        "roneneldan/TinyStories-Instuct-1Layer-21M",
    ),
    "gptj": ("EleutherAI/gpt-j-6B",),
    "gpt_neox": (
        "EleutherAI/gpt-neox-20b",
        "EleutherAI/pythia-1.4b",
        "EleutherAI/pythia-1.4b-deduped",
        "EleutherAI/pythia-1.4b-deduped-v0",
        "EleutherAI/pythia-1.4b-v0",
        "EleutherAI/pythia-12b",
        "EleutherAI/pythia-12b-deduped",
        "EleutherAI/pythia-12b-deduped-v0",
        "EleutherAI/pythia-12b-v0",
        "EleutherAI/pythia-14m",
        "EleutherAI/pythia-160m",
        "EleutherAI/pythia-160m-deduped",
        "EleutherAI/pythia-160m-deduped-v0",
        "EleutherAI/pythia-160m-seed1",
        "EleutherAI/pythia-160m-seed2",
        "EleutherAI/pythia-160m-seed3",
        "EleutherAI/pythia-160m-v0",
        "EleutherAI/pythia-1b",
        "EleutherAI/pythia-1b-deduped",
        "EleutherAI/pythia-1b-deduped-v0",
        "EleutherAI/pythia-1b-v0",
        "EleutherAI/pythia-2.8b",
        "EleutherAI/pythia-2.8b-deduped",
        "EleutherAI/pythia-2.8b-deduped-v0",
        "EleutherAI/pythia-2.8b-v0",
        "EleutherAI/pythia-31m",
        "EleutherAI/pythia-410m",
        "EleutherAI/pythia-410m-deduped",
        "EleutherAI/pythia-410m-deduped-v0",
        "EleutherAI/pythia-410m-v0",
        "EleutherAI/pythia-6.9b",
        "EleutherAI/pythia-6.9b-deduped",
        "EleutherAI/pythia-6.9b-deduped-v0",
        "EleutherAI/pythia-6.9b-v0",
        "EleutherAI/pythia-70m",
        "EleutherAI/pythia-70m-deduped",
        "EleutherAI/pythia-70m-deduped-v0",
        "EleutherAI/pythia-70m-v0",
        "stabilityai/stablelm-base-alpha-3b",
        "stabilityai/stablelm-base-alpha-7b",
        "stabilityai/stablelm-tuned-alpha-3b",
        "stabilityai/stablelm-tuned-alpha-7b",
    ),
    "opt": (
        "facebook/opt-1.3b",
        "facebook/opt-125m",
        "facebook/opt-13b",
        "facebook/opt-2.7b",
        "facebook/opt-30b",
        "facebook/opt-6.7b",
        "facebook/opt-66b",
    ),
    "bloom": (
        "bigscience/bloom-1b1",
        "bigscience/bloom-1b7",
        "bigscience/bloom-3b",
        "bigscience/bloom-560m",
        "bigscience/bloom-7b1",
    ),
    "stablelm": (
        "stabilityai/stablelm-2-1_6b",
        "stabilityai/stablelm-3b-4e1t",
    ),
    "llama": (
        "01-ai/Yi-34B",
        "01-ai/Yi-34B-Chat",
        "01-ai/Yi-6B",
        "01-ai/Yi-6B-Chat",
        "codellama/CodeLlama-7b-hf",
        "codellama/CodeLlama-7b-Instruct-hf",
        "codellama/CodeLlama-7b-Python-hf",
        "meta-llama/Llama-2-13b-chat-hf",
        "meta-llama/Llama-2-13b-hf",
        "meta-llama/Llama-2-70b-chat-hf",
        "meta-llama/Llama-2-7b-chat-hf",
        "meta-llama/Llama-2-7b-hf",
        "meta-llama/Llama-3.1-70B",
        "meta-llama/Llama-3.1-70B-Instruct",
        "meta-llama/Llama-3.1-8B",
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.2-1B",
        "meta-llama/Llama-3.2-1B-Instruct",
        "meta-llama/Llama-3.2-3B",
        "meta-llama/Llama-3.2-3B-Instruct",
        "meta-llama/Llama-3.3-70B-Instruct",
        "meta-llama/Meta-Llama-3-70B",
        "meta-llama/Meta-Llama-3-70B-Instruct",
        "meta-llama/Meta-Llama-3-8B",
        "meta-llama/Meta-Llama-3-8B-Instruct",
    ),
    "mistral": (
        "mistralai/Mistral-7B-Instruct-v0.1",
        "mistralai/Mistral-7B-v0.1",
        "mistralai/Mistral-Nemo-Base-2407",
        "mistralai/Mistral-Small-24B-Base-2501",
    ),
    "mixtral": (
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "mistralai/Mixtral-8x7B-v0.1",
    ),
    "qwen2": (
        "Qwen/Qwen1.5-0.5B",
        "Qwen/Qwen1.5-0.5B-Chat",
        "Qwen/Qwen1.5-1.8B",
        "Qwen/Qwen1.5-1.8B-Chat",
        "Qwen/Qwen1.5-14B",
        "Qwen/Qwen1.5-14B-Chat",
        "Qwen/Qwen1.5-4B",
        "Qwen/Qwen1.5-4B-Chat",
        "Qwen/Qwen1.5-7B",
        "Qwen/Qwen1.5-7B-Chat",
        "Qwen/Qwen2-0.5B",
        "Qwen/Qwen2-0.5B-Instruct",
        "Qwen/Qwen2-1.5B",
        "Qwen/Qwen2-1.5B-Instruct",
        "Qwen/Qwen2-7B",
        "Qwen/Qwen2-7B-Instruct",
        "Qwen/Qwen2.5-0.5B",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen/Qwen2.5-1.5B",
        "Qwen/Qwen2.5-1.5B-Instruct",
        "Qwen/Qwen2.5-14B",
        "Qwen/Qwen2.5-14B-Instruct",
        "Qwen/Qwen2.5-32B",
        "Qwen/Qwen2.5-32B-Instruct",
        "Qwen/Qwen2.5-3B",
        "Qwen/Qwen2.5-3B-Instruct",
        "Qwen/Qwen2.5-72B",
        "Qwen/Qwen2.5-72B-Instruct",
        "Qwen/Qwen2.5-7B",
        "Qwen/Qwen2.5-7B-Instruct",
        "Qwen/QwQ-32B-Preview",
    ),
    "qwen3": (
        "Qwen/Qwen3-0.6B",
        "Qwen/Qwen3-0.6B-Base",
        "Qwen/Qwen3-1.7B",
        "Qwen/Qwen3-14B",
        "Qwen/Qwen3-4B",
        "Qwen/Qwen3-8B",
    ),
    "gemma": (
        "google/gemma-2b",
        "google/gemma-2b-it",
        "google/gemma-7b",
        "google/gemma-7b-it",
    ),
    "gemma2": (
        "google/gemma-2-27b",
        "google/gemma-2-27b-it",
        "google/gemma-2-2b",
        "google/gemma-2-2b-it",
        "google/gemma-2-9b",
        "google/gemma-2-9b-it",
    ),
    "phi3": (
        "microsoft/Phi-3-mini-4k-instruct",
        "microsoft/phi-4",
    ),
    "olmo2": (
        "allenai/OLMo-2-0425-1B",
        "allenai/OLMo-2-1124-7B",
    ),
}
# Further aliases (TransformerLens's), beyond each id's own name after the `/`.
ALIASES: dict[str, tuple[str, ...]] = {
    "allenai/OLMo-2-0425-1B": ("olmo-2-1b",),
    "allenai/OLMo-2-1124-7B": ("olmo-2-7b",),
    "codellama/CodeLlama-7b-hf": ("codellamallama-2-7b",),
    "codellama/CodeLlama-7b-Instruct-hf": ("codellama-7b-instruct",),
    "codellama/CodeLlama-7b-Python-hf": ("codellama-7b-python",),
    "distilbert/distilgpt2": ("distillgpt2", "distill-gpt2", "distil-gpt2", "gpt2-xs"),
    "EleutherAI/gpt-j-6B": ("gpt-j", "gptj"),
    "EleutherAI/gpt-neo-1.3B": ("gpt-neo-medium", "neo-medium"),
    "EleutherAI/gpt-neo-125M": ("gpt-neo-small", "neo-small", "neo"),
    "EleutherAI/gpt-neo-2.7B": ("gpt-neo-large", "neo-large"),
    "EleutherAI/gpt-neox-20b": ("gpt-neox", "neox"),
    "EleutherAI/pythia-1.4b": ("eleutherai/pythia-1.3b", "pythia-1.3b"),
    "EleutherAI/pythia-1.4b-deduped": ("eleutherai/pythia-1.3b-deduped", "pythia-1.3b-deduped"),
    "EleutherAI/pythia-1.4b-deduped-v0": (
        "eleutherai/pythia-1.3b-deduped-v0",
        "pythia-1.3b-deduped-v0",
    ),
    "EleutherAI/pythia-1.4b-v0": ("eleutherai/pythia-1.3b-v0", "pythia-1.3b-v0"),
    "EleutherAI/pythia-12b": ("eleutherai/pythia-13b", "pythia-13b"),
    "EleutherAI/pythia-12b-deduped": ("eleutherai/pythia-13b-deduped", "pythia-13b-deduped"),
    "EleutherAI/pythia-12b-deduped-v0": (
        "eleutherai/pythia-13b-deduped-v0",
        "pythia-13b-deduped-v0",
    ),
    "EleutherAI/pythia-12b-v0": ("eleutherai/pythia-13b-v0", "pythia-13b-v0"),
    "EleutherAI/pythia-160m": ("eleutherai/pythia-125m", "pythia-125m"),
    "EleutherAI/pythia-160m-deduped": ("eleutherai/pythia-125m-deduped", "pythia-125m-deduped"),
    "EleutherAI/pythia-160m-deduped-v0": (
        "eleutherai/pythia-125m-deduped-v0",
        "pythia-125m-deduped-v0",
    ),
    "EleutherAI/pythia-160m-seed1": ("eleutherai/pythia-125m-seed1", "pythia-125m-seed1"),
    "EleutherAI/pythia-160m-seed2": ("eleutherai/pythia-125m-seed2", "pythia-125m-seed2"),
    "EleutherAI/pythia-160m-seed3": ("eleutherai/pythia-125m-seed3", "pythia-125m-seed3"),
    "EleutherAI/pythia-160m-v0": ("eleutherai/pythia-125m-v0", "pythia-125m-v0"),
    "EleutherAI/pythia-1b": ("eleutherai/pythia-800m", "pythia-800m"),
    "EleutherAI/pythia-1b-deduped": ("eleutherai/pythia-800m-deduped", "pythia-800m-deduped"),
    "EleutherAI/pythia-1b-deduped-v0": (
        "eleutherai/pythia-800m-deduped-v0",
        "pythia-800m-deduped-v0",
    ),
    "EleutherAI/pythia-1b-v0": ("eleutherai/pythia-800m-v0", "pythia-800m-v0"),
    "EleutherAI/pythia-2.8b": ("eleutherai/pythia-2.7b", "pythia-2.7b"),
    "EleutherAI/pythia-2.8b-deduped": ("eleutherai/pythia-2.7b-deduped", "pythia-2.7b-deduped"),
    "EleutherAI/pythia-2.8b-deduped-v0": (
        "eleutherai/pythia-2.7b-deduped-v0",
        "pythia-2.7b-deduped-v0",
    ),
    "EleutherAI/pythia-2.8b-v0": ("eleutherai/pythia-2.7b-v0", "pythia-2.7b-v0"),
    "EleutherAI/pythia-410m": ("eleutherai/pythia-350m", "pythia-350m"),
    "EleutherAI/pythia-410m-deduped": ("eleutherai/pythia-350m-deduped", "pythia-350m-deduped"),
    "EleutherAI/pythia-410m-deduped-v0": (
        "eleutherai/pythia-350m-deduped-v0",
        "pythia-350m-deduped-v0",
    ),
    "EleutherAI/pythia-410m-v0": ("eleutherai/pythia-350m-v0", "pythia-350m-v0"),
    "EleutherAI/pythia-6.9b": ("eleutherai/pythia-6.7b", "pythia-6.7b"),
    "EleutherAI/pythia-6.9b-deduped": ("eleutherai/pythia-6.7b-deduped", "pythia-6.7b-deduped"),
    "EleutherAI/pythia-6.9b-deduped-v0": (
        "eleutherai/pythia-6.7b-deduped-v0",
        "pythia-6.7b-deduped-v0",
    ),
    "EleutherAI/pythia-6.9b-v0": ("eleutherai/pythia-6.7b-v0", "pythia-6.7b-v0"),
    "EleutherAI/pythia-70m": ("pythia", "eleutherai/pythia-19m", "pythia-19m"),
    "EleutherAI/pythia-70m-deduped": ("eleutherai/pythia-19m-deduped", "pythia-19m-deduped"),
    "EleutherAI/pythia-70m-deduped-v0": (
        "eleutherai/pythia-19m-deduped-v0",
        "pythia-19m-deduped-v0",
    ),
    "EleutherAI/pythia-70m-v0": ("pythia-v0", "eleutherai/pythia-19m-v0", "pythia-19m-v0"),
    "facebook/opt-1.3b": ("opt-medium",),
    "facebook/opt-125m": ("opt-small", "opt"),
    "facebook/opt-13b": ("opt-xxl",),
    "facebook/opt-2.7b": ("opt-large",),
    "facebook/opt-30b": ("opt-xxxl",),
    "facebook/opt-6.7b": ("opt-xl",),
    "facebook/opt-66b": ("opt-xxxxl",),
    "openai-community/gpt2": ("gpt2-small",),
    "meta-llama/Llama-2-13b-chat-hf": ("llama-2-13b-chat",),
    "meta-llama/Llama-2-13b-hf": ("llama-2-13b",),
    "meta-llama/Llama-2-70b-chat-hf": ("llama-2-70b-chat", "meta-llama-2-70b-chat-hf"),
    "meta-llama/Llama-2-7b-chat-hf": ("llama-2-7b-chat",),
    "meta-llama/Llama-2-7b-hf": ("llama-2-7b",),
    "microsoft/Phi-3-mini-4k-instruct": ("phi-3",),
    "mistralai/Mistral-7B-Instruct-v0.1": ("mistral-7b-instruct",),
    "mistralai/Mistral-7B-v0.1": ("mistral-7b",),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("mixtral-instruct", "mixtral-8x7b-instruct"),
    "mistralai/Mixtral-8x7B-v0.1": ("mixtral", "mixtral-8x7b"),
    "Qwen/QwQ-32B-Preview": ("qwen-32b-preview",),
    "roneneldan/TinyStories-1Layer-21M": ("tiny-stories-1l-21m",),
    "roneneldan/TinyStories-1M": ("tiny-stories-1m",),
    "roneneldan/TinyStories-28M": ("tiny-stories-28m",),
    "roneneldan/TinyStories-2Layers-33M": ("tiny-stories-2l-33m",),
    "roneneldan/TinyStories-33M": ("tiny-stories-33m",),
    "roneneldan/TinyStories-3M": ("tiny-stories-3m",),
    "roneneldan/TinyStories-8M": ("tiny-stories-8m",),
    "roneneldan/TinyStories-Instruct-1M": ("tiny-stories-instruct-1m",),
    "roneneldan/TinyStories-Instruct-28M": ("tiny-stories-instruct-28m",),
    "roneneldan/TinyStories-Instruct-2Layers-33M": ("tiny-stories-instruct-2l-33m",),
    "roneneldan/TinyStories-Instruct-33M": ("tiny-stories-instruct-33m",),
    "roneneldan/TinyStories-Instruct-3M": ("tiny-stories-instruct-3m",),
    "roneneldan/TinyStories-Instruct-8M": ("tiny-stories-instruct-8m",),
    "roneneldan/TinyStories-Instuct-1Layer-21M": ("tiny-stories-instruct-1l-21m",),
    "stabilityai/stablelm-base-alpha-3b": ("stablelm-base-3b",),
    "stabilityai/stablelm-base-alpha-7b": ("stablelm-base-7b",),
    "stabilityai/stablelm-tuned-alpha-3b": ("stablelm-tuned-3b",),
    "stabilityai/stablelm-tuned-alpha-7b": ("stablelm-tuned-7b",),
}

# Pythia's checkpoints by training step (TransformerLens's lists): log-spaced early steps,
# then every 1000 steps (2,097,152 tokens a step); the "-v0" models have only the latter.
PYTHIA_CHECKPOINTS = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, *range(1000, 143001, 1000)]
PYTHIA_V0_CHECKPOINTS = list(range(1000, 143001, 1000))


def _build_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for ids in OFFICIAL_MODELS.values():
        for repo_id in ids:
            index[repo_id.lower()] = repo_id
            index[repo_id.split("/")[-1].lower()] = repo_id
    for repo_id, aliases in ALIASES.items():
        index.update({alias.lower(): repo_id for alias in aliases})
    return index


# Name (lower case) -> Hub id: ids, their names after the "/", and the aliases.
HUB_IDS: dict[str, str] = _build_index()


def register_alias(alias: str, hub_id: str) -> None:
    """Make `alias` (case-insensitive) resolve to the Hub repository `hub_id`."""
    HUB_IDS[alias.lower()] = hub_id


def hub_id(name: str) -> str | None:
    """The Hub id for a known alias or id (case-insensitive), else None."""
    return HUB_IDS.get(name.lower())


def family(name: str) -> str | None:
    """The family (`model_type`, e.g. "gpt_neox") of a known name, else None."""
    repo_id = hub_id(name)
    return next((fam for fam, ids in OFFICIAL_MODELS.items() if repo_id in ids), None)


def packaged_models() -> dict[str, Path]:
    """Models shipped inside the package: folder name -> folder (empty if none yet)."""
    if not PACKAGED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(PACKAGED_DIR.iterdir()) if (p / "config.json").is_file()}


def list_models(family: str | None = None, aliases: bool = False) -> list[str]:
    """The names `from_pretrained` knows without being given a folder, sorted.

    Args:
        family: only this family's Hub ids (a key of `OFFICIAL_MODELS`, e.g. "gpt_neox").
        aliases: also every alias (each id's short name, TransformerLens's aliases).

    Returns:
        The Hub ids (and the models shipped in the package, when no family is given).

    Raises:
        InputError: an unknown family, naming the known ones.
    """
    if family is not None and family not in OFFICIAL_MODELS:
        raise InputError(f"Unknown family {family!r}; known: {', '.join(OFFICIAL_MODELS)}.")
    ids = [i for fam, ids in OFFICIAL_MODELS.items() if family in (None, fam) for i in ids]
    names = set(ids) if family is not None else {*ids, *packaged_models(), *GGUF_MODELS}
    if aliases:
        names |= {alias for alias, repo_id in HUB_IDS.items() if repo_id in ids}
        if family is None:
            names |= {alias for model in GGUF_MODELS.values() for alias in model.aliases}
    return sorted(names, key=str.lower)


def close_matches(name: str, n: int = 5) -> list[str]:
    """Up to `n` known names (ids, aliases, shipped models) that look like `name`."""
    gguf_names = {a.lower() for m in GGUF_MODELS.values() for a in (m.name, *m.aliases)}
    candidates = {*HUB_IDS, *(p.lower() for p in packaged_models()), *gguf_names}
    # Several aliases of one model may match: ask for more, report each model once.
    matches = difflib.get_close_matches(name.lower(), candidates, n=4 * n, cutoff=0.6)
    return list(dict.fromkeys(hub_id(m) or m for m in matches))[:n]


def unknown_name_message(name: str) -> str:
    """What to say when `name` is neither a folder, nor a known name, nor a Hub id."""
    matches = close_matches(name)
    hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
    return (
        f"{name!r} is not a folder, a known model name or a Hub id.{hint} "
        "lookingglass.list_models() lists the known names; a local folder in Hugging Face "
        "format or a Hub id such as 'openai-community/gpt2' works too."
    )


def checkpoint_steps(name: str) -> list[int]:
    """The training steps at which `name` has checkpoints (Pythia models).

    Raises:
        InputError: `name` is not a model with known training checkpoints.
    """
    repo_id = hub_id(name) or ""
    if not repo_id.startswith("EleutherAI/pythia"):
        raise InputError(
            f"{name!r} has no training checkpoints known to lookingglass (Pythia models "
            "have them). Pass revision=... to load a Hub branch, tag or commit instead."
        )
    return PYTHIA_V0_CHECKPOINTS if repo_id.endswith("-v0") else PYTHIA_CHECKPOINTS


def checkpoint_revision(
    name: str, checkpoint_index: int | None = None, checkpoint_value: int | None = None
) -> str:
    """The Hub revision (`step{N}`) of one training checkpoint of `name`.

    Args:
        name: a Pythia model (id or alias).
        checkpoint_index: position in `checkpoint_steps(name)` (negative counts from
            the end, as in a list).
        checkpoint_value: the training step itself; exactly one of the two is given.

    Raises:
        InputError: not a checkpointed model, both or neither argument, an index out of
            range, or a step without a checkpoint (naming the nearest ones).
    """
    steps = checkpoint_steps(name)
    if (checkpoint_index is None) == (checkpoint_value is None):
        raise InputError("Pass exactly one of checkpoint_index and checkpoint_value.")
    if checkpoint_index is not None:
        if not -len(steps) <= checkpoint_index < len(steps):
            raise InputError(
                f"checkpoint_index={checkpoint_index} is out of range: {name!r} has "
                f"{len(steps)} checkpoints (index 0 is step {steps[0]}, -1 is step {steps[-1]})."
            )
        return f"step{steps[checkpoint_index]}"
    if checkpoint_value not in steps:
        nearest = sorted(steps, key=lambda step: abs(step - checkpoint_value))[:3]
        raise InputError(
            f"{name!r} has no checkpoint at step {checkpoint_value}; the nearest are "
            f"{sorted(nearest)}. registry.checkpoint_steps(name) lists them all."
        )
    return f"step{checkpoint_value}"
