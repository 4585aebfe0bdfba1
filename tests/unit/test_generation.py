"""Generation: greedy decoding equals Hugging Face's `generate` on the same weights, the
KV cache changes nothing, sampling is seeded and follows the filtered distribution that
Hugging Face's own logits warpers define, and EOS stops rows."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

from lookingglass import HookedTransformer, InputError, ModelConfig
from lookingglass.model.generation import sample_logits
from tests._helpers import assert_close, make_tokenizer, one_cpu_thread

V = len(make_tokenizer())
D_MODEL, N_HEADS, D_HEAD = 64, 4, 16
PROMPT_LENGTHS = (8, 5, 2)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


def _random_gpt2(seed: int = 0) -> transformers.GPT2LMHeadModel:
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=D_MODEL,
        n_head=N_HEADS,
        n_positions=64,
        vocab_size=V,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial biases and LayerNorm weights, peaked logits
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            gain = (
                ".ln_" in name and name.endswith("weight") or name.startswith("transformer.ln_f.w")
            )
            param.copy_(1 + 0.1 * noise if gain else (0.2 if param.ndim == 2 else 0.1) * noise)
    return model


def _copy_gpt2_weights(hf: transformers.GPT2LMHeadModel) -> HookedTransformer:
    """Our model with `hf`'s weights, mapped by hand (Conv1D weights are [d_in, d_out])."""
    d, h, e = D_MODEL, N_HEADS, D_HEAD
    t = hf.transformer
    state = {
        "embed.W_E": t.wte.weight,
        "pos_embed.W_pos": t.wpe.weight,
        "ln_final.w": t.ln_f.weight,
        "ln_final.b": t.ln_f.bias,
        "unembed.W_U": t.wte.weight.T,  # lm_head is tied to wte
        "unembed.b_U": torch.zeros(V),
    }
    for i, block in enumerate(t.h):
        qkv_w, qkv_b = block.attn.c_attn.weight, block.attn.c_attn.bias
        for j, name in enumerate("QKV"):
            state[f"blocks.{i}.attn.W_{name}"] = (
                qkv_w[:, j * d : (j + 1) * d].reshape(d, h, e).permute(1, 0, 2)
            )
            state[f"blocks.{i}.attn.b_{name}"] = qkv_b[j * d : (j + 1) * d].reshape(h, e)
        state[f"blocks.{i}.attn.W_O"] = block.attn.c_proj.weight.reshape(h, e, d)
        state[f"blocks.{i}.attn.b_O"] = block.attn.c_proj.bias
        for ours, theirs in (("ln1", block.ln_1), ("ln2", block.ln_2)):
            state[f"blocks.{i}.{ours}.w"], state[f"blocks.{i}.{ours}.b"] = (
                theirs.weight,
                theirs.bias,
            )
        state[f"blocks.{i}.mlp.W_in"], state[f"blocks.{i}.mlp.b_in"] = (
            block.mlp.c_fc.weight,
            block.mlp.c_fc.bias,
        )
        state[f"blocks.{i}.mlp.W_out"], state[f"blocks.{i}.mlp.b_out"] = (
            block.mlp.c_proj.weight,
            block.mlp.c_proj.bias,
        )
    cfg = ModelConfig(
        n_layers=2,
        d_model=d,
        n_heads=h,
        d_head=e,
        d_mlp=4 * d,
        d_vocab=V,
        n_ctx=64,
        act_fn="gelu_new",
    )
    model = HookedTransformer(cfg)
    model.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def pair():
    """A random Hugging Face GPT-2 and our model with its weights and the tiny tokenizer."""
    hf = _random_gpt2(seed=0)
    model = _copy_gpt2_weights(hf)
    model.set_tokenizer(make_tokenizer())
    return hf, model


def _prompts():
    return [
        torch.randint(1, V, (n,), generator=torch.Generator().manual_seed(n))
        for n in PROMPT_LENGTHS
    ]


def _left_pad(rows):
    width = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    return tokens, mask


def _greedy(model, tokens, n=12, **kwargs):
    kwargs = {"do_sample": False, "stop_at_eos": False, "verbose": False, **kwargs}
    return model.generate(tokens, max_new_tokens=n, **kwargs)


def _hf_greedy(hf, tokens, mask, n=12):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(
            tokens,
            attention_mask=mask,
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )


# ---------------------------------------------------------------- Hugging Face parity
@torch.no_grad()
def test_logits_equal_hugging_face(pair):
    hf, model = pair
    tokens = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(5))
    assert_close(model(tokens), hf(tokens).logits, 1e-5, "logits")


@torch.no_grad()
def test_greedy_equals_hugging_face_generate(pair):
    hf, model = pair
    prompt = _prompts()[0][None]
    ours = _greedy(model, prompt, n=20)
    theirs = _hf_greedy(hf, prompt, torch.ones_like(prompt), n=20)
    assert ours.tolist() == theirs.tolist()
    assert len(set(ours[0, 8:].tolist())) > 3, "degenerate continuation; the test would be weak"


@torch.no_grad()
def test_batched_greedy_with_left_padding_equals_hugging_face(pair):
    hf, model = pair
    tokens, mask = _left_pad(_prompts())
    theirs = _hf_greedy(hf, tokens, mask)
    for i, row in enumerate(_prompts()):
        alone = _greedy(model, row[None])
        assert alone[0, len(row) :].tolist() == theirs[i, tokens.shape[1] :].tolist(), f"row {i}"


# ------------------------------------------------------------------------- KV cache
@torch.no_grad()
def test_greedy_with_and_without_kv_cache_identical(pair):
    _, model = pair
    prompt = _prompts()[0]
    with_cache = _greedy(model, prompt, n=20, use_past_kv_cache=True)
    without = _greedy(model, prompt, n=20, use_past_kv_cache=False)
    assert torch.equal(with_cache, without)


@torch.no_grad()
def test_batch_of_strings_is_left_padded_and_each_row_equals_its_own_run(pair):
    _, model = pair
    prompts = ["When Mary and John went to the store,", "The quick brown", "def"]
    kv = _greedy(model, prompts, n=10, use_past_kv_cache=True, return_type="tokens")
    no_kv = _greedy(model, prompts, n=10, use_past_kv_cache=False, return_type="tokens")
    assert torch.equal(kv, no_kv)
    prompt_width = model.to_tokens(prompts).shape[1]
    texts = _greedy(model, prompts, n=10)
    for i, prompt in enumerate(prompts):
        alone = _greedy(model, model.to_tokens(prompt), n=10)
        n_prompt = model.to_tokens(prompt).shape[1]
        assert kv[i, prompt_width:].tolist() == alone[0, n_prompt:].tolist(), prompt
        assert (
            kv[i, prompt_width - n_prompt : prompt_width].tolist()
            == model.to_tokens(prompt)[0].tolist()
        )
        # As TransformerLens: text is decoded without special tokens (BOS, padding).
        assert texts[i] == model.tokenizer.decode(alone[0], skip_special_tokens=True)
    assert _greedy(model, prompts[1], n=4) == model.tokenizer.decode(
        _greedy(model, model.to_tokens(prompts[1]), n=4)[0], skip_special_tokens=True
    )
    # As TransformerLens: a batch of strings is always padded on the left.
    assert _greedy(model, prompts, n=10, padding_side="right") == texts


# ------------------------------------------------------------------------- sampling
@torch.no_grad()
def test_sampling_with_a_seed_is_reproducible(pair):
    _, model = pair
    prompt = _prompts()[1][None]

    def sample(seed, **kwargs):
        torch.manual_seed(seed)
        return model.generate(prompt, max_new_tokens=15, stop_at_eos=False, verbose=False, **kwargs)

    assert torch.equal(sample(0), sample(0))
    assert torch.equal(sample(3, top_p=0.9, temperature=0.7), sample(3, top_p=0.9, temperature=0.7))
    assert any(not torch.equal(sample(0), sample(seed)) for seed in range(1, 6))
    greedy = _greedy(model, prompt, n=15)
    assert torch.equal(sample(1, top_k=1), greedy) and torch.equal(sample(2, top_k=1), greedy)
    assert torch.equal(sample(4, temperature=0.0), greedy)


def _hf_filtered_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """The distribution Hugging Face samples from: its logits warpers, in generate's order."""
    scores = transformers.TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k is not None:
        scores = transformers.TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None:
        scores = transformers.TopPLogitsWarper(top_p)(None, scores)
    return scores.softmax(-1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"temperature": 0.5},
        {"top_k": 3},
        {"top_p": 0.8},
        {"temperature": 1.5, "top_k": 5, "top_p": 0.9},
    ],
    ids=["plain", "temperature", "top_k", "top_p", "all"],
)
def test_samples_follow_hugging_faces_filtered_distribution(kwargs):
    logits = torch.randn(1, 8, generator=torch.Generator().manual_seed(11)) * 2
    expected = _hf_filtered_probs(logits, **kwargs)[0]
    n = 40_000
    torch.manual_seed(0)
    samples = sample_logits(logits.expand(n, -1), **kwargs)
    freq = torch.bincount(samples, minlength=8).float() / n
    assert torch.all(freq[expected == 0] == 0), "sampled a token the filters remove"
    sigma = (expected * (1 - expected) / n).sqrt()
    assert torch.all((freq - expected).abs() <= 5 * sigma + 1e-4), (freq, expected)


def test_frequency_penalty_lowers_repeated_tokens():
    logits = torch.tensor([[0.0, 0.0, 3.0, 0.0]])
    previous = torch.tensor([[2, 2, 2, 1]])
    torch.manual_seed(0)
    samples = sample_logits(logits.expand(5000, -1), previous.expand(5000, -1), freq_penalty=2.0)
    # Expected logits after the penalty: [0, -2, 3 - 6, 0].
    expected = torch.tensor([0.0, -2.0, -3.0, 0.0]).softmax(-1)
    freq = torch.bincount(samples, minlength=4).float() / 5000
    assert (freq - expected).abs().max() < 0.03


# ----------------------------------------------------------------------------- EOS
@torch.no_grad()
def test_stop_at_eos_stops_each_row(pair):
    _, model = pair
    tokens, _ = _left_pad(_prompts())
    free = _greedy(model, tokens, n=12, use_past_kv_cache=False)
    width = tokens.shape[1]
    # Pretend the token row 0 produces third is EOS.
    eos = int(free[0, width + 2])
    first_eos = [
        row[width:].tolist().index(eos) if eos in row[width:].tolist() else None for row in free
    ]
    stopped = model.generate(
        tokens,
        max_new_tokens=12,
        do_sample=False,
        stop_at_eos=True,
        eos_token_id=eos,
        verbose=False,
    )
    for i, first in enumerate(first_eos):
        if first is None:
            assert stopped[i, width:].tolist() == free[i, width : stopped.shape[1]].tolist()
        else:
            assert (
                stopped[i, width : width + first + 1].tolist()
                == free[i, width : width + first + 1].tolist()
            )
            assert torch.all(stopped[i, width + first :] == eos)
    if all(f is not None for f in first_eos):
        assert stopped.shape[1] == width + max(first_eos) + 1
    else:
        assert stopped.shape[1] == width + 12
    single = model.generate(
        tokens[:1],
        max_new_tokens=12,
        do_sample=False,
        stop_at_eos=True,
        eos_token_id=eos,
        verbose=False,
    )
    assert single.shape[1] == width + first_eos[0] + 1 and single[0, -1] == eos


def test_generate_errors(pair):
    _, model = pair
    with pytest.raises(InputError, match="n_ctx"):
        model.generate(
            torch.ones(1, 60, dtype=torch.long), max_new_tokens=10, verbose=False, stop_at_eos=False
        )
    bare = HookedTransformer(model.cfg)
    with pytest.raises(InputError, match="eos"):
        bare.generate(torch.ones(1, 3, dtype=torch.long), max_new_tokens=2, verbose=False)
    with pytest.raises(InputError, match="max_new_tokens"):
        model.generate(torch.ones(1, 3, dtype=torch.long), max_new_tokens=-1, verbose=False)
    out = model.generate(
        torch.ones(1, 3, dtype=torch.long), max_new_tokens=0, verbose=False, stop_at_eos=False
    )
    assert out.tolist() == [[1, 1, 1]]
