"""GPT-Neo, GPT-J, GPT-NeoX/Pythia, OPT, BLOOM and StableLM against Hugging Face.

Each family is a tiny random `transformers` model built from its config with the
family's special features switched on (local attention with a window shorter than the
input, partial rotary, parallel blocks, ALiBi with 6 heads, grouped-query attention),
saved with `save_pretrained` and loaded by path. Hugging Face runs with eager attention
in float32. GPT-Neo and GPT-NeoX are also compared hook by hook with TransformerLens.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import transformers

from lookingglass import CheckpointError, ConfigError, HookedTransformer
from lookingglass.loading.converters import bloom, gpt_neox, gptj, opt, stablelm
from tests._helpers import assert_close

VOCAB, N_CTX, SEQ = 96, 32, 12
ATOL_LOGITS, ATOL_IDENTITY = 1e-4, 1e-5
ROPE = {"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.25}


@dataclasses.dataclass(frozen=True)
class Case:
    config_class: type
    fields: dict[str, Any]
    parallel: bool = False
    positions_from_mask: bool = False  # Hugging Face counts positions over real tokens


_NEOX = dict(
    max_position_embeddings=N_CTX,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=96,
    rope_parameters=ROPE,
)
# TransformerLens 3.9 does not read GPT-NeoX's rope_theta (it keeps 10000, Pythia's), so the
# GPT-NeoX cases keep it there; StableLM covers another base.
_NEOX_TL = dict(_NEOX, rope_parameters={**ROPE, "rope_theta": 10000.0})
CASES = {
    "gpt_neo": Case(
        transformers.GPTNeoConfig,
        dict(
            max_position_embeddings=N_CTX,
            hidden_size=64,
            num_layers=3,
            num_heads=4,
            attention_types=[[["local", "global"], 1], [["local"], 1]],
            window_size=4,
        ),
    ),
    "gptj": Case(
        transformers.GPTJConfig,
        dict(n_positions=N_CTX, n_embd=64, n_layer=2, n_head=4, rotary_dim=8),
        parallel=True,
    ),
    "gpt_neox_parallel": Case(
        transformers.GPTNeoXConfig, dict(_NEOX_TL, use_parallel_residual=True), parallel=True
    ),
    "gpt_neox_sequential": Case(
        transformers.GPTNeoXConfig, dict(_NEOX_TL, use_parallel_residual=False)
    ),
    "opt": Case(
        transformers.OPTConfig,
        dict(
            max_position_embeddings=N_CTX,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=96,
            word_embed_proj_dim=64,
            pad_token_id=1,
            do_layer_norm_before=True,
        ),
        positions_from_mask=True,
    ),
    "bloom": Case(
        transformers.BloomConfig,
        dict(hidden_size=60, n_layer=2, n_head=6),  # 6 heads: not a power of two
        positions_from_mask=True,
    ),
    "stablelm": Case(
        transformers.StableLmConfig,
        dict(_NEOX, num_key_value_heads=2, use_qkv_bias=True, use_parallel_residual=False),
    ),
    "stablelm_parallel": Case(
        transformers.StableLmConfig,
        dict(_NEOX, num_key_value_heads=2, use_qkv_bias=False, use_parallel_residual=True),
        parallel=True,
    ),
}


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter random and of a sensible scale, norms around gain 1: Hugging Face's
    initialization (zero biases, unit norms, tiny weights) would leave bias handling
    untested and logits nearly flat."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    norm_gains = {id(norm.weight) for norm in norms if norm.weight is not None}
    for param in model.parameters():
        noise = torch.randn(param.shape, generator=generator)
        if id(param) in norm_gains:
            param.copy_(1 + 0.2 * noise)
        else:
            param.copy_((0.2 if param.ndim == 2 else 0.1) * noise)


def save_family(folder: Path, case: Case, **changes: Any) -> Path:
    """A random model of `case` (with config `changes`) saved to `folder`."""
    config = case.config_class(
        vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, **{**case.fields, **changes}
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    randomize(model)
    model.save_pretrained(folder)
    return folder


@dataclasses.dataclass
class Family:
    name: str
    case: Case
    folder: Path
    hf: transformers.PreTrainedModel
    raw: HookedTransformer
    processed: HookedTransformer


@pytest.fixture(scope="module", params=list(CASES))
def family(request, tmp_path_factory) -> Family:
    case = CASES[request.param]
    folder = save_family(tmp_path_factory.mktemp(request.param), case)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    raw = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    processed = HookedTransformer.from_pretrained(folder, device="cpu")
    return Family(request.param, case, folder, hf.eval(), raw.eval(), processed.eval())


def tokens(batch: int = 2, seq: int = SEQ, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def hf_block_outputs(
    hf: transformers.PreTrainedModel, input_ids: torch.Tensor
) -> list[torch.Tensor]:
    """What each Hugging Face decoder layer returns (its residual stream output)."""
    layers = next(m for m in hf.modules() if isinstance(m, torch.nn.ModuleList))
    outputs: list[torch.Tensor] = []

    def record(module, inputs, out) -> None:
        outputs.append(out[0] if isinstance(out, tuple) else out)

    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        with torch.no_grad():
            hf(input_ids)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


# ------------------------------------------------------------------ Hugging Face parity
@torch.no_grad()
def test_logits_and_every_residual_stream_match_hugging_face(family: Family) -> None:
    input_ids = tokens()
    logits, cache = family.raw.run_with_cache(
        input_ids, names_filter=lambda n: n.endswith("hook_resid_post")
    )
    assert_close(logits, family.hf(input_ids).logits, ATOL_LOGITS, f"{family.name} logits")
    hf_resid = hf_block_outputs(family.hf, input_ids)
    assert len(hf_resid) == family.raw.cfg.n_layers
    for layer, expected in enumerate(hf_resid):
        assert_close(
            cache["resid_post", layer], expected, ATOL_LOGITS, f"{family.name} layer {layer}"
        )


@torch.no_grad()
def test_processed_model_matches_in_log_probabilities(family: Family) -> None:
    input_ids = tokens()
    expected = family.hf(input_ids).logits.log_softmax(-1)
    assert family.processed.cfg.normalization_type == "LNPre"  # folding really happened
    assert_close(family.processed(input_ids).log_softmax(-1), expected, ATOL_LOGITS, family.name)


@torch.no_grad()
@pytest.mark.parametrize("processed", [False, True], ids=["raw", "processed"])
def test_residual_stream_identities(family: Family, processed: bool) -> None:
    model = family.processed if processed else family.raw
    model.set_use_attn_result(True)
    try:
        _, cache = model.run_with_cache(tokens())
    finally:
        model.set_use_attn_result(False)
    for layer in range(model.cfg.n_layers):
        pre, attn_out = cache["resid_pre", layer], cache["attn_out", layer]
        mlp_out, post = cache["mlp_out", layer], cache["resid_post", layer]
        if family.case.parallel:
            assert f"blocks.{layer}.hook_resid_mid" not in cache
            assert_close(post, pre + attn_out + mlp_out, ATOL_IDENTITY, "parallel resid_post")
        else:
            mid = cache["resid_mid", layer]
            assert_close(mid, pre + attn_out, ATOL_IDENTITY, "resid_mid")
            assert_close(post, mid + mlp_out, ATOL_IDENTITY, "resid_post")
        heads = cache["result", layer].sum(dim=-2) + model.blocks[layer].attn.b_O
        assert_close(heads, attn_out, ATOL_IDENTITY, "sum of hook_result + b_O")


@torch.no_grad()
def test_greedy_generation_with_kv_cache_matches_hugging_face(family: Family) -> None:
    prompt = tokens(batch=1, seq=6, seed=3)
    expected = family.hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=10,
        min_new_tokens=10,
        do_sample=False,
        pad_token_id=0,
    )
    ours = family.raw.generate(
        prompt,
        max_new_tokens=10,
        do_sample=False,
        stop_at_eos=False,
        verbose=False,
        use_past_kv_cache=True,
    )
    assert torch.equal(ours, expected)


@torch.no_grad()
def test_left_padded_batch_gives_each_rows_unpadded_logits(family: Family) -> None:
    short, long = tokens(1, 7, seed=4), tokens(1, SEQ, seed=5)
    n_pad = SEQ - short.shape[1]
    batch = torch.cat([torch.cat([torch.ones(1, n_pad, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :n_pad] = 0
    ours = family.raw(batch, attention_mask=mask)
    assert_close(ours[0, n_pad:], family.hf(short).logits[0], ATOL_LOGITS, "short row")
    assert_close(ours[1], family.hf(long).logits[0], ATOL_LOGITS, "long row")
    if family.case.positions_from_mask:  # OPT and BLOOM: HF's own padded batch agrees
        hf_padded = family.hf(batch, attention_mask=mask).logits
        assert_close(ours[0, n_pad:], hf_padded[0, n_pad:], ATOL_LOGITS, "HF padded row")


@torch.no_grad()
@pytest.mark.parametrize("family", ["gpt_neo"], indirect=True)
def test_gpt_neo_local_layers_see_only_their_window(family: Family) -> None:
    _, cache = family.raw.run_with_cache(tokens(), names_filter=lambda n: n.endswith("pattern"))
    distance = torch.arange(SEQ)[:, None] - torch.arange(SEQ)[None, :]
    window = family.raw.cfg.window_size
    assert family.raw.cfg.attn_types == ("local", "global", "local") and window < SEQ
    for layer in (0, 2):
        assert (cache["pattern", layer][..., distance >= window] == 0).all()
    assert (cache["pattern", 1][..., distance >= window] > 0).all()


@torch.no_grad()
@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("gpt_neo", {"tie_word_embeddings": False}),
        ("gptj", {"tie_word_embeddings": True}),
        (
            "gpt_neox_sequential",
            {
                "attention_bias": False,
                "tie_word_embeddings": True,
                "rope_parameters": {**ROPE, "rope_type": "linear", "factor": 2.0},
            },
        ),
        ("opt", {"enable_bias": False, "layer_norm_elementwise_affine": False}),
        ("stablelm", {"tie_word_embeddings": True, "num_key_value_heads": 4}),
    ],
    ids=[
        "neo-untied",
        "gptj-tied",
        "neox-no-bias-tied-linear-rope",
        "opt-no-bias-no-affine",
        "stablelm-mha-tied",
    ],
)
def test_config_variants_match_hugging_face(name: str, changes: dict, tmp_path: Path) -> None:
    folder = save_family(tmp_path, CASES[name], **changes)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    for load in (
        HookedTransformer.from_pretrained_no_processing,
        HookedTransformer.from_pretrained,
    ):
        ours = load(folder, device="cpu")
        expected = hf(tokens()).logits.log_softmax(-1)
        assert_close(ours(tokens()).log_softmax(-1), expected, ATOL_LOGITS, name)


@torch.no_grad()
@pytest.mark.parametrize("family", ["bloom"], indirect=True)
def test_checkpoint_keys_without_the_base_model_prefix_load(family: Family, tmp_path: Path) -> None:
    """As bigscience/bloom-560m's are saved: `h.0...`, not `transformer.h.0...`."""
    weights = safetensors.torch.load_file(family.folder / "model.safetensors")
    stripped = {k.removeprefix("transformer."): v for k, v in weights.items()}
    assert stripped.keys() != weights.keys()
    safetensors.torch.save_file(stripped, tmp_path / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(family.folder / "config.json", tmp_path / "config.json")
    ours = HookedTransformer.from_pretrained_no_processing(tmp_path, device="cpu")
    assert_close(ours(tokens()), family.hf(tokens()).logits, ATOL_LOGITS, "bloom without prefix")


# --------------------------------------------------------------- TransformerLens parity
def build_transformer_lens(folder: Path, processing: bool):
    """TransformerLens 3.9's model for a local folder (its `from_pretrained` refuses
    folders, so its own steps run by hand), processed as its defaults or not at all."""
    from transformer_lens import HookedTransformer as TLHookedTransformer
    from transformer_lens import loading_from_pretrained as lp

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    cfg = lp.get_pretrained_model_config(
        str(folder), hf_cfg=hf_model.config.to_dict(), fold_ln=processing, device="cpu"
    )
    state_dict = lp.get_pretrained_state_dict(str(folder), cfg, hf_model)
    model = TLHookedTransformer(cfg)
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=processing,
        center_writing_weights=processing,
        center_unembed=processing,
        fold_value_biases=processing,
    )
    return model.eval()


@torch.no_grad()
@pytest.mark.parametrize("processing", [False, True], ids=["raw", "processed"])
@pytest.mark.parametrize(
    "family", ["gpt_neo", "gpt_neox_parallel", "gpt_neox_sequential"], indirect=True
)
def test_every_shared_hook_matches_transformer_lens(family: Family, processing: bool) -> None:
    tl_model = build_transformer_lens(family.folder, processing)
    ours = family.processed if processing else family.raw
    input_ids = tokens()
    tl_logits, tl_cache = tl_model.run_with_cache(input_ids)
    logits, cache = ours.run_with_cache(input_ids)
    shared = sorted(set(tl_cache.keys()) & set(cache.keys()))
    assert {"blocks.0.hook_attn_out", "blocks.1.attn.hook_pattern", "ln_final.hook_scale"} <= set(
        shared
    )
    for name in shared:
        expected = tl_cache[name]
        assert_close(cache[name], expected, ATOL_LOGITS, name)
    assert_close(logits, tl_logits, ATOL_LOGITS, "logits")


# ------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("converter", "config", "field"),
    [
        (opt, {"word_embed_proj_dim": 32, "hidden_size": 64}, "word_embed_proj_dim"),
        (opt, {"do_layer_norm_before": False}, "do_layer_norm_before"),
        (opt, {"_remove_final_layer_norm": True}, "_remove_final_layer_norm"),
        (bloom, {"apply_residual_connection_post_layernorm": True}, "apply_residual_connection"),
        (stablelm, {"qk_layernorm": True}, "qk_layernorm"),
        (gptj, {"activation_function": "quick_gelu"}, "activation_function"),
        (gpt_neox, {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "dynamic"),
        (gpt_neox, {"hidden_act": "quick_gelu"}, "hidden_act"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_unsupported_settings_are_refused_by_name(converter, config, field) -> None:
    with pytest.raises(ConfigError, match=field):
        converter.config_from_hf(config)


def test_opt_with_embedding_projections_is_refused_when_loading(tmp_path: Path) -> None:
    folder = save_family(tmp_path, CASES["opt"], word_embed_proj_dim=32)  # as opt-350m
    with pytest.raises(ConfigError, match="project_in"):
        HookedTransformer.from_pretrained_no_processing(folder, device="cpu")


@pytest.mark.parametrize("family", ["bloom"], indirect=True)
def test_checkpoint_missing_a_tensor_names_it(family: Family, tmp_path: Path) -> None:
    weights = safetensors.torch.load_file(family.folder / "model.safetensors")
    dropped = next(k for k in weights if k.endswith("h.1.self_attention.dense.weight"))
    del weights[dropped]
    safetensors.torch.save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(family.folder / "config.json", tmp_path / "config.json")
    missing = r"Missing keys \(1\): h\.1\.self_attention\.dense\.weight"
    with pytest.raises(CheckpointError, match=missing):
        HookedTransformer.from_pretrained_no_processing(tmp_path, device="cpu")


@pytest.mark.parametrize("family", ["opt"], indirect=True)
def test_export_to_hugging_face_is_refused_clearly(family: Family) -> None:
    with pytest.raises(ConfigError, match="OPT model to Hugging Face .* not implemented"):
        family.raw.to_hf()
