"""Half precision: a model loaded in bf16 or fp16 computes in that dtype and is as close to
the fp32 reference as Hugging Face's own model in the same dtype (the reference for what
"correct" means in low precision, since both round differently)."""

import pytest
import torch
import transformers

from lookingglass import HookedTransformer

CASES = {
    "gpt2": (
        transformers.GPT2Config(vocab_size=256, n_embd=128, n_layer=3, n_head=4, n_positions=64),
        transformers.GPT2LMHeadModel,
    ),
    "llama": (
        transformers.LlamaConfig(
            vocab_size=256,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        ),
        transformers.LlamaForCausalLM,
    ),
    "gemma": (
        transformers.GemmaConfig(
            vocab_size=256,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=32,
            max_position_embeddings=64,
        ),
        transformers.GemmaForCausalLM,
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def checkpoint(request, tmp_path_factory):
    config, model_class = CASES[request.param]
    torch.manual_seed(0)
    model = model_class(config)
    with torch.no_grad():  # move off the tidy initialization (norm weights exactly 1, ...)
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    folder = tmp_path_factory.mktemp("half")
    model.save_pretrained(folder)
    return folder, model_class


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_as_accurate_as_hugging_face(checkpoint, dtype):
    folder, model_class = checkpoint
    tokens = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fp32 = (
            model_class.from_pretrained(folder, attn_implementation="eager").eval()(tokens).logits
        )
        hf = model_class.from_pretrained(folder, dtype=dtype, attn_implementation="eager").eval()
        hf_logits = hf(tokens).logits.float()
        ours = HookedTransformer.from_pretrained_no_processing(folder, dtype=dtype)
        logits, cache = ours.run_with_cache(tokens, names_filter=lambda n: n.endswith("resid_post"))
    assert logits.dtype == dtype
    assert all(p.dtype == dtype for p in ours.parameters())
    assert cache["resid_post", 0].dtype == dtype
    hf_error = (hf_logits - fp32).abs().max().item()
    our_error = (logits.float() - fp32).abs().max().item()
    assert hf_error > 0  # the check below is meaningful only if half precision rounds at all
    assert our_error <= 1.5 * hf_error + 1e-3
    assert (logits.float() - hf_logits).abs().max().item() <= 2.5 * hf_error + 1e-3
