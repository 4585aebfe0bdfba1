"""`HookedEncoder` (BERT) against Hugging Face and TransformerLens 3.9 on the same weights.

One tiny random `BertForPreTraining` (2 layers, d_model 64, 4 heads, a 100-token WordPiece
vocabulary) is saved three ways: as itself, as a `BertForMaskedLM` (no pooler, no NSP
head) and as a `BertModel` (no MLM head). References: Hugging Face's outputs, and
TransformerLens's `HookedEncoder` built from the same weights with its own converter.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import transformers

from lookingglass.config import ModelConfig
from lookingglass.errors import ConfigError, InputError
from lookingglass.loading import pretrained
from lookingglass.model.encoder import HookedEncoder
from lookingglass.model.next_sentence import BertNextSentencePrediction

WORDS = "the a cat dog sat on mat ran to park is was big small red blue and it he she".split()
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","]
VOCAB = list(dict.fromkeys([*SPECIAL, *WORDS, *LETTERS, *(f"##{c}" for c in LETTERS)]))
TINY_BERT = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=32,
)
BATCH = ["the cat sat on the mat.", "a big red dog ran to the park and it was small."]
PAIR = ["the cat sat on the mat.", "it was big."]
ATOL = 1e-4
WEIGHTS = "W_E W_pos W_E_pos W_Q W_K W_V W_O b_Q b_K b_V b_O W_in W_out b_in b_out W_U b_U".split()


def _tokenizer(folder: Path) -> transformers.PreTrainedTokenizerBase:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    assert len(tokenizer) == len(VOCAB)
    return tokenizer


@torch.no_grad()
def _randomize(model: torch.nn.Module) -> None:
    """Non-trivial values everywhere (HF initializes biases to 0 and norms to (1, 0))."""
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if "LayerNorm.weight" in name:
            param.copy_(1 + 0.2 * noise)
        else:
            param.copy_((0.2 if param.ndim == 2 else 0.1) * noise)


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The HF models and the folders they were saved to."""
    root = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = _tokenizer(root / "vocab")
    config = transformers.BertConfig(vocab_size=len(VOCAB), **TINY_BERT)
    torch.manual_seed(0)
    pretraining = transformers.BertForPreTraining(config).eval()
    _randomize(pretraining)
    masked_lm = transformers.BertForMaskedLM(config).eval()
    masked_lm.load_state_dict(pretraining.state_dict(), strict=False)
    base = transformers.BertModel(config).eval()
    base.load_state_dict(pretraining.bert.state_dict())
    folders = {}
    for name, model in (("pretraining", pretraining), ("mlm", masked_lm), ("base", base)):
        model.save_pretrained(root / name)
        if name == "base":  # a WordPiece vocab.txt only, as in older BERT repositories
            (root / name / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
        else:
            tokenizer.save_pretrained(root / name)
        folders[name] = root / name
    return dict(
        pretraining=pretraining, mlm=masked_lm, base=base, folders=folders, tokenizer=tokenizer
    )


@pytest.fixture(scope="module")
def ours(bert: dict) -> HookedEncoder:
    return HookedEncoder.from_pretrained(bert["folders"]["pretraining"], device="cpu")


@pytest.fixture(scope="module")
def tl_model(bert: dict):
    """TransformerLens's HookedEncoder on the same weights, built as its from_pretrained
    does (which cannot read a local folder): its config for the BertForMaskedLM folder,
    its converter on the BertForPreTraining model."""
    from transformer_lens import HookedEncoder as TLHookedEncoder
    from transformer_lens import loading_from_pretrained as lp
    from transformer_lens.pretrained.weight_conversions.bert import convert_bert_weights

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = lp.get_pretrained_model_config(
            str(bert["folders"]["mlm"]), fold_ln=False, device="cpu", n_devices=1
        )
        model = TLHookedEncoder(cfg, bert["tokenizer"], move_to_device=False)
    model.load_state_dict(convert_bert_weights(bert["pretraining"], cfg), strict=False)
    return model.eval()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@torch.no_grad()
def test_mlm_logits_equal_hugging_face_with_padding_and_segments(bert: dict) -> None:
    model = HookedEncoder.from_pretrained(bert["folders"]["mlm"], device="cpu")
    tokens, types, mask = model.to_tokens(BATCH)
    assert (mask == 0).any(), "the batch must have padding for this test"
    types = (torch.arange(tokens.shape[1]) >= 4).long().expand_as(tokens) * mask
    expected = bert["mlm"](input_ids=tokens, token_type_ids=types, attention_mask=mask).logits
    logits = model(tokens, token_type_ids=types, one_zero_attention_mask=mask)
    assert _max_diff(logits, expected) < ATOL
    # Strings: the tokenizer's segment ids and mask are used.
    hf_inputs = bert["tokenizer"](BATCH, return_tensors="pt", padding=True)
    assert _max_diff(model(BATCH), bert["mlm"](**hf_inputs).logits) < ATOL


@torch.no_grad()
def test_residual_stream_equals_hugging_face_hidden_states(bert: dict, ours) -> None:
    tokens, types, mask = ours.to_tokens(BATCH)
    hf = bert["pretraining"](
        input_ids=tokens, token_type_ids=types, attention_mask=mask, output_hidden_states=True
    )
    _, cache = ours.run_with_cache(tokens, token_type_ids=types, one_zero_attention_mask=mask)
    assert _max_diff(cache["hook_full_embed"], hf.hidden_states[0]) < ATOL
    for layer in range(ours.cfg.n_layers):
        # Post-LN: the block's output is hook_normalized_resid_post (TransformerLens's name).
        block_out = cache[f"blocks.{layer}.hook_normalized_resid_post"]
        assert _max_diff(block_out, hf.hidden_states[layer + 1]) < ATOL, layer
    assert _max_diff(ours.encoder_output(tokens, types, mask), hf.hidden_states[-1]) < ATOL
    assert _max_diff(ours(tokens, "logits", types, mask), hf.prediction_logits) < ATOL


@torch.no_grad()
def test_every_hook_equals_transformer_lens(ours, tl_model) -> None:
    flags = ("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in")
    for flag in flags:  # TransformerLens's HookedEncoder reads them from its config
        getattr(ours, f"set_{flag}")(True)
        setattr(tl_model.cfg, flag, True)
    try:
        tokens, types, mask = ours.to_tokens(BATCH)
        logits, cache = ours.run_with_cache(tokens, "logits", types, mask)
        tl_logits, tl_cache = tl_model.run_with_cache(tokens, "logits", types, mask)
    finally:
        for flag in flags:
            getattr(ours, f"set_{flag}")(False)
            setattr(tl_model.cfg, flag, False)
    assert sorted(cache.keys()) == sorted(tl_cache.keys())
    for name in tl_cache.keys():
        # Masked attention scores are -inf in both: compare with inf-aware closeness.
        torch.testing.assert_close(cache[name], tl_cache[name], atol=ATOL, rtol=0, msg=name)
    assert _max_diff(logits, tl_logits) < ATOL


@torch.no_grad()
def test_next_sentence_prediction_equals_hugging_face_and_transformer_lens(
    bert: dict, ours, tl_model
) -> None:
    from transformer_lens import BertNextSentencePrediction as TLNextSentence

    nsp = BertNextSentencePrediction(ours)
    tokens, types, mask = nsp.to_tokens(PAIR)
    assert types.max() == 1
    hf = bert["pretraining"](input_ids=tokens, token_type_ids=types, attention_mask=mask)
    assert _max_diff(nsp(PAIR), hf.seq_relationship_logits) < ATOL
    assert _max_diff(nsp(tokens, token_type_ids=types), hf.seq_relationship_logits) < ATOL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tl_nsp = TLNextSentence(tl_model)
    _, cache = nsp.run_with_cache(PAIR)
    _, tl_cache = tl_nsp.run_with_cache(PAIR)
    assert sorted(cache.keys()) == sorted(tl_cache.keys())
    for name in ("pooler.hook_pooler_out", "nsp_head.hook_nsp_out", "blocks.1.attn.hook_pattern"):
        assert _max_diff(cache[name], tl_cache[name]) < ATOL, name
    assert nsp(PAIR, return_type="predictions") == tl_nsp(PAIR, return_type="predictions")
    with pytest.raises(InputError, match="token_type_ids"):
        nsp(tokens)


@torch.no_grad()
def test_tokens_predictions_and_weights_equal_transformer_lens(ours, tl_model) -> None:
    for mine, theirs in zip(ours.to_tokens(BATCH), tl_model.to_tokens(BATCH), strict=True):
        assert torch.equal(mine, theirs)
    masked = "the cat [MASK] on the [MASK]."
    assert ours(masked, return_type="predictions") == tl_model(masked, return_type="predictions")
    for name in WEIGHTS:
        assert torch.equal(getattr(ours, name), getattr(tl_model, name)), name
    assert _max_diff(ours.QK.AB, tl_model.QK.AB) < ATOL
    tl_buffers = {k for k in tl_model.state_dict() if k.endswith(("attn.mask", "attn.IGNORE"))}
    assert set(ours.state_dict()) == set(tl_model.state_dict()) - tl_buffers
    assert ours.all_head_labels() == tl_model.all_head_labels()


@torch.no_grad()
def test_checkpoints_without_a_head_refuse_to_use_it(bert: dict) -> None:
    mlm = HookedEncoder.from_pretrained(bert["folders"]["mlm"], device="cpu")
    assert mlm.heads_without_weights == {"pooler", "nsp_head"}
    with pytest.raises(InputError, match="next-sentence head"):
        BertNextSentencePrediction(mlm)(PAIR)
    base = HookedEncoder.from_pretrained(bert["folders"]["base"], device="cpu")
    assert base.heads_without_weights == {"mlm_head", "unembed", "nsp_head"}
    with pytest.raises(InputError, match="masked-LM head"):
        base(BATCH)
    tokens, types, mask = base.to_tokens(BATCH)
    assert torch.equal(tokens, mlm.to_tokens(BATCH)[0])
    expected = bert["base"](input_ids=tokens, token_type_ids=types, attention_mask=mask)
    assert _max_diff(base.encoder_output(tokens, types, mask), expected.last_hidden_state) < ATOL
    assert base(BATCH, return_type=None) is None


@torch.no_grad()
def test_hf_model_argument_and_hub_name(bert: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens, types, mask = bert["tokenizer"](BATCH, return_tensors="pt", padding=True).values()
    expected = bert["mlm"](input_ids=tokens, token_type_ids=types, attention_mask=mask).logits
    from_memory = HookedEncoder.from_pretrained(
        "bert-base-cased", hf_model=bert["mlm"], device="cpu", tokenizer=bert["tokenizer"]
    )
    assert _max_diff(from_memory(tokens, "logits", types, mask), expected) < ATOL
    # TransformerLens's name goes through the Hub download path (here: no network).
    asked = []
    monkeypatch.setattr(
        pretrained, "_download", lambda repo, rev: asked.append(repo) or bert["folders"]["mlm"]
    )
    by_name = HookedEncoder.from_pretrained("bert-base-cased", device="cpu")
    assert asked == ["google-bert/bert-base-cased"]
    assert _max_diff(by_name(tokens, "logits", types, mask), expected) < ATOL


@torch.no_grad()
def test_fresh_model_from_config(bert: dict) -> None:
    """A random encoder from a ModelConfig (vocabulary size from the tokenizer) computes
    what TransformerLens's HookedEncoder computes with the same parameters."""
    from transformer_lens import HookedEncoder as TLHookedEncoder
    from transformer_lens import HookedTransformerConfig

    shape = dict(n_layers=1, d_model=32, d_head=8, d_mlp=64, n_ctx=16, act_fn="gelu", eps=1e-12)
    model = HookedEncoder(ModelConfig(**shape, seed=1), bert["tokenizer"])
    assert model.cfg.d_vocab == len(VOCAB)
    assert model.W_Q.std() > 0 and (model.embed.ln.w == 1).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tl_cfg = HookedTransformerConfig(
            **shape, d_vocab=len(VOCAB), attention_dir="bidirectional", device="cpu"
        )
        tl = TLHookedEncoder(tl_cfg, bert["tokenizer"], move_to_device=False)
    tl.load_state_dict(model.state_dict(), strict=False)
    assert _max_diff(model(BATCH), tl(BATCH)) < ATOL
    with pytest.raises(ConfigError, match="positional_embedding_type"):
        HookedEncoder(ModelConfig(**shape, d_vocab=10, positional_embedding_type="rotary"))


def test_unsupported_configurations_are_refused(bert: dict, tmp_path: Path) -> None:
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), position_embedding_type="relative_key", **TINY_BERT
    )
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="position_embedding_type"):
        HookedEncoder.from_pretrained(tmp_path, device="cpu")
    with pytest.raises(InputError, match="n_ctx"):
        HookedEncoder.from_pretrained(bert["folders"]["mlm"], device="cpu")(
            torch.zeros(1, 40, dtype=torch.long)
        )
