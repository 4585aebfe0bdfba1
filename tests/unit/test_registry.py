"""The model registry: TransformerLens's names and aliases, Pythia checkpoints, errors.

No network: `huggingface_hub.snapshot_download` is replaced by a fake that records what
it was asked for and hands back a tiny local checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import torch
import transformers

import lookingglass
from lookingglass import HookedTransformer, InputError
from lookingglass.loading import registry
from lookingglass.loading.converters import CONVERTERS

# TransformerLens 3.9 official names we do not list, and why.
NOT_LISTED = {
    "not on the Hub in Hugging Face format": (
        "llama-", "NeelNanda/", "ArthurConmy/", "Baidicoot/",
    ),
    "architecture not implemented natively (HookedAutoModel runs them)": (
        "allenai/OLMo-1B", "allenai/OLMo-7B", "allenai/Olmo-3", "allenai/OLMoE", "bigcode/",
        "facebook/hubert", "facebook/wav2vec2", "google-bert/", "google-t5/", "google/gemma-3",
        "google/medgemma", "microsoft/phi-1", "microsoft/phi-2", "openai/gpt-oss",
        "Qwen/Qwen-", "swiss-ai/",
    ),
    "GPT-2 with scale_attn_by_inverse_layer_idx, which the GPT-2 converter refuses": (
        "stanford-crfm/",
    ),
}  # fmt: skip
# TransformerLens names that are not Hub ids today, and the ids they moved to.
RENAMED = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}


def _transformer_lens_names() -> tuple[list[str], dict[str, list[str]]]:
    from transformer_lens import supported_models

    return supported_models.OFFICIAL_MODEL_NAMES, supported_models.MODEL_ALIASES


def test_every_transformer_lens_name_of_a_supported_family_resolves_with_its_aliases() -> None:
    official, aliases = _transformer_lens_names()
    excluded = tuple(prefix for prefixes in NOT_LISTED.values() for prefix in prefixes)
    listed = [name for name in official if not name.startswith(excluded)]
    assert len(listed) > 150
    for name in listed:
        expected = RENAMED.get(name, name)
        assert registry.hub_id(name) == expected, name
        for alias in aliases.get(name, []):
            assert registry.hub_id(alias) == expected, (alias, name)
    unlisted = [name for name in official if name.startswith(excluded)]
    assert not any(registry.hub_id(name) for name in unlisted)


def test_every_listed_family_has_a_converter() -> None:
    assert set(registry.OFFICIAL_MODELS) <= set(CONVERTERS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt2", "openai-community/gpt2"),
        ("gpt2-small", "openai-community/gpt2"),
        ("pythia-70m", "EleutherAI/pythia-70m"),
        ("pythia", "EleutherAI/pythia-70m"),
        ("EleutherAI/pythia-19m", "EleutherAI/pythia-70m"),
        ("neo", "EleutherAI/gpt-neo-125M"),
        ("GPT-NEO-125M", "EleutherAI/gpt-neo-125M"),
        ("gpt-j", "EleutherAI/gpt-j-6B"),
        ("opt", "facebook/opt-125m"),
        ("bloom-560m", "bigscience/bloom-560m"),
        ("stablelm-base-3b", "stabilityai/stablelm-base-alpha-3b"),
        ("stablelm-2-1_6b", "stabilityai/stablelm-2-1_6b"),
        ("mixtral", "mistralai/Mixtral-8x7B-v0.1"),
        ("Llama-3.2-1B", "meta-llama/Llama-3.2-1B"),
    ],
)
def test_aliases_resolve_to_hub_ids(name: str, expected: str) -> None:
    assert registry.hub_id(name) == expected


def test_family_of_a_name() -> None:
    assert registry.family("pythia-160m") == "gpt_neox"
    assert registry.family("TinyStories-33M") == "gpt_neo"
    assert registry.family("not-a-model") is None


def test_list_models() -> None:
    names = lookingglass.list_models()
    assert names == registry.list_models()
    assert {"openai-community/gpt2", "EleutherAI/pythia-70m", "bigscience/bloom-560m"} <= set(names)
    assert "pythia-70m" not in names  # aliases only on request
    assert "pythia-70m" in registry.list_models(aliases=True)
    assert registry.list_models(family="opt") == sorted(
        registry.OFFICIAL_MODELS["opt"], key=str.lower
    )
    with pytest.raises(InputError, match="gpt_neox"):
        registry.list_models(family="pythia")


# ------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize(
    ("name", "index", "value", "revision"),
    [
        ("pythia-70m", 0, None, "step0"),
        ("pythia-70m", 10, None, "step512"),
        ("pythia-70m", 11, None, "step1000"),
        ("EleutherAI/pythia-1.4b-deduped", -1, None, "step143000"),
        ("pythia-70m-v0", 0, None, "step1000"),
        ("pythia-160m", None, 64, "step64"),
        ("pythia-160m", None, 71000, "step71000"),
    ],
)
def test_pythia_checkpoint_to_revision(name, index, value, revision) -> None:
    assert registry.checkpoint_revision(name, index, value) == revision


def test_pythia_checkpoint_lists_are_transformer_lens_s() -> None:
    from transformer_lens import loading_from_pretrained as lp

    assert registry.PYTHIA_CHECKPOINTS == lp.PYTHIA_CHECKPOINTS
    assert registry.PYTHIA_V0_CHECKPOINTS == lp.PYTHIA_V0_CHECKPOINTS


@pytest.mark.parametrize(
    ("name", "index", "value", "message"),
    [
        ("gpt2", 3, None, "no training checkpoints"),
        ("pythia-70m", 154, None, "out of range: .* 154 checkpoints"),
        ("pythia-70m-v0", None, 512, r"nearest are \[1000, 2000, 3000\]"),
        ("pythia-70m", None, 1500, r"nearest are \[512, 1000, 2000\]"),
        ("pythia-70m", 1, 2, "exactly one"),
    ],
)
def test_bad_checkpoints_are_explained(name, index, value, message) -> None:
    with pytest.raises(InputError, match=message):
        registry.checkpoint_revision(name, index, value)


# ------------------------------------------------------------------- unknown names
def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(InputError, match="Did you mean: EleutherAI/pythia-70m") as error:
        HookedTransformer.from_pretrained("pythai-70m")
    assert "list_models()" in str(error.value)


def test_name_like_nothing_gets_no_suggestions() -> None:
    with pytest.raises(InputError) as error:
        HookedTransformer.from_pretrained("zzzzqqqq")
    assert "Did you mean" not in str(error.value)


# --------------------------------------------------------- downloading (mocked Hub)
@pytest.fixture(scope="module")
def tiny_neox(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_neox")
    config = transformers.GPTNeoXConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=16,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.GPTNeoXForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture
def hub_calls(monkeypatch, tiny_neox) -> list[dict]:
    calls: list[dict] = []

    def fake_snapshot_download(repo_id, revision=None, **kwargs):
        calls.append({"repo_id": repo_id, "revision": revision})
        return str(tiny_neox)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    return calls


@pytest.mark.parametrize(
    ("kwargs", "revision"),
    [
        ({}, None),
        ({"checkpoint_index": 5}, "step16"),
        ({"checkpoint_value": 143000}, "step143000"),
        ({"revision": "step3000"}, "step3000"),
    ],
)
def test_from_pretrained_downloads_the_right_repository_and_revision(hub_calls, kwargs, revision):
    model = HookedTransformer.from_pretrained("pythia-70m", device="cpu", **kwargs)
    assert hub_calls == [{"repo_id": "EleutherAI/pythia-70m", "revision": revision}]
    assert model.cfg.original_architecture == "GPTNeoXForCausalLM"
    assert model.cfg.model_name == "pythia-70m"


def test_revision_and_checkpoint_together_are_refused(hub_calls) -> None:
    with pytest.raises(InputError, match="not both"):
        HookedTransformer.from_pretrained("pythia-70m", revision="main", checkpoint_index=3)
    assert hub_calls == []


def test_checkpoint_of_a_local_folder_is_refused(hub_calls, tiny_neox) -> None:
    with pytest.raises(InputError, match="no training checkpoints"):
        HookedTransformer.from_pretrained(tiny_neox, checkpoint_index=3)
    assert hub_calls == []
