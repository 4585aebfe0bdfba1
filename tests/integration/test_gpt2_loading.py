"""Loading GPT-2 checkpoints: parity with Hugging Face and TransformerLens on the same
weights, every checkpoint layout, clear errors for broken checkpoints, and memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import transformers

from lookingglass import (
    CheckpointError,
    ConfigError,
    HookedTransformer,
    InputError,
    UnsupportedArchitectureError,
)
from lookingglass.loading import list_models, load_checkpoint, registry, resolve
from tests._helpers import assert_close, random_tokens

LOGIT_ATOL = 1e-4
PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def hf_model(tiny_gpt2_dir):
    return transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).eval()


@pytest.fixture(scope="module")
def raw(tiny_gpt2_dir):
    return HookedTransformer.from_pretrained_no_processing(tiny_gpt2_dir, device="cpu")


@pytest.fixture(scope="module")
def tokens(raw):
    return torch.cat([raw.to_tokens(PROMPT), random_tokens(1, 13, raw.cfg.d_vocab, seed=5)], 1)


def _copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- parity
def test_unprocessed_logits_match_hugging_face(raw, hf_model, tokens):
    with torch.no_grad():
        assert_close(raw(tokens), hf_model(tokens).logits, LOGIT_ATOL, "logits")
    assert raw.cfg.normalization_type == "LN"
    assert raw.tokenizer is not None and raw.cfg.original_architecture == "GPT2LMHeadModel"


def test_residual_stream_matches_hugging_face_hidden_states(raw, hf_model, tokens):
    with torch.no_grad():
        _, cache = raw.run_with_cache(tokens)
        hidden = hf_model(tokens, output_hidden_states=True).hidden_states
    n_layers = raw.cfg.n_layers
    assert len(hidden) == n_layers + 1
    assert_close(cache["blocks.0.hook_resid_pre"], hidden[0], 1e-5, "embeddings")
    for layer in range(n_layers - 1):
        assert_close(cache[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1], 1e-4, "resid")
    # Hugging Face's last hidden state is taken after its final LayerNorm (ln_f).
    ln_f = raw.ln_final
    normalized = cache["ln_final.hook_normalized"]  # before ln_f's weight and bias
    assert_close(normalized * ln_f.w + ln_f.b, hidden[-1], 1e-4, "after ln_f")
    with torch.no_grad():
        after_ln_f = raw.ln_final(cache[f"blocks.{n_layers - 1}.hook_resid_post"])
    assert_close(after_ln_f, hidden[-1], 1e-4, "last resid_post through ln_final")


@pytest.mark.parametrize("refactor", [False, True])
def test_processed_log_probs_match_hugging_face(tiny_gpt2_dir, hf_model, tokens, refactor):
    model = HookedTransformer.from_pretrained(
        tiny_gpt2_dir, device="cpu", refactor_factored_attn_matrices=refactor
    )
    assert model.cfg.normalization_type == "LNPre"
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
        theirs = hf_model(tokens).logits.log_softmax(-1)
    assert_close(ours, theirs, LOGIT_ATOL, "log-probs")


PROCESSING = [
    {},
    {"refactor_factored_attn_matrices": True},
    {
        "fold_ln": False,
        "center_writing_weights": False,
        "center_unembed": False,
        "fold_value_biases": False,
    },
    {"fold_ln": False},
    {"center_unembed": False, "fold_value_biases": False},
]


@pytest.mark.parametrize(
    "flags", PROCESSING, ids=["default", "refactor", "none", "no_fold", "no_unembed_center"]
)
def test_weights_and_logits_match_transformer_lens(tiny_gpt2_dir, build_tl_model, tokens, flags):
    ours = HookedTransformer.from_pretrained(tiny_gpt2_dir, device="cpu", **flags)
    tl = build_tl_model(tiny_gpt2_dir, **flags)
    theirs = tl.state_dict()
    ours_sd = ours.state_dict()
    assert set(ours_sd) <= set(theirs)
    assert {k for k in set(theirs) - set(ours_sd) if not k.endswith((".mask", ".IGNORE"))} == set()
    for key, value in ours_sd.items():
        assert_close(value, theirs[key], 1e-6, key)
    with torch.no_grad():
        assert_close(ours(tokens), tl(tokens), LOGIT_ATOL, "logits vs TransformerLens")


# -------------------------------------------------------------------- checkpoint layouts
def _logits(model, tokens):
    with torch.no_grad():
        return model(tokens)


def test_pytorch_bin_checkpoint(tiny_gpt2_dir, raw, tokens, tmp_path):
    folder = _copy_folder(tiny_gpt2_dir, tmp_path / "bin")
    weights = safetensors.torch.load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(
        {
            f"transformer.{k}" if not k.startswith("transformer.") else k: v
            for k, v in weights.items()
        },
        folder / "pytorch_model.bin",
    )
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    assert_close(_logits(model, tokens), _logits(raw, tokens), 0.0, "bin vs safetensors")


def test_sharded_safetensors_and_unprefixed_keys(tiny_gpt2_dir, hf_model, raw, tokens, tmp_path):
    folder = tmp_path / "sharded"
    hf_model.save_pretrained(folder, max_shard_size="40KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(tiny_gpt2_dir / name, folder / name)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    assert_close(_logits(model, tokens), _logits(raw, tokens), 0.0, "sharded")

    # A GPT2Model-style checkpoint: no "transformer." prefix, old causal-mask buffers.
    plain = _copy_folder(tiny_gpt2_dir, tmp_path / "plain")
    weights = safetensors.torch.load_file(plain / "model.safetensors")
    weights = {k.removeprefix("transformer."): v for k, v in weights.items()}
    weights["h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
    weights["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    safetensors.torch.save_file(weights, plain / "model.safetensors")
    model = HookedTransformer.from_pretrained_no_processing(plain, device="cpu")
    assert_close(_logits(model, tokens), _logits(raw, tokens), 0.0, "unprefixed")


def test_untied_unembedding(tiny_gpt2_dir, tokens, tmp_path):
    folder = _copy_folder(tiny_gpt2_dir, tmp_path / "untied")
    config = json.loads((folder / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (folder / "config.json").write_text(json.dumps(config))
    weights = safetensors.torch.load_file(folder / "model.safetensors")
    weights["lm_head.weight"] = torch.randn_like(weights["transformer.wte.weight"])
    safetensors.torch.save_file(weights, folder / "model.safetensors")
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    with torch.no_grad():
        assert_close(model(tokens), hf(tokens).logits, LOGIT_ATOL, "untied logits")


def test_loaded_parameters_are_independent(raw):
    # Tied in the checkpoint, separate in the model: editing W_E must not move W_U.
    assert raw.W_E.untyped_storage().data_ptr() != raw.W_U.untyped_storage().data_ptr()
    assert torch.equal(raw.W_E, raw.W_U.T)


def test_overrides(tiny_gpt2_dir):
    model = HookedTransformer.from_pretrained(
        tiny_gpt2_dir, device="cpu", n_ctx=32, dtype="bfloat16", default_prepend_bos=False
    )
    assert model.cfg.n_ctx == 32 and model.W_pos.shape == (32, 64)
    assert model.W_E.dtype == torch.bfloat16 and not model.cfg.default_prepend_bos
    with pytest.raises(ConfigError, match="n_layer"):
        HookedTransformer.from_pretrained(tiny_gpt2_dir, n_layer=3)


# ---------------------------------------------------------------------------- errors
def test_corrupt_safetensors_names_the_file(tiny_gpt2_dir, tmp_path):
    folder = _copy_folder(tiny_gpt2_dir, tmp_path / "corrupt")
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated download
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt or truncated"):
        HookedTransformer.from_pretrained(folder)
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(folder)


def _edit_weights(folder: Path, edit) -> None:
    weights = safetensors.torch.load_file(folder / "model.safetensors")
    edit(weights)
    safetensors.torch.save_file(weights, folder / "model.safetensors")


def test_missing_and_unexpected_keys_are_listed(tiny_gpt2_dir, tmp_path):
    folder = _copy_folder(tiny_gpt2_dir, tmp_path / "keys")

    def edit(weights):
        del weights["transformer.h.1.mlp.c_fc.bias"]
        weights["transformer.h.1.mlp.extra.weight"] = torch.zeros(3)

    _edit_weights(folder, edit)
    with pytest.raises(CheckpointError) as error:
        HookedTransformer.from_pretrained(folder)
    message = str(error.value)
    assert "Missing keys (1): h.1.mlp.c_fc.bias" in message
    assert "Unexpected keys (1): h.1.mlp.extra.weight" in message


def test_shape_mismatch_is_listed(tiny_gpt2_dir, tmp_path):
    folder = _copy_folder(tiny_gpt2_dir, tmp_path / "shape")
    config = json.loads((folder / "config.json").read_text())
    config["n_inner"] = 128  # the weights have d_mlp 256
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"h\.0\.mlp\.c_fc\.weight: checkpoint \(64, 256\)"):
        HookedTransformer.from_pretrained(folder)


def test_native_checkpoint_with_wrong_keys_is_listed(raw, tmp_path):
    folder = raw.save_pretrained(tmp_path / "native")
    _edit_weights(folder, lambda w: w.pop("blocks.0.attn.W_Q"))
    with pytest.raises(CheckpointError, match=r"Missing keys \(1\): blocks\.0\.attn\.W_Q"):
        HookedTransformer.from_pretrained(folder)


def test_unknown_architecture_lists_supported(tiny_gpt2_dir, tmp_path):
    folder = _copy_folder(tiny_gpt2_dir, tmp_path / "llama")
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["MambaForCausalLM"], model_type="mamba")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError) as error:
        HookedTransformer.from_pretrained(folder)
    assert "MambaForCausalLM" in str(error.value)
    assert "GPT2LMHeadModel" in str(error.value) and "HookedAutoModel" in str(error.value)


def test_unsupported_config_value_names_the_field(tiny_gpt2_dir, tmp_path):
    folder = _copy_folder(tiny_gpt2_dir, tmp_path / "scaled")
    config = json.loads((folder / "config.json").read_text())
    config["scale_attn_by_inverse_layer_idx"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="scale_attn_by_inverse_layer_idx"):
        HookedTransformer.from_pretrained(folder)


def test_folder_without_config_or_weights(tiny_gpt2_dir, tmp_path):
    with pytest.raises(CheckpointError, match="No config.json"):
        load_checkpoint(tmp_path)
    folder = _copy_folder(tiny_gpt2_dir, tmp_path / "noweights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="No weights in .*model.safetensors"):
        load_checkpoint(folder)


# ------------------------------------------------------------------ names and folders
def test_registry_and_resolve(tiny_gpt2_dir, monkeypatch):
    assert "openai-community/gpt2" in list_models()
    assert {"gpt2", "gpt2-small", "gpt2-xl", "distilgpt2"} <= set(list_models(aliases=True))
    assert registry.hub_id("GPT2-Small") == "openai-community/gpt2"
    assert resolve(tiny_gpt2_dir) == tiny_gpt2_dir
    with pytest.raises(InputError, match="not-a-model.*list_models"):
        resolve("not-a-model")

    # The Hub path, without the network: snapshot_download is replaced.
    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=()):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        return str(tiny_gpt2_dir)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_download)
    assert resolve("gpt2", revision="main") == tiny_gpt2_dir
    assert calls[0][:2] == ("openai-community/gpt2", "main")
    assert "model.safetensors" in calls[0][2] and "tokenizer.json" in calls[0][2]
    model = HookedTransformer.from_pretrained_no_processing("gpt2", device="cpu")
    assert model.cfg.model_name == "gpt2" and model.cfg.tokenizer_name == "openai-community/gpt2"


def test_native_round_trip_keeps_processing(tiny_gpt2_dir, tokens, tmp_path):
    model = HookedTransformer.from_pretrained(tiny_gpt2_dir, device="cpu")
    folder = model.save_pretrained(tmp_path / "saved")
    assert json.loads((folder / "config.json").read_text())["lookingglass_config"]
    loaded = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    assert loaded.cfg == model.cfg
    assert_close(_logits(loaded, tokens), _logits(model, tokens), 0.0, "native round trip")
    # Saving again replaces the folder as a whole; nothing else is left beside it.
    model.save_pretrained(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


# -------------------------------------------------------------------------- memory
# Run in a fresh process: resident memory there follows what loading allocates, not what
# earlier tests left to the allocator.
MEMORY_PROBE = """
import ctypes, gc, sys
from pathlib import Path
from lookingglass import HookedTransformer

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024

HookedTransformer.from_pretrained(sys.argv[2], device="cpu")  # lazy imports happen here
libc = ctypes.CDLL("libc.so.6")
libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD fixed: big blocks are returned when freed
gc.collect()
libc.malloc_trim(0)
Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
before = status("VmRSS")
model = HookedTransformer.from_pretrained(sys.argv[1], device="cpu")
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(status("VmHWM") - before, weights)
"""


def _save_random_gpt2(folder: Path, **config) -> Path:
    """A random GPT-2 checkpoint written directly (no Hugging Face initialization: fast)."""
    hf_config = transformers.GPT2Config(**config, architectures=["GPT2LMHeadModel"])
    with torch.device("meta"):
        shapes = transformers.GPT2LMHeadModel(hf_config).state_dict()
    weights = {k: 0.02 * torch.randn(v.shape) for k, v in shapes.items() if k != "lm_head.weight"}
    folder.mkdir()
    safetensors.torch.save_file(weights, folder / "model.safetensors")
    hf_config.save_pretrained(folder)
    return folder


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_loading_peak_memory_is_about_one_copy(tmp_path):
    gpt2 = dict(vocab_size=1000, n_positions=128, bos_token_id=0, eos_token_id=0)
    big = _save_random_gpt2(tmp_path / "big", n_layer=4, n_embd=768, n_head=12, **gpt2)
    small = _save_random_gpt2(tmp_path / "small", n_layer=1, n_embd=64, n_head=4, **gpt2)
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(big), str(small)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    peak, weights = map(int, result.stdout.split()[-2:])
    print(f"peak extra memory {peak / 2**20:.0f} MiB for {weights / 2**20:.0f} MiB of weights")
    assert weights > 100 * 2**20
    # Loading through a Hugging Face model and copying (TransformerLens) takes over 3x.
    assert peak < 1.3 * weights, f"loading took {peak / weights:.2f}x the weights' memory"
