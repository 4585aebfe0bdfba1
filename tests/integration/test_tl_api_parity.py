"""The TransformerLens 3.9 API surface behaves as TransformerLens's on identical weights:
KV-cache generation and cached forward passes, `start_at_layer`/`stop_at_layer`,
`input_to_embed`, hook introspection (`fwd_hooks`, `context_level`, `has_hooks`,
`remove_hooks`, `list_hooks`), `to_string`, `loss_fn`, `generate(return_type=...)`, the
tokenizer's BOS, and loading a TransformerLens state dict strictly.

TransformerLens's model (the twin) is built from our model's config and loaded with our
`state_dict()`; both get the same tokenizer, loaded from disk (TransformerLens's
`set_tokenizer` reloads a tokenizer by its path).
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
import transformers

from lookingglass import ConfigError, HookedTransformer, HookError, InputError, ModelConfig
from lookingglass.model.kv_cache import (
    KeyValueCache,
    TransformerLensKeyValueCache,
    TransformerLensKeyValueCacheEntry,
)
from tests._analysis_helpers import tl_twin
from tests._helpers import assert_close, make_model, make_tokenizer, one_cpu_thread

ATOL = 1e-5
PROMPTS = ["When Mary and John went to the store,", "The quick brown", "def"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer().save_pretrained(folder)
    return folder


def _tokenizer(folder):
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def pair(tokenizer_dir):
    """Our random model and TransformerLens's twin, with the same weights and tokenizer."""
    ours = make_model(seed=7, tokenizer=_tokenizer(tokenizer_dir))
    return ours, tl_twin(ours, _tokenizer(tokenizer_dir))


# ------------------------------------------------------------------- KV cache
def test_kv_cache_class_names_and_fields(pair):
    ours, theirs = pair
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache as TLCache

    assert KeyValueCache is TransformerLensKeyValueCache
    cache = TransformerLensKeyValueCache.init_cache(ours.cfg, "cpu", batch_size=3)
    tl_cache = TLCache.init_cache(theirs.cfg, "cpu", batch_size=3)
    assert isinstance(cache[0], TransformerLensKeyValueCacheEntry)
    assert len(cache.entries) == len(tl_cache.entries) and cache.frozen is tl_cache.frozen
    for ours_entry, tl_entry in zip(cache.entries, tl_cache.entries, strict=True):
        assert ours_entry.past_keys.shape == tl_entry.past_keys.shape
        assert ours_entry.past_keys.dtype == tl_entry.past_keys.dtype
    assert cache.previous_attention_mask.shape == tl_cache.previous_attention_mask.shape
    assert cache.previous_attention_mask.dtype == tl_cache.previous_attention_mask.dtype
    mask = torch.tensor([[0, 1], [1, 1], [1, 1]])
    for c in (cache, tl_cache):
        c.freeze()
        assert c.append_attention_mask(mask).shape == (3, 2) and c[1].frozen
        assert c.previous_attention_mask.shape == (3, 0)
        c.unfreeze()
        c.append_attention_mask(mask)
    assert torch.equal(cache.previous_attention_mask, tl_cache.previous_attention_mask)


@torch.no_grad()
def test_forward_with_a_kv_cache_in_chunks_and_frozen(pair):
    ours, theirs = pair
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache as TLCache

    tokens = ours.to_tokens(PROMPTS[0])
    cache = TransformerLensKeyValueCache.init_cache(ours.cfg, "cpu", 1)
    tl_cache = TLCache.init_cache(theirs.cfg, "cpu", 1)
    for chunk in (tokens[:, :4], tokens[:, 4:7]):
        assert_close(
            ours(chunk, past_kv_cache=cache), theirs(chunk, past_kv_cache=tl_cache), ATOL, "chunk"
        )
    assert torch.equal(cache.previous_attention_mask, tl_cache.previous_attention_mask)
    for layer in range(ours.cfg.n_layers):
        assert_close(cache[layer].past_values, tl_cache[layer].past_values, ATOL, "values")
    cache.freeze()
    tl_cache.freeze()
    for continuation in (tokens[:, 7:9], tokens[:, 7:8]):  # the same prefix twice
        out = ours(continuation, past_kv_cache=cache)
        assert_close(out, theirs(continuation, past_kv_cache=tl_cache), ATOL, "frozen")
    assert cache[0].past_keys.shape[1] == tl_cache[0].past_keys.shape[1] == 7
    assert_close(out[0, -1], ours(tokens[:, :8])[0, -1], ATOL, "frozen = uncached")


@pytest.mark.parametrize("use_past_kv_cache", [True, False], ids=["kv", "no_kv"])
@torch.no_grad()
def test_greedy_generation_equals_transformerlens(pair, use_past_kv_cache):
    ours, theirs = pair
    kwargs = dict(
        max_new_tokens=8, do_sample=False, use_past_kv_cache=use_past_kv_cache, verbose=False
    )
    tokens = ours.to_tokens(PROMPTS[0])
    for input, extra in (
        (tokens, {}),
        (PROMPTS[0], {}),
        (PROMPTS, {}),
        (PROMPTS, {"return_type": "tokens"}),
        (PROMPTS[1], {"return_type": "tokens", "stop_at_eos": False}),
        (tokens, {"return_type": "str"}),
        ([PROMPTS[2]], {}),
    ):
        mine = ours.generate(input, **kwargs, **extra)
        tl = theirs.generate(input, **kwargs, **extra)
        assert type(mine) is type(tl), (input, extra)
        if isinstance(mine, torch.Tensor):
            assert mine.tolist() == tl.tolist(), (input, extra)
        else:
            assert mine == tl, (input, extra)


@torch.no_grad()
def test_generate_embeds_and_list_of_eos_tokens_equal_transformerlens(pair):
    ours, theirs = pair
    kwargs = dict(max_new_tokens=6, do_sample=False, verbose=False)
    tokens = ours.to_tokens(PROMPTS[1])
    mine = ours.generate(tokens, return_type="embeds", **kwargs)
    assert_close(mine, theirs.generate(tokens, return_type="embeds", **kwargs), ATOL, "embeds")
    embeds = ours.embed(tokens)
    # Without the KV cache: with it, TransformerLens 3.9 adds the positional embedding of
    # position (cached + all) - 1 instead of (cached) to each new embedding-input token.
    for return_type in ("tokens", "str", "input"):
        mine = ours.generate(embeds, return_type=return_type, use_past_kv_cache=False, **kwargs)
        tl = theirs.generate(embeds, return_type=return_type, use_past_kv_cache=False, **kwargs)
        assert (mine.tolist() if isinstance(mine, torch.Tensor) else mine) == (
            tl.tolist() if isinstance(tl, torch.Tensor) else tl
        ), return_type
    with_cache = ours.generate(embeds, return_type="tokens", **kwargs)
    assert with_cache.tolist() == ours.generate(tokens, **kwargs)[:, tokens.shape[1] :].tolist()
    free = ours.generate(tokens, stop_at_eos=False, **kwargs)
    stop = [int(free[0, -3]), 12345]
    mine = ours.generate(tokens, eos_token_id=stop, **kwargs)
    assert mine.tolist() == theirs.generate(tokens, eos_token_id=stop, **kwargs).tolist()
    assert mine.shape[1] < free.shape[1]
    out = ours.generate(tokens, output_logits=True, **kwargs)
    tl_out = theirs.generate(tokens, output_logits=True, **kwargs)
    assert out.sequences.tolist() == tl_out.sequences.tolist()
    assert len(out.logits) == len(tl_out.logits)
    assert_close(out.logits[-1], tl_out.logits[-1], 1e-4, "output_logits")


@torch.no_grad()
def test_seeded_sampling_equals_transformerlens(pair):
    ours, theirs = pair
    tokens = ours.to_tokens(PROMPTS[0])
    for kwargs in ({}, {"top_k": 5}, {"top_p": 0.7, "temperature": 0.8}, {"freq_penalty": 1.0}):
        results = []
        for model in (ours, theirs):
            torch.manual_seed(11)
            results.append(
                model.generate(
                    tokens, max_new_tokens=10, stop_at_eos=False, verbose=False, **kwargs
                )
            )
        assert results[0].tolist() == results[1].tolist(), kwargs


# ---------------------------------------------------- input_to_embed, start/stop
@torch.no_grad()
def test_input_to_embed_returns_transformerlens_tuple(pair):
    ours, theirs = pair
    tokens = ours.to_tokens(PROMPTS[0])
    for input, kwargs in (
        (PROMPTS[0], {}),
        (tokens, {}),
        (tokens[0], {}),
        (tokens, {"attention_mask": torch.ones_like(tokens)}),
    ):
        mine, tl = ours.input_to_embed(input, **kwargs), theirs.input_to_embed(input, **kwargs)
        assert len(mine) == len(tl) == 4
        assert_close(mine[0], tl[0], ATOL, "residual")
        assert torch.equal(mine[1], tl[1]) and mine[2] is None and tl[2] is None
        assert (mine[3] is None) == (tl[3] is None), (input, kwargs)
        if mine[3] is not None:
            assert mine[3].tolist() == tl[3].tolist()
    # Strings padded on the left: TransformerLens's forward sets the padding side before
    # calling input_to_embed, which then masks the pads (called directly, it does not:
    # we always do). The logits at real tokens agree.
    real = ours.input_to_embed(PROMPTS, padding_side="left")[3].bool()
    assert real.sum(1).tolist() == [ours.to_tokens(p).shape[1] for p in PROMPTS]
    mine, tl = ours(PROMPTS, padding_side="left"), theirs(PROMPTS, padding_side="left")
    assert_close(mine[real], tl[real], ATOL, "left-padded strings")


@torch.no_grad()
def test_start_and_stop_at_layer_equal_transformerlens(tokenizer_dir):
    ours = make_model(seed=8, n_layers=4, tokenizer=_tokenizer(tokenizer_dir))
    theirs = tl_twin(ours, _tokenizer(tokenizer_dir))
    tokens = ours.to_tokens(PROMPTS)
    for stop in (None, 0, 1, 3, -1, -3):
        mine, tl = ours(tokens, stop_at_layer=stop), theirs(tokens, stop_at_layer=stop)
        assert_close(mine, tl, ATOL, f"stop_at_layer={stop}")
    resid = theirs(tokens, stop_at_layer=2)
    for start, stop in ((2, None), (-2, None), (2, 3), (2, -1), (0, -3), (-1, None)):
        resid = theirs(tokens, stop_at_layer=start if start >= 0 else 4 + start)
        mine = ours(resid, start_at_layer=start, stop_at_layer=stop)
        tl = theirs(resid, start_at_layer=start, stop_at_layer=stop)
        assert_close(mine, tl, ATOL, f"start={start}, stop={stop}")
    resid = theirs(tokens, stop_at_layer=1)
    for return_type in ("loss", "both"):
        kwargs = dict(start_at_layer=1, tokens=tokens, return_type=return_type)
        mine, tl = ours(resid, **kwargs), theirs(resid, **kwargs)
        if return_type == "both":
            assert type(mine).__name__ == type(tl).__name__ == "Output"
            assert mine._fields == tl._fields
            mine, tl = mine.loss, tl.loss
        assert_close(mine, tl, ATOL, return_type)


# ------------------------------------------------------------ hook introspection
def _state(model):
    """Every observable piece of hook state, by hook name."""
    return {
        name: (
            [(h.is_permanent, h.context_level, h.user_hook) for h in hp.fwd_hooks],
            [(h.is_permanent, h.context_level, h.user_hook) for h in hp.bwd_hooks],
            hp.has_hooks(),
            hp.has_hooks("fwd", including_permanent=False),
            hp.has_hooks("bwd", level=1),
        )
        for name, hp in model.hook_dict.items()
        if not name.startswith("unembed.") and not name.endswith(_OFF_IN_TL)
    }


# Hook points TransformerLens always has and we build only when switched on (they are
# off here), and its identity hook points around the unembedding.
_OFF_IN_TL = ("hook_result", "_input", "hook_mlp_in", "hook_attn_in")


def _f(x, hook):
    return None


def _g(x, hook):
    return None


def test_hook_introspection_follows_the_same_steps_as_transformerlens(pair, tokenizer_dir):
    ours, theirs = pair
    seen = []
    for model in (ours, theirs):
        states = []
        model.add_hook("blocks.0.hook_resid_pre", _f)
        model.add_hook(lambda n: n.endswith("hook_z"), _g, is_permanent=True)
        model.add_hook("hook_embed", _g, dir="bwd", level=1)
        model.add_hook("hook_embed", _f, prepend=True)
        model.blocks[1].attn.hook_pattern.add_perma_hook(_f)
        states.append(_state(model))
        with model.hooks(fwd_hooks=[("blocks.1.hook_resid_post", _f)]):
            assert model.context_level == 1
            with model.hooks(bwd_hooks=[("blocks.0.hook_mlp_out", _g)], reset_hooks_end=True):
                assert model.context_level == 2
                states.append(_state(model))
            states.append(_state(model))
        states.append(_state(model))
        listed = sorted(model.list_hooks().items())
        states.append({k: [(h.is_permanent, h.context_level) for h in v] for k, v in listed})
        states.append(sorted(model.list_hooks(dir="fwd", including_permanent=False)))
        model.blocks[0].attn.hook_z.remove_hooks("fwd", including_permanent=True, level=5)
        model.hook_embed.remove_hooks("both", level=1)
        states.append(_state(model))
        model.reset_hooks(direction="fwd")
        states.append(_state(model))
        model.remove_all_hook_fns(including_permanent=True)
        states.append(_state(model))
        model.hook_embed.ctx["x"] = 1
        model.reset_hooks(clear_contexts=False)
        states.append(dict(model.hook_embed.ctx))
        model.clear_contexts()
        states.append(dict(model.hook_embed.ctx))
        states.append([model.blocks[1].attn.hook_pattern.layer(), model.is_caching])
        model.run_with_cache(ours.to_tokens("a"), names_filter="hook_embed")
        states.append([model.is_caching, model.context_level])
        seen.append(states)
    for step, (mine, tl) in enumerate(zip(*seen, strict=True)):
        if isinstance(mine, dict):
            assert mine.keys() == tl.keys(), step
            assert {k: v for k, v in mine.items() if tl[k] != v} == {}, step
        assert mine == tl, step
    with pytest.raises(IndexError):
        theirs.hook_embed.layer()
    with pytest.raises(HookError, match="not in a layer"):
        ours.hook_embed.layer()


@torch.no_grad()
def test_run_with_cache_pos_slice_and_batch_dim_equal_transformerlens(pair):
    ours, theirs = pair
    tokens = ours.to_tokens(PROMPTS)
    for kwargs in ({"pos_slice": -1}, {"pos_slice": (1, 4)}, {"pos_slice": [0, 2]}):
        _, mine = ours.run_with_cache(tokens, **kwargs)
        _, tl = theirs.run_with_cache(tokens, **kwargs)
        for name in mine.keys():
            assert_close(mine[name], tl[name], ATOL, f"{name} {kwargs}")
    _, mine = ours.run_with_cache(tokens[:1], remove_batch_dim=True)
    _, tl = theirs.run_with_cache(tokens[:1], remove_batch_dim=True)
    assert_close(mine["pattern", -1], tl["pattern", -1], ATOL, "pattern -1")
    _, mine = ours.run_with_cache(tokens)
    _, tl = theirs.run_with_cache(tokens)
    for batch_slice in (1, [0, 2], (1, 3)):
        a, b = mine.apply_slice_to_batch_dim(batch_slice), tl.apply_slice_to_batch_dim(batch_slice)
        assert a.has_batch_dim == b.has_batch_dim
        assert_close(a["resid_post", 1], b["resid_post", 1], ATOL, str(batch_slice))
    cache_dict: dict = {}
    ours.cache_some(cache_dict, lambda n: n.endswith("resid_pre"))
    ours(tokens)
    ours.reset_hooks()
    assert sorted(cache_dict) == sorted(n for n in tl.keys() if n.endswith("resid_pre"))


# ------------------------------------------------------- text, loss and state dict
def test_to_string_and_tokenizer_bos_equal_transformerlens(pair):
    ours, theirs = pair
    tokens = ours.to_tokens(PROMPTS)
    for value in (5, [5, 6, 7], torch.tensor(9), tokens[0], tokens, tokens[0].numpy()):
        assert ours.to_string(value) == theirs.to_string(value), value
    assert ours.tokenizer(PROMPTS[0])["input_ids"] == theirs.tokenizer(PROMPTS[0])["input_ids"]
    assert ours.tokenizer(PROMPTS[0])["input_ids"][0] == ours.tokenizer.bos_token_id
    padded = ours.tokenizer(PROMPTS, padding=True)["input_ids"]
    assert padded == theirs.tokenizer(PROMPTS, padding=True)["input_ids"]
    assert ours.tokenizer.padding_side == theirs.tokenizer.padding_side == "right"
    for input in (PROMPTS[0], tokens[:1], tokens[0], PROMPTS, tokens[0].numpy()):
        assert ours.to_str_tokens(input) == theirs.to_str_tokens(input)
    assert ours.to_single_str_token(7) == theirs.to_single_str_token(7)
    for mode in ("first", "last"):
        for token in (" the", ours.to_single_token(" the")):
            assert ours.get_token_position(token, PROMPTS[0], mode=mode) == (
                theirs.get_token_position(token, PROMPTS[0], mode=mode)
            )


def test_default_padding_side_left_as_transformerlens(tokenizer_dir, pair):
    ours, theirs = pair
    from transformer_lens import HookedTransformer as TLHookedTransformer

    left = HookedTransformer(ours.cfg, _tokenizer(tokenizer_dir), default_padding_side="left")
    left.load_state_dict(ours.state_dict())
    tl_left = TLHookedTransformer(
        theirs.cfg, _tokenizer(tokenizer_dir), default_padding_side="left"
    )
    tl_left.load_state_dict(theirs.state_dict())
    assert left.tokenizer.padding_side == tl_left.tokenizer.padding_side == "left"
    assert left.to_tokens(PROMPTS).tolist() == tl_left.to_tokens(PROMPTS).tolist()
    with torch.no_grad():
        tokens = left.to_tokens(PROMPTS)
        mine, tl = left(tokens), tl_left.eval()(tokens)  # the mask comes from the pads
        real = left.input_to_embed(tokens)[3].bool()
        assert real.tolist() == tl_left.input_to_embed(tokens)[3].bool().tolist()
        assert_close(mine[real], tl[real], ATOL, "left-padded logits")


@torch.no_grad()
def test_loss_fn_equals_transformerlens(pair):
    ours, theirs = pair
    tokens = ours.to_tokens(PROMPTS)
    logits = ours(tokens)
    mask = (tokens != 0).long()
    mask[:, 0] = 1
    for kwargs in ({}, {"per_token": True}, {"attention_mask": mask}):
        mine, tl = ours.loss_fn(logits, tokens, **kwargs), theirs.loss_fn(logits, tokens, **kwargs)
        assert_close(mine, tl, 1e-6, str(kwargs))
    assert_close(ours(tokens, return_type="loss"), theirs(tokens, return_type="loss"), ATOL, "loss")


@torch.no_grad()
def test_transformerlens_state_dict_loads_strictly(pair, tokenizer_dir):
    ours, theirs = pair
    fresh = HookedTransformer(ours.cfg.replace(seed=123), _tokenizer(tokenizer_dir))
    result = fresh.load_state_dict(theirs.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    tokens = ours.to_tokens(PROMPTS[0])
    assert_close(fresh(tokens), theirs(tokens), ATOL, "logits after loading TL's weights")


def test_tokenizer_from_cfg_tokenizer_name(tokenizer_dir, caplog):
    cfg = ModelConfig(
        n_layers=1, d_model=16, d_head=8, n_heads=2, n_ctx=32, d_vocab=-1,
        tokenizer_name=str(tokenizer_dir),
    )  # fmt: skip
    model = HookedTransformer(cfg)
    assert model.cfg.d_vocab == len(make_tokenizer())
    assert model.tokenizer("hi")["input_ids"][0] == model.tokenizer.bos_token_id
    missing = str(tokenizer_dir / "missing")
    with caplog.at_level(logging.WARNING):
        bare = HookedTransformer(cfg.replace(tokenizer_name=missing, d_vocab=50))
    assert bare.tokenizer is None and "tokenizer_name" in caplog.text and missing in caplog.text
    with pytest.raises(InputError, match="no tokenizer"):
        bare("hi")


@torch.no_grad()
def test_from_pretrained_accepts_transformerlens_arguments(tiny_gpt2_dir, build_tl_model):
    tl = build_tl_model(tiny_gpt2_dir)
    model = HookedTransformer.from_pretrained(
        tiny_gpt2_dir, default_padding_side="left", move_to_device=False, n_devices=1
    )
    assert model.tokenizer.padding_side == "left" and model.cfg.device == "cpu"
    tokens = model.to_tokens("When Mary and John went to the store", padding_side="right")
    assert_close(model(tokens), tl(tokens), 1e-4, "logits")
    with pytest.raises(ConfigError, match="n_devices"):
        HookedTransformer.from_pretrained(tiny_gpt2_dir, n_devices=2)
    first = HookedTransformer.from_pretrained(tiny_gpt2_dir, first_n_layers=1)
    assert first.cfg.n_layers == 1 and len(first.blocks) == 1
    resid = model(tokens, stop_at_layer=1)
    assert_close(first(tokens), model.unembed(model.ln_final(resid)), 1e-5, "first_n_layers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    hf.transformer.h[1].mlp.c_proj.weight.mul_(2.0)  # weights that differ from the folder's
    edited = HookedTransformer.from_pretrained(
        tiny_gpt2_dir, hf_model=hf, torch_dtype=torch.float32
    )
    assert edited.cfg.model_name == tiny_gpt2_dir.name and edited.tokenizer is not None
    expected = hf(tokens).logits.log_softmax(-1)
    assert_close(edited(tokens).log_softmax(-1), expected, 1e-4, "hf_model")


@torch.no_grad()
def test_process_weights_in_place_equals_transformerlens(pair, tokenizer_dir):
    ours, theirs = pair
    from transformer_lens import HookedTransformer as TLHookedTransformer

    mine = make_model(seed=7, tokenizer=_tokenizer(tokenizer_dir))
    tl = TLHookedTransformer(theirs.cfg, _tokenizer(tokenizer_dir))
    tl.load_state_dict(theirs.state_dict())
    mine.process_weights_()
    tl.process_weights_()
    assert mine.cfg.normalization_type == tl.cfg.normalization_type == "LNPre"
    tokens = mine.to_tokens(PROMPTS)
    assert_close(mine(tokens), tl.eval()(tokens), 1e-4, "logits after process_weights_")
    sd = {k: v for k, v in theirs.state_dict().items() if not k.endswith((".mask", ".IGNORE"))}
    for step in ("center_writing_weights", "center_unembed", "fold_value_biases"):
        a, b = getattr(ours, step)(dict(sd)), getattr(theirs, step)(dict(sd))
        for key in ("unembed.W_U", "blocks.1.attn.b_O", "embed.W_E"):
            assert_close(a[key], b[key], 1e-5, f"{step} {key}")


def test_to_and_cpu_record_the_device_and_dtype_in_cfg(pair):
    ours, theirs = pair
    model = make_model(seed=2)
    assert model.to(torch.float64) is model and model.cfg.dtype == torch.float64
    assert model.W_E.dtype == torch.float64
    model.cpu()
    assert model.cfg.device == "cpu" and theirs.cpu().cfg.device == "cpu"
    assert model.n_params_total == sum(p.numel() for p in model.parameters())
    assert ours.W_gate is None and theirs.W_gate is None


def test_a_dict_config_is_accepted_as_in_transformerlens():
    fields = dict(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8, d_vocab=10)
    assert HookedTransformer(fields).cfg == ModelConfig(**fields)
    with pytest.raises(ConfigError, match="d_model"):
        HookedTransformer({"n_layers": 1})


@torch.no_grad()
def test_load_and_process_state_dict_equals_transformerlens(pair, tokenizer_dir):
    ours, theirs = pair
    from transformer_lens import HookedTransformer as TLHookedTransformer

    sd = theirs.state_dict()
    mine = HookedTransformer(ours.cfg, _tokenizer(tokenizer_dir))
    tl = TLHookedTransformer(theirs.cfg, _tokenizer(tokenizer_dir))
    for model in (mine, tl):
        model.load_and_process_state_dict(dict(sd), refactor_factored_attn_matrices=True)
    tokens = ours.to_tokens(PROMPTS)
    assert mine.cfg.normalization_type == tl.cfg.normalization_type == "LNPre"
    assert_close(mine(tokens), tl.eval()(tokens), 1e-4, "logits")
    assert_close(mine.W_Q, tl.W_Q, 1e-4, "W_Q after refactoring")
    partial = {k: v for k, v in sd.items() if k != "blocks.0.attn.b_O"}
    filled = ours.fill_missing_keys(partial)
    assert torch.equal(filled["blocks.0.attn.b_O"], ours.blocks[0].attn.b_O)
    with pytest.raises(Exception, match="W_O"):
        ours.fill_missing_keys({k: v for k, v in sd.items() if k != "blocks.0.attn.W_O"})


@torch.no_grad()
def test_generate_stream_yields_as_transformerlens(pair):
    ours, theirs = pair
    tokens = ours.to_tokens(PROMPTS[1])
    for kwargs in (
        dict(max_new_tokens=9, max_tokens_per_yield=3, stop_at_eos=False),
        dict(max_new_tokens=9, max_tokens_per_yield=25),
        dict(max_new_tokens=0),
    ):
        kwargs = {**kwargs, "do_sample": False, "verbose": False}
        mine = [t.tolist() for t in ours.generate_stream(tokens, **kwargs)]
        tl = [t.tolist() for t in theirs.generate_stream(tokens, **kwargs)]
        assert mine == tl, kwargs


@torch.no_grad()
def test_generate_from_the_empty_string_starts_at_bos_as_transformerlens(pair):
    ours, theirs = pair
    kwargs = dict(max_new_tokens=5, do_sample=False, verbose=False, return_type="tokens")
    mine, tl = ours.generate("", **kwargs), theirs.generate("", **kwargs)
    assert mine.shape == tl.shape and mine[0, 0] == tl[0, 0] == ours.tokenizer.bos_token_id
    # With BOS = pad (GPT-2), TransformerLens's mask calls the lone BOS a trailing pad; a
    # query that sees no real key gets a zero pattern there, itself here, so the tokens
    # differ. At that padding position both add no positional embedding.
    mask = torch.zeros(1, 1, dtype=torch.long)
    _, cache = ours.run_with_cache(mine[:, :1], attention_mask=mask)
    _, tl_cache = theirs.run_with_cache(mine[:, :1], attention_mask=mask)
    assert_close(cache["hook_pos_embed"], tl_cache["hook_pos_embed"], 0, "pos_embed at a pad")
    with pytest.raises(InputError, match="empty"):
        ours("")
