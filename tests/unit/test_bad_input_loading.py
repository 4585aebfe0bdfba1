"""Hostile or inconsistent checkpoints and configs (issue 17): shard paths that leave the
model folder, malformed `architectures`, a `config.json` that disagrees with its weights,
non-finite or absurd `ModelConfig` fields, and a Hub name that is not cached while
offline. Each ends in a lookingglass error naming what was wrong, raised before any
weight is read or any model is built; nothing outside the folder is ever read."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import safetensors.torch
import torch
import transformers

from lookingglass.config import ModelConfig
from lookingglass.errors import CheckpointError, ConfigError, UnsupportedArchitectureError
from lookingglass.loading import pretrained, reading
from lookingglass.loading.encoder import from_pretrained_encoder
from lookingglass.loading.pretrained import from_pretrained
from tests.conftest import save_gpt2_checkpoint

TINY_LLAMA = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=100,
    max_position_embeddings=32,
)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 (2 layers, d_model 64, 4 heads, 64 positions) with tokenizer."""
    return save_gpt2_checkpoint(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (head_dim given explicitly, grouped KV heads), no tokenizer."""
    folder = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT masked language model (2 layers), no tokenizer."""
    folder = tmp_path_factory.mktemp("bert")
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(folder)
    return folder


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edit_config(folder: Path, **changes: object) -> None:
    """Change `config.json` fields; a value of `...` removes the field."""
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not ...}
    (folder / "config.json").write_text(json.dumps(config))


def _shard(folder: Path, entry: object, write_to: Path | None = None) -> Path:
    """Move the weights into one shard written at `write_to` (default: `folder / entry`)
    and list it in `model.safetensors.index.json` as `entry`. Returns the shard's path."""
    tensors = safetensors.torch.load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    path = write_to if write_to is not None else folder / str(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": dict.fromkeys(tensors, entry)}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return path


@pytest.fixture
def nothing_is_read_or_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any weight data is read or any model is built."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights were read or a model was built before the check")

    monkeypatch.setattr(reading, "_read_safetensors", refuse)
    monkeypatch.setattr(pretrained, "_meta_model", refuse)


def _logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens)


# ------------------------------------------------------------ paths from the index
@pytest.mark.parametrize(
    ("entry", "where", "message"),
    [
        ("../outside.safetensors", "parent", "outside the checkpoint folder"),
        ("sub/../../outside.safetensors", "parent", "outside the checkpoint folder"),
        ("ABSOLUTE", "elsewhere", "not a relative path"),
        ("", None, "not a relative path"),
        (5, None, "not a relative path"),
        ("inside.safetensors", "symlink", "outside the checkpoint folder"),
    ],
)
def test_a_shard_outside_the_folder_is_refused(
    gpt2_dir, tmp_path, nothing_is_read_or_built, entry, where, message
):
    folder = _copy(gpt2_dir, tmp_path / "model")
    outside = tmp_path / "elsewhere" / "outside.safetensors"
    if entry == "ABSOLUTE":
        entry = str(outside)
    if where == "parent":  # a valid shard really is there: refused, not merely missing
        _shard(folder, entry)
    elif where == "elsewhere":
        _shard(folder, entry, write_to=outside)
    elif where == "symlink":  # the listed name is inside, but it links outside
        _shard(folder, entry, write_to=outside)
        os.symlink(outside, folder / entry)
    else:
        _shard(folder, entry, write_to=folder / "real.safetensors")
    with pytest.raises(CheckpointError, match=message) as error:
        from_pretrained(folder, device="cpu")
    assert repr(entry) in str(error.value)
    with pytest.raises(CheckpointError, match=message):
        pretrained.load_checkpoint(folder)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_file_linking_outside_the_folder_is_refused(gpt2_dir, tmp_path, monkeypatch, name):
    folder = _copy(gpt2_dir, tmp_path / "model")
    outside = tmp_path / f"outside-{name}"
    os.replace(folder / name, outside)
    os.symlink(outside, folder / name)
    monkeypatch.setattr(pretrained.transformers.AutoTokenizer, "from_pretrained", pytest.fail)
    with pytest.raises(CheckpointError, match=f"'{name}' .* outside the checkpoint folder"):
        from_pretrained(folder, device="cpu")


def test_shards_inside_the_folder_and_hub_cache_links_still_load(gpt2_dir, tmp_path):
    """A shard in a subfolder, and a Hugging Face cache snapshot whose files link into
    the repository's `blobs` folder, load and compute as the plain folder does."""
    tokens = torch.tensor([[0, 5, 9, 17, 3]])
    expected = _logits(from_pretrained(gpt2_dir, device="cpu"), tokens)

    sharded = _copy(gpt2_dir, tmp_path / "sharded")
    _shard(sharded, "sub/model-00001-of-00001.safetensors")
    torch.testing.assert_close(_logits(from_pretrained(sharded, device="cpu"), tokens), expected)

    repo = tmp_path / "hub" / "models--org--tiny"
    snapshot = repo / "snapshots" / "0123abcd"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, file in enumerate(sorted(gpt2_dir.iterdir())):
        blob = repo / "blobs" / f"blob{i}"
        shutil.copy(file, blob)
        os.symlink(Path("..", "..", "blobs", blob.name), snapshot / file.name)
    torch.testing.assert_close(_logits(from_pretrained(snapshot, device="cpu"), tokens), expected)


# ------------------------------------------------------------------ architectures
@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (dict(architectures="GPT2LMHeadModel"), ConfigError, "'architectures' must be a list"),
        (
            dict(architectures="GPT2LMHeadModel", model_type=...),
            ConfigError,
            "'architectures' must be a list",
        ),
        (dict(architectures=[3], model_type=...), ConfigError, "'architectures' must be a list"),
        (dict(architectures={"a": 1}), ConfigError, "'architectures' must be a list"),
        (
            dict(architectures=..., model_type=...),
            UnsupportedArchitectureError,
            "neither 'architectures' nor 'model_type'",
        ),
        (
            dict(architectures=["FooForCausalLM"], model_type="foo"),
            UnsupportedArchitectureError,
            "'FooForCausalLM', 'foo'",
        ),
    ],
)
def test_a_bad_architectures_field_names_the_field_and_the_families(
    gpt2_dir, tmp_path, nothing_is_read_or_built, changes, error, message
):
    folder = _copy(gpt2_dir, tmp_path / "model")
    _edit_config(folder, **changes)
    with pytest.raises(error, match=message) as raised:
        from_pretrained(folder, device="cpu")
    assert "gpt2 (GPT2LMHeadModel)" in str(raised.value)
    assert "llama (LlamaForCausalLM)" in str(raised.value)


def test_model_type_alone_still_selects_the_family(gpt2_dir, tmp_path):
    folder = _copy(gpt2_dir, tmp_path / "model")
    _edit_config(folder, architectures=...)
    assert from_pretrained(folder, device="cpu").cfg.original_architecture == "GPT2LMHeadModel"


# ------------------------------------------------ config against the weights' headers
@pytest.mark.parametrize(
    ("family", "changes", "error", "message"),
    [
        ("gpt2", dict(n_layer=5000), CheckpointError, "n_layers=5000, but its weights hold 2"),
        ("gpt2", dict(n_layer=1), CheckpointError, "n_layers=1, but its weights hold 2"),
        ("gpt2", dict(n_layer=10_000_000), ConfigError, "n_layers=10000000 is larger"),
        ("gpt2", dict(n_embd=128), CheckpointError, r"c_attn.weight: checkpoint \(64, 192\)"),
        ("gpt2", dict(vocab_size=1000), CheckpointError, r"wte.weight: checkpoint \(\d+, 64\)"),
        ("gpt2", dict(n_inner=512), CheckpointError, r"c_fc.weight: checkpoint \(64, 256\)"),
        ("gpt2", dict(n_positions=128), CheckpointError, "Shape mismatches"),
        ("llama", dict(num_hidden_layers=9), CheckpointError, "n_layers=9, but its weights hold 2"),
        ("llama", dict(num_attention_heads=8), CheckpointError, r"q_proj.weight: checkpoint"),
        ("llama", dict(num_key_value_heads=4), CheckpointError, r"k_proj.weight: checkpoint"),
        ("llama", dict(hidden_size=32), CheckpointError, "Shape mismatches"),
        ("llama", dict(vocab_size=7), CheckpointError, r"embed_tokens.weight: checkpoint"),
        ("llama", dict(rms_norm_eps=float("nan")), ConfigError, "eps must be a finite number"),
    ],
)
def test_a_config_that_disagrees_with_its_weights_fails_before_loading(
    gpt2_dir, llama_dir, tmp_path, nothing_is_read_or_built, family, changes, error, message
):
    folder = _copy(gpt2_dir if family == "gpt2" else llama_dir, tmp_path / "model")
    _edit_config(folder, **changes)
    with pytest.raises(error, match=message):
        from_pretrained(folder, device="cpu")


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (dict(num_hidden_layers=9000), CheckpointError, "n_layers=9000, but its weights hold 2"),
        (dict(hidden_size=64), CheckpointError, "Shape mismatches"),
        (dict(architectures="BertForMaskedLM"), ConfigError, "'architectures' must be a list"),
        (dict(architectures=[{"a": 1}]), ConfigError, "'architectures' must be a list"),
    ],
)
def test_an_encoder_config_that_disagrees_with_its_weights_fails_before_loading(
    bert_dir, tmp_path, monkeypatch, changes, error, message
):
    folder = _copy(bert_dir, tmp_path / "model")
    _edit_config(folder, **changes)
    monkeypatch.setattr(reading, "_read_safetensors", pytest.fail)
    with pytest.raises(error, match=message):
        from_pretrained_encoder(folder, device="cpu")


def test_a_native_checkpoint_with_a_wrong_layer_count_fails_before_loading(
    gpt2_dir, tmp_path, monkeypatch
):
    folder = tmp_path / "native"
    pretrained.save_pretrained(from_pretrained(gpt2_dir, device="cpu"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["lookingglass_config"]["n_layers"] = 9000
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(reading, "_read_safetensors", pytest.fail)
    monkeypatch.setattr(pretrained, "_meta_model", pytest.fail)
    with pytest.raises(CheckpointError, match="n_layers=9000, but its weights hold 2"):
        from_pretrained(folder, device="cpu")


# ------------------------------------------------------------- ModelConfig numbers
SMALL = dict(n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=10)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eps", math.nan, "eps must be a finite number, positive"),
        ("eps", math.inf, "eps must be a finite number, positive"),
        ("eps", 0.0, "eps must be a finite number, positive"),
        ("eps", -1e-5, "eps must be a finite number, positive"),
        ("eps", "1e-5", "eps must be a finite number"),
        ("init_range", math.nan, "init_range must be a finite number, non-negative"),
        ("init_range", -0.5, "init_range must be a finite number, non-negative"),
        ("attn_scale", math.nan, "attn_scale must be a finite number, positive"),
        ("attn_scale", 0.0, "attn_scale must be a finite number, positive"),
        ("rotary_base", math.nan, "rotary_base must be a finite number, positive"),
        ("rotary_base", -10000.0, "rotary_base must be a finite number, positive"),
        ("attn_scores_soft_cap", math.inf, "attn_scores_soft_cap must be a finite number"),
        ("output_logits_soft_cap", 0.0, "output_logits_soft_cap must be a finite number"),
        ("n_ctx", 0, "n_ctx must be a positive integer"),
        ("n_ctx", 4.0, "n_ctx must be a positive integer"),
        ("d_head", 0, "d_head must be a positive integer"),
        ("d_head", -4, "d_head must be a positive integer"),
        ("n_heads", 0, "n_heads must be a positive integer"),
        ("n_layers", True, "n_layers must be a positive integer"),
        ("d_mlp", 0, "d_mlp must be a positive integer"),
        ("d_vocab", 0, "d_vocab must be a positive integer"),
        ("d_vocab_out", -2, "d_vocab_out must be a positive integer"),
        ("n_key_value_heads", 0, "n_key_value_heads must be a positive integer"),
        ("window_size", 0, "window_size must be a positive integer"),
        ("n_layers", 10_000_000, "n_layers=10000000 is larger than any real model's"),
        ("d_model", 2**21, "d_model=2097152 is larger than any real model's"),
        ("d_vocab", 10**9, "d_vocab=1000000000 is larger than any real model's"),
    ],
)
def test_a_bad_numeric_config_field_is_named(field, value, message):
    extra = {"positional_embedding_type": "rotary"} if field == "rotary_base" else {}
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**{**SMALL, **extra, field: value})


@pytest.mark.parametrize(
    "changes",
    [
        dict(init_range=0.0),
        dict(attn_scores_soft_cap=-1.0, output_logits_soft_cap=30.0),
        dict(d_vocab=-1),
        dict(attn_only=True),
        dict(eps=1),
        dict(n_layers=10_000),
    ],
)
def test_edge_values_that_are_valid_are_accepted(changes):
    ModelConfig(**{**SMALL, **changes})


def test_a_bad_override_fails_before_loading(gpt2_dir, nothing_is_read_or_built):
    with pytest.raises(ConfigError, match="eps must be a finite number"):
        from_pretrained(gpt2_dir, device="cpu", eps=float("nan"))


# -------------------------------------------------------------- the Hub, offline
@pytest.mark.parametrize("name", ["nosuchorg/nosuchmodel", "gpt2"])
def test_a_hub_name_not_cached_offline_says_so_and_how_to_load_a_folder(
    name, monkeypatch, tmp_path
):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)  # so that "gpt2" is not a folder here
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache") as error:
        from_pretrained(name, device="cpu")
    assert "from_pretrained('/path/to/folder')" in str(error.value)
