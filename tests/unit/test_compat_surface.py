"""TransformerLens 3.9's public surface exists in lookingglass: every module path users
import, every `utils` name, every `HookedTransformerConfig` field, the top-level names;
each is ours, or raises `NotSupportedError` naming our equivalent. Lists of names are
read from the installed transformer_lens, not written here."""

from __future__ import annotations

import dataclasses
import importlib
import warnings

import pytest
import torch

import lookingglass
from lookingglass import (
    ConfigError,
    HookError,
    InputError,
    LookingGlassError,
    ModelConfig,
    NotSupportedError,
    utils,
)
from lookingglass.errors import CheckpointError, UnsupportedArchitectureError

TL_MODULE_PATHS = [
    "hook_points",
    "ActivationCache",
    "FactoredMatrix",
    "HookedTransformer",
    "HookedRootModule",
    "SVDInterpreter",
    "components",
    "head_detector",
    "loading_from_pretrained",
    "evals",
    "patching",
    "utils",
    "utilities",
]
TINY = dict(n_layers=1, d_model=16, n_ctx=8, d_head=4)


def _tl(module: str = ""):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("transformer_lens" + (f".{module}" if module else ""))


def _present_or_refused(module, name: str) -> bool:
    try:
        getattr(module, name)
    except NotSupportedError as error:
        assert str(error), name
    return True


@pytest.mark.parametrize("path", TL_MODULE_PATHS)
def test_module_path_imports(path):
    importlib.import_module(f"lookingglass.{path}")


def test_class_modules_are_classes_at_top_level():
    from lookingglass.ActivationCache import ActivationCache
    from lookingglass.cache import ActivationCache as ours
    from lookingglass.FactoredMatrix import FactoredMatrix
    from lookingglass.HookedTransformer import HookedTransformer
    from lookingglass.SVDInterpreter import SVDInterpreter

    assert ActivationCache is ours is lookingglass.ActivationCache
    assert lookingglass.FactoredMatrix is FactoredMatrix
    assert lookingglass.HookedTransformer is HookedTransformer
    assert lookingglass.SVDInterpreter is SVDInterpreter


def test_every_transformerlens_utils_name():
    tl_utils = _tl("utils")
    names = set(tl_utils.__all__) | {
        n for n in dir(tl_utils) if not n.startswith("_") and callable(getattr(tl_utils, n))
    }
    for name in sorted(names):
        assert name in utils.NOT_PROVIDED or hasattr(utils, name), name
    for name in tl_utils.__all__:
        assert hasattr(utils, name), name  # everything TransformerLens exports, for real
    with pytest.raises(NotSupportedError, match="device"):
        utils.get_best_available_device  # noqa: B018


@pytest.mark.parametrize(
    "module", ["", "components", "head_detector", "hook_points", "loading_from_pretrained"]
)
def test_every_public_name_of_module(module):
    theirs = _tl(module if module != "loading_from_pretrained" else "loading_from_pretrained")
    ours = importlib.import_module("lookingglass" + (f".{module}" if module else ""))
    wanted = set(getattr(theirs, "__all__", [])) or {
        n
        for n in dir(theirs)
        if not n.startswith("_")
        and getattr(getattr(theirs, n), "__module__", "") == theirs.__name__
    }
    if module == "loading_from_pretrained":  # TL's public functions and tables users import
        wanted = {
            "OFFICIAL_MODEL_NAMES",
            "MODEL_ALIASES",
            "PYTHIA_CHECKPOINTS",
            "get_official_model_name",
            "get_pretrained_model_config",
            "get_checkpoint_labels",
            "convert_hf_model_config",
            "make_model_alias_map",
            "get_num_params_of_pretrained",
        }
    for name in sorted(wanted):
        assert _present_or_refused(ours, name), name


def test_patching_names():
    tl_patching = _tl("patching")
    from lookingglass import patching

    wanted = [n for n in dir(tl_patching) if n.startswith(("get_act_patch", "layer_", "generic"))]
    assert wanted
    assert [n for n in wanted if not hasattr(patching, n)] == []


def test_config_accepts_every_transformerlens_field_at_its_default():
    tl_config = _tl("config").HookedTransformerConfig
    ours = {f.name for f in dataclasses.fields(ModelConfig)}
    theirs = [f for f in dataclasses.fields(tl_config)]
    assert [f.name for f in theirs if f.name not in ours] == []
    defaults = {
        f.name: f.default
        for f in theirs
        if f.default is not dataclasses.MISSING and f.name not in ("device", "n_params")
    }
    cfg = ModelConfig(**{**defaults, **TINY, "d_vocab": 10})
    assert cfg.act_fn == tl_config(**TINY, d_vocab=10, device="cpu").act_fn == "relu"


def test_config_matches_transformerlens_derived_fields():
    tl_config = _tl("config").HookedTransformerConfig
    for extra in ({}, {"attn_only": True}, {"gated_mlp": True, "act_fn": "silu"}):
        ours = ModelConfig(**TINY, d_vocab=10, **extra)
        theirs = tl_config(**TINY, d_vocab=10, device="cpu", **extra)
        for name in ("n_params", "n_heads", "d_mlp", "d_vocab_out", "attn_scale"):
            if not (extra.get("attn_only") and name == "d_mlp"):
                assert getattr(ours, name) == getattr(theirs, name), (extra, name)
        assert ours.initializer_range == pytest.approx(theirs.initializer_range)


def test_config_is_mutable_and_keeps_replace():
    cfg = ModelConfig(**TINY)
    cfg.default_prepend_bos = False
    assert cfg.default_prepend_bos is False
    assert cfg.replace(d_head=8).attn_scale == pytest.approx(8**0.5)
    assert ModelConfig.unwrap(cfg.to_dict()) == cfg
    assert ModelConfig.unwrap(cfg) is cfg


@pytest.mark.parametrize(
    "field, value",
    [
        ("attention_dir", "bidirectional"),
        ("positional_embedding_type", "shortformer"),
        ("act_fn", "solu_ln"),
        ("n_devices", 2),
        ("use_attention_sinks", True),
        ("init_mode", "xavier_normal"),
    ],
)
def test_unimplemented_transformerlens_features_are_refused_by_name(field, value):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**TINY, **{field: value})


def test_transformerlens_synonyms_stay_in_step():
    cfg = ModelConfig(**TINY, use_normalization_before_and_after=True)
    assert cfg.norm_placement == "pre_and_post"
    cfg = ModelConfig(**TINY, initializer_range=0.02)
    assert cfg.init_range == 0.02
    rope = ModelConfig(**TINY, positional_embedding_type="rotary", use_NTK_by_parts_rope=True)
    assert rope.rope_scaling["rope_type"] == "llama3"
    assert rope.rope_scaling["factor"] == 8.0
    assert rope.replace(rope_scaling=None).use_NTK_by_parts_rope is False


def test_errors_are_also_the_builtins_transformerlens_raises():
    assert issubclass(ConfigError, AssertionError) and issubclass(ConfigError, ValueError)
    assert issubclass(InputError, AssertionError) and issubclass(InputError, ValueError)
    assert issubclass(HookError, KeyError)
    assert issubclass(CheckpointError, OSError)
    assert issubclass(UnsupportedArchitectureError, NotImplementedError)
    assert issubclass(NotSupportedError, NotImplementedError)
    for error in (ConfigError, InputError, HookError, CheckpointError, NotSupportedError):
        assert issubclass(error, LookingGlassError)
        assert str(error("a\nb")) == "a\nb"
    with pytest.raises(AssertionError):  # as a TransformerLens test would write it
        ModelConfig(n_layers=0, d_model=16, n_ctx=8, d_head=4)


def test_unknown_hook_name_is_a_key_error():
    from lookingglass import HookedTransformer

    model = HookedTransformer(ModelConfig(**TINY, d_vocab=10))
    with pytest.raises(KeyError):
        model.run_with_hooks(torch.zeros(1, 3, dtype=torch.long), fwd_hooks=[("nope", print)])


def test_not_provided_names_say_what_to_use():
    from lookingglass import components, hook_points

    with pytest.raises(NotSupportedError, match="HookHandle"):
        hook_points.LensHandle  # noqa: B018
    with pytest.raises(NotSupportedError, match="HookedAutoModel"):
        components.T5Block  # noqa: B018
    with pytest.raises(NotSupportedError, match="HookedAutoModel"):
        lookingglass.HookedEncoderDecoder  # noqa: B018


def test_loading_from_pretrained_names():
    from lookingglass import loading_from_pretrained as lfp

    assert lfp.get_official_model_name("GPT2-small") == "openai-community/gpt2"
    assert "gpt2-small" in lfp.MODEL_ALIASES["openai-community/gpt2"]
    assert "openai-community/gpt2" in lfp.OFFICIAL_MODEL_NAMES
    with pytest.raises(ValueError, match="not a folder"):
        lfp.get_official_model_name("no-such-model-xyz")
    tl_lfp = _tl("loading_from_pretrained")
    labels, kind = lfp.get_checkpoint_labels("pythia-70m")
    assert (labels, kind) == tuple(tl_lfp.get_checkpoint_labels("pythia-70m"))


def test_get_pretrained_model_config_from_a_hugging_face_config():
    from transformers import GPT2Config

    from lookingglass import loading_from_pretrained as lfp

    hf = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=50, n_positions=16).to_dict()
    cfg = lfp.get_pretrained_model_config("gpt2", hf_cfg=hf, fold_ln=True, device="cpu")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_ctx) == (2, 32, 4, 16)
    assert cfg.normalization_type == "LNPre" and cfg.layer_norm_folding
    assert lfp.get_pretrained_model_config("gpt2", hf_cfg=hf, first_n_layers=1).n_layers == 1


def test_mutating_model_cfg_takes_effect_as_in_transformerlens():
    from lookingglass import HookedTransformer
    from tests._helpers import make_tokenizer

    tokenizer = make_tokenizer()
    model = HookedTransformer(ModelConfig(**TINY, d_vocab=len(tokenizer)), tokenizer)
    with_bos = model.to_tokens("the dog")
    model.cfg.default_prepend_bos = False
    assert model.to_tokens("the dog").tolist() == [with_bos[0, 1:].tolist()]


def test_hub_data_functions_fail_clearly_offline(monkeypatch):
    import datasets

    from lookingglass import evals

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError, match="Dataset.from_dict"):
        utils.get_dataset("pile")
    with pytest.raises(ValueError, match="not supported"):
        utils.get_dataset("no-such-dataset")
    with pytest.raises(InputError, match="make_data_loader_from_texts"):
        evals.make_wiki_data_loader(tokenizer=None)
    with pytest.raises(NotSupportedError, match="hf_hub_download"):
        utils.download_file_from_hf("org/repo", "file.pth")
