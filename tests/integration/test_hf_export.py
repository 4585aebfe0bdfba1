"""Export to Hugging Face: `to_hf` computes our logits, `save_hf` folders load back in
`transformers` and in lookingglass, processed and natively built models included."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
import transformers

from lookingglass import ConfigError, HookedTransformer, InputError
from lookingglass.loading import save_hf, to_hf
from tests._helpers import assert_close, make_model, make_tokenizer, random_tokens

LOGIT_ATOL = 1e-4


@pytest.fixture(scope="module")
def tokens():
    return random_tokens(2, 20, d_vocab=200, seed=7)


def _hf_logits(hf_model, tokens):
    with torch.no_grad():
        return hf_model(tokens).logits


def _logits(model, tokens):
    with torch.no_grad():
        return model(tokens)


def test_round_trip_of_an_unprocessed_model(tiny_gpt2_dir, tokens, tmp_path):
    model = HookedTransformer.from_pretrained_no_processing(tiny_gpt2_dir, device="cpu")
    hf_model = to_hf(model)
    assert isinstance(hf_model, transformers.GPT2LMHeadModel)
    assert_close(_hf_logits(hf_model, tokens), _logits(model, tokens), LOGIT_ATOL, "to_hf")

    folder = save_hf(model, tmp_path / "exported")
    saved = safetensors.torch.load_file(folder / "model.safetensors")
    assert "lm_head.weight" not in saved  # W_U == W_E^T: exported tied, as GPT-2 is
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is True
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert_close(_hf_logits(reloaded, tokens), _logits(model, tokens), LOGIT_ATOL, "reloaded")
    ours_again = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    assert_close(_logits(ours_again, tokens), _logits(model, tokens), LOGIT_ATOL, "round trip")
    assert ours_again.tokenizer is not None


def test_export_copies_weights(tiny_gpt2_dir):
    model = HookedTransformer.from_pretrained_no_processing(tiny_gpt2_dir, device="cpu")
    hf_model = to_hf(model)
    with torch.no_grad():
        hf_model.transformer.wte.weight.zero_()
    assert model.W_E.abs().sum() > 0


@pytest.mark.parametrize("refactor", [False, True])
def test_processed_model_exports_exactly(tiny_gpt2_dir, tokens, tmp_path, refactor):
    # Folding ln_final leaves an unembedding bias, which GPT-2 has no slot for: the
    # export reproduces it exactly through ln_f's bias (see converters/gpt2.py).
    model = HookedTransformer.from_pretrained(
        tiny_gpt2_dir, device="cpu", refactor_factored_attn_matrices=refactor
    )
    assert model.b_U.abs().max() > 0.01
    hf_model = to_hf(model)
    assert_close(_hf_logits(hf_model, tokens), _logits(model, tokens), LOGIT_ATOL, "processed")
    folder = save_hf(model, tmp_path / "processed")
    reloaded = HookedTransformer.from_pretrained_no_processing(folder, device="cpu")
    assert_close(_logits(reloaded, tokens), _logits(model, tokens), LOGIT_ATOL, "reloaded")


@pytest.mark.parametrize(
    "variant", [{}, {"normalization_type": "LNPre"}, {"act_fn": "gelu"}], ids=str
)
def test_natively_built_model_exports(tokens, variant):
    # Random biases everywhere, b_U included, with and without a final LayerNorm's weights.
    model = make_model(seed=11, tokenizer=make_tokenizer(), **variant)
    hf_model = to_hf(model)
    assert hf_model.config.n_layer == model.cfg.n_layers
    assert_close(_hf_logits(hf_model, tokens), _logits(model, tokens), LOGIT_ATOL, str(variant))


@pytest.mark.parametrize(
    ("variant", "field"),
    [
        ({"attn_only": True}, "attn_only"),
        ({"normalization_type": "RMS"}, "normalization_type"),
        ({"positional_embedding_type": "rotary"}, "positional_embedding_type"),
        ({"smear_keys": True}, "smear_keys"),
    ],
)
def test_what_gpt2_cannot_express_is_refused(variant, field):
    with pytest.raises(ConfigError, match=field):
        to_hf(make_model(seed=0, **variant))


def test_save_hf_never_replaces_unrelated_folders(tiny_gpt2_dir, tmp_path):
    model = HookedTransformer.from_pretrained_no_processing(tiny_gpt2_dir, device="cpu")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="Refusing to replace"):
        save_hf(model, folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # no temporary left
