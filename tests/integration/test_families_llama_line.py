"""The Llama line of families, loaded natively, against Hugging Face's implementations.

For each family a tiny random `transformers` model is built from its config with the
family's features switched on (grouped-query attention, Llama 3 rope scaling with a short
original context, sliding windows shorter than the test sequence, soft-capping that
bites, two of four experts per token, ...), saved with `save_pretrained` and loaded by
path. We check, in float32 with Hugging Face's eager attention:

* unprocessed: logits within 1e-4, and every layer's `hook_resid_post` equals the
  output of Hugging Face's decoder layer (and `output_hidden_states`, whose last entry
  is *after* the final norm);
* processed with the family's default processing: log-probabilities within 1e-4;
* the residual-stream identities within 1e-5;
* greedy generation with the KV cache equals Hugging Face's `generate`;
* Llama: every activation equals TransformerLens 3.x's on the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from lookingglass import HookedTransformer
from lookingglass.errors import ConfigError
from tests._helpers import (
    assert_close,
    make_tokenizer,
    max_abs_diff,
    one_cpu_thread,
    random_tokens,
)

pytestmark = pytest.mark.filterwarnings("ignore")

LOGIT_ATOL, IDENTITY_ATOL = 1e-4, 1e-5
BATCH, POS = 2, 20
# Small everywhere; 4 query heads sharing 2 key/value heads unless a family says otherwise.
TINY = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
)
WINDOW = 5  # shorter than POS and than prompt + generated tokens


@dataclass(frozen=True)
class Family:
    """A `transformers` config and model class and the config fields of the test model."""

    config_class: type
    model_class: type
    config: dict[str, Any] = field(default_factory=dict)
    norm_weight_center: float = 1.0  # Gemma stores RMSNorm weights as w - 1

    def build(self, vocab_size: int) -> transformers.PreTrainedModel:
        config = self.config_class(**{**TINY, **self.config}, vocab_size=vocab_size)
        return self.model_class(config).eval()


FAMILIES = {
    "llama": Family(
        transformers.LlamaConfig,
        transformers.LlamaForCausalLM,
        dict(
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=8,
            ),
        ),
    ),
    "mistral": Family(
        transformers.MistralConfig, transformers.MistralForCausalLM, dict(sliding_window=WINDOW)
    ),
    "mixtral": Family(
        transformers.MixtralConfig,
        transformers.MixtralForCausalLM,
        dict(num_local_experts=4, num_experts_per_tok=2, intermediate_size=48),
    ),
    "qwen2": Family(
        transformers.Qwen2Config,
        transformers.Qwen2ForCausalLM,
        # Layer 0 global, layer 1 local; q, k, v biases always.
        dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),
    ),
    "qwen3": Family(
        transformers.Qwen3Config,
        transformers.Qwen3ForCausalLM,
        dict(head_dim=24, rope_theta=1000.0),  # head_dim != hidden_size / heads
    ),
    "gemma": Family(
        transformers.GemmaConfig,
        transformers.GemmaForCausalLM,
        dict(head_dim=24, num_key_value_heads=1),
        norm_weight_center=0.0,
    ),
    "gemma2": Family(
        transformers.Gemma2Config,
        transformers.Gemma2ForCausalLM,
        dict(
            num_hidden_layers=3,  # local, global, local
            sliding_window=WINDOW,
            query_pre_attn_scalar=20,
            attn_logit_softcapping=2.0,
            final_logit_softcapping=3.0,
        ),
        norm_weight_center=0.0,
    ),
    "phi3": Family(
        transformers.Phi3Config,
        transformers.Phi3ForCausalLM,
        dict(partial_rotary_factor=0.5, sliding_window=WINDOW, pad_token_id=0),
    ),
    "olmo2": Family(transformers.Olmo2Config, transformers.Olmo2ForCausalLM, dict(pad_token_id=0)),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@torch.no_grad()
def randomize(model: torch.nn.Module, norm_weight_center: float, seed: int = 0) -> None:
    """Weights of a scale that makes every part matter (Hugging Face's init is tiny):
    unit-variance projections times 1.5, so attention scores reach the soft cap; norm
    weights around 1 (stored around 0 for Gemma); biases 0.1."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if "norm" in name:
            param.copy_(norm_weight_center + 0.2 * noise)
        elif param.ndim >= 2:
            param.copy_(1.5 * noise / param.shape[-1] ** 0.5)
        else:
            param.copy_(0.1 * noise)


_CHECKPOINTS: dict[str, tuple[str, Path, transformers.PreTrainedModel]] = {}


def checkpoint(name: str, tmp_path_factory) -> tuple[str, Path, transformers.PreTrainedModel]:
    """(name, checkpoint folder, Hugging Face model loaded from it with eager attention),
    built once per session."""
    if name not in _CHECKPOINTS:
        spec = FAMILIES[name]
        tokenizer = make_tokenizer()
        torch.manual_seed(0)
        model = spec.build(len(tokenizer))
        randomize(model, spec.norm_weight_center)
        # A neutral folder name: TransformerLens picks an architecture from "llama" in a path.
        folder = tmp_path_factory.mktemp("checkpoint")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
        _CHECKPOINTS[name] = (name, folder, hf.eval())
    return _CHECKPOINTS[name]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory) -> tuple[str, Path, transformers.PreTrainedModel]:
    """Each family's checkpoint in turn (see `checkpoint`)."""
    return checkpoint(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return random_tokens(BATCH, POS, d_vocab=len(make_tokenizer()), seed=1)


def _load(folder: Path, processed: bool) -> HookedTransformer:
    """Our model for a folder, with the default processing or none."""
    if processed:
        return HookedTransformer.from_pretrained(folder, device="cpu")
    return HookedTransformer.from_pretrained_no_processing(folder, device="cpu")


def _hf_layer_outputs(hf: transformers.PreTrainedModel, tokens: torch.Tensor):
    """Hugging Face's logits, `output_hidden_states`, and each decoder layer's output."""
    outputs = []

    def record(module, args, out):
        outputs.append(out[0] if isinstance(out, tuple) else out)

    handles = [layer.register_forward_hook(record) for layer in hf.model.layers]
    try:
        with torch.no_grad():
            result = hf(tokens, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    return result.logits, result.hidden_states, outputs


def test_unprocessed_matches_hugging_face(family, tokens):
    name, folder, hf = family
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    hf_logits, hidden_states, layer_outputs = _hf_layer_outputs(hf, tokens)
    diff = assert_close(logits, hf_logits, LOGIT_ATOL, f"{name} logits")
    print(f"\n{name}: max |logits - HF logits| = {diff:.2e}")
    n_layers = model.cfg.n_layers
    assert len(layer_outputs) == n_layers and len(hidden_states) == n_layers + 1
    assert_close(cache["hook_embed"], hidden_states[0], LOGIT_ATOL, f"{name} embed")
    for layer in range(n_layers):
        resid_post = cache["resid_post", layer]
        assert_close(resid_post, layer_outputs[layer], LOGIT_ATOL, f"{name} resid_post {layer}")
        if layer < n_layers - 1:
            assert_close(resid_post, hidden_states[layer + 1], LOGIT_ATOL, f"{name} hidden {layer}")
    # Hugging Face's last hidden state is after the final norm.
    with torch.no_grad():
        final = hf.model.norm(cache["resid_post", n_layers - 1])
    assert_close(final, hidden_states[-1], LOGIT_ATOL, f"{name} last hidden state")


def test_processed_matches_hugging_face(family, tokens):
    name, folder, hf = family
    model = HookedTransformer.from_pretrained(folder, device="cpu")
    assert model.cfg.normalization_type == "RMSPre"  # the norms were folded
    with torch.no_grad():
        log_probs = model(tokens).log_softmax(-1)
        hf_log_probs = hf(tokens).logits.log_softmax(-1)
    diff = assert_close(log_probs, hf_log_probs, LOGIT_ATOL, f"{name} processed log-probs")
    print(f"\n{name}: processed, max |log-probs - HF| = {diff:.2e}")


def test_residual_stream_identities(family, tokens):
    name, folder, _ = family
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    model.set_use_attn_result(True)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    for layer in range(model.cfg.n_layers):
        block = model.blocks[layer]
        resid_mid, attn_out = cache["resid_mid", layer], cache["attn_out", layer]
        assert_close(resid_mid, cache["resid_pre", layer] + attn_out, IDENTITY_ATOL, name)
        mlp_out = cache["mlp_out", layer]
        assert_close(cache["resid_post", layer], resid_mid + mlp_out, IDENTITY_ATOL, name)
        heads_sum = cache["result", layer].sum(-2) + block.attn.b_O
        # With a norm after attention (Gemma 2, OLMo 2) attn_out is that norm of the sum.
        assert_close(block.ln1_post(heads_sum), attn_out, IDENTITY_ATOL, f"{name} heads")


def test_generation_matches_hugging_face(family, tokens):
    name, folder, hf = family
    model = HookedTransformer.from_pretrained(folder, device="cpu")
    prompt = tokens[:1, :6]  # 6 + 6 new tokens: longer than the sliding windows
    with torch.no_grad():
        expected = hf.generate(
            prompt, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0
        )
    generated = model.generate(
        prompt,
        max_new_tokens=6,
        do_sample=False,
        stop_at_eos=False,
        verbose=False,
        use_past_kv_cache=True,
    )
    assert generated.tolist() == expected.tolist(), name


# Switching a family's feature off changes the logits: the tests above exercise it.
FEATURES_OFF = {
    "llama": dict(rope_scaling=None),
    "mistral": dict(window_size=None),
    "mixtral": dict(experts_per_token=1),
    "qwen2": dict(window_size=None, attn_types=None),
    "gemma2": dict(attn_scores_soft_cap=-1.0, output_logits_soft_cap=-1.0),
    "phi3": dict(window_size=None),
}


@pytest.mark.parametrize("name", sorted(FEATURES_OFF))
def test_the_features_matter(name, tmp_path_factory, tokens):
    _, folder, hf = checkpoint(name, tmp_path_factory)
    model = HookedTransformer.from_pretrained_no_processing(
        folder, device="cpu", **FEATURES_OFF[name]
    )
    with torch.no_grad():
        assert max_abs_diff(model(tokens), hf(tokens).logits) > 1e-2


def test_mixtral_routing_and_expert_hooks(tmp_path_factory, tokens):
    from lookingglass.loading.converters import mixtral

    _, folder, hf = checkpoint("mixtral", tmp_path_factory)
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        router_logits = hf(tokens, output_router_logits=True).router_logits
    n_experts = model.cfg.num_experts
    for layer, logits in enumerate(router_logits):
        expert_weights = cache[f"blocks.{layer}.mlp.hook_expert_weights"].reshape(-1, n_experts)
        assert_close(expert_weights, logits.softmax(-1), LOGIT_ATOL, f"router {layer}")
        chosen = cache[f"blocks.{layer}.mlp.hook_expert_indices"]
        routed = sum(
            cache[f"blocks.{layer}.mlp.experts.{e}.hook_post"].shape[0] for e in range(n_experts)
        )
        assert chosen.shape[-1] == 2 and routed == chosen.numel()  # each token to 2 experts
    # transformers 5 keeps the experts fused in memory; that layout loads the same.
    fused = mixtral.state_dict_from_hf(hf.state_dict(), model.cfg, hf.config.to_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(fused[key], value), key


def test_gemma_bfloat16_checkpoint_loads_in_float32(tmp_path_factory, tokens):
    """Gemma's stored `w - 1` and its embedding scale are applied in float32, as Hugging
    Face does when it loads a bfloat16 checkpoint in float32."""
    _, fp32_folder, _ = checkpoint("gemma", tmp_path_factory)
    folder = tmp_path_factory.mktemp("checkpoint_bf16")
    load = transformers.AutoModelForCausalLM.from_pretrained
    load(fp32_folder, dtype=torch.bfloat16).save_pretrained(folder)
    reloaded = load(folder, dtype=torch.float32, attn_implementation="eager")
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    with torch.no_grad():
        assert_close(model(tokens), reloaded(tokens).logits, LOGIT_ATOL, "bf16 checkpoint")


@pytest.mark.parametrize("processed", [False, True], ids=["raw", "processed"])
def test_llama_exports_to_hugging_face(tmp_path_factory, tokens, processed):
    _, folder, hf = checkpoint("llama", tmp_path_factory)
    exported = _load(folder, processed).to_hf()
    assert type(exported) is transformers.LlamaForCausalLM
    with torch.no_grad():
        log_probs = exported(tokens).logits.log_softmax(-1)
        expected = hf(tokens).logits.log_softmax(-1)
    assert_close(log_probs, expected, LOGIT_ATOL, "exported log-probs")


def test_export_refuses_what_it_cannot_express(tmp_path_factory):
    from lookingglass.loading import to_hf

    _, folder, _ = checkpoint("gemma2", tmp_path_factory)
    model = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    with pytest.raises(ConfigError, match="soft_cap"):
        to_hf(model, "LlamaForCausalLM")
    with pytest.raises(ConfigError, match="Gemma2ForCausalLM is not implemented"):
        model.to_hf()


# ------------------------------------------------------------------ TransformerLens
@pytest.mark.parametrize("processed", [False, True], ids=["raw", "processed"])
def test_llama_matches_transformer_lens(tmp_path_factory, build_tl_model, tokens, processed):
    _, folder, _ = checkpoint("llama", tmp_path_factory)
    # TransformerLens's processing as ours: it cannot center RMS models' writing weights.
    tl_model = build_tl_model(
        folder,
        fold_ln=processed,
        center_writing_weights=False,
        center_unembed=processed,
        fold_value_biases=processed,
    )
    model = _load(folder, processed)
    with torch.no_grad():
        tl_logits, tl_cache = tl_model.run_with_cache(tokens)
        logits, cache = model.run_with_cache(tokens)
    assert_close(logits, tl_logits, LOGIT_ATOL, "logits")
    shared = set(cache.keys()) & set(tl_cache.keys())
    assert set(cache.keys()) - shared == set()  # TransformerLens has every hook we have
    assert set(tl_cache.keys()) - shared == set()  # and we have every hook it has
    diffs = {}
    for name in shared:
        theirs = tl_cache[name]
        diffs[name] = max_abs_diff(cache[name], theirs)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= LOGIT_ATOL, f"{worst}: max abs diff {diffs[worst]:.3g}"
    print(f"\nllama vs TransformerLens ({len(diffs)} hooks): max abs diff {diffs[worst]:.2e}")


# ---------------------------------------------------------------------- refusals
def test_rms_models_refuse_centering(family):
    _, folder, _ = family
    with pytest.raises(ConfigError, match="center_writing_weights"):
        HookedTransformer.from_pretrained(folder, device="cpu", center_writing_weights=True)


def test_unsupported_config_fields_are_named(tmp_path):
    hf = FAMILIES["llama"].build(50)
    hf.config.mlp_bias = True
    from lookingglass.loading.converters import llama

    with pytest.raises(ConfigError, match="mlp_bias"):
        llama.config_from_hf(hf.config.to_dict())
    config = {**hf.config.to_dict(), "mlp_bias": False}
    config["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}
    with pytest.raises(ConfigError, match="yarn"):
        llama.config_from_hf(config)
