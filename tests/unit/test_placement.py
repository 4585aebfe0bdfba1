"""One model over several devices (`lookingglass.model.placement`).

The split is checked against TransformerLens 3.9's own `get_device_for_block_index` (the
device index of each block) on pretend CUDA machines; placing and running is checked on
the CPU (a plan whose devices are all "cpu" runs through the same pre-hooks), and for
real on two or more CUDA devices where a machine has them (the test says so when it
does not run).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformer_lens.utilities.multi_gpu import get_device_for_block_index

from lookingglass import HookedTransformer, ModelConfig, utils
from lookingglass.errors import ConfigError
from lookingglass.model import placement


def _model(n_layers: int = 3) -> HookedTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_layers=n_layers, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=16,
        act_fn="gelu", normalization_type="LN", device="cpu",
    )  # fmt: skip
    return HookedTransformer(cfg)


@pytest.fixture
def eight_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)


@pytest.mark.parametrize("n_layers, n_devices", [(3, 2), (12, 4), (30, 8), (62, 8), (5, 5)])
def test_n_devices_split_matches_transformerlens(eight_gpus, n_layers, n_devices):
    model = _model(n_layers)
    tl_cfg = SimpleNamespace(device="cuda", n_devices=n_devices, n_layers=n_layers)
    plan = placement.plan_for_n_devices(model, n_devices, "cuda")
    for i in range(n_layers):
        assert plan[f"blocks.{i}"] == get_device_for_block_index(i, tl_cfg)
        assert utils.get_device_for_block_index(i, tl_cfg) == plan[f"blocks.{i}"]
    assert plan["embed"] == plan["pos_embed"] == get_device_for_block_index(0, tl_cfg)
    last = get_device_for_block_index(n_layers - 1, tl_cfg)
    assert plan["ln_final"] == plan["unembed"] == last
    assert {d.index for d in plan.values()} == set(range(n_devices))


def test_split_starts_at_the_given_device(eight_gpus):
    plan = placement.plan_for_n_devices(_model(4), 2, "cuda:3")
    assert [plan[f"blocks.{i}"].index for i in range(4)] == [3, 3, 4, 4]


def test_device_map_dict_groups_and_defaults(eight_gpus):
    model = _model(3)
    plan = placement.plan_for_device_map(model, {"blocks": 1, "blocks.2": "cuda:2", "": "cpu"})
    assert plan["embed"] == plan["unembed"] == torch.device("cpu")
    assert plan["blocks.0"] == plan["blocks.1"] == torch.device("cuda", 1)
    assert plan["blocks.2"] == torch.device("cuda", 2)


@pytest.mark.parametrize(
    "device_map, message",
    [
        ({"blocks.7": "cpu", "": "cpu"}, "not parts of this model"),
        ({"embed": "cpu", "blocks": "cpu"}, "does not place 'pos_embed'"),
        ({"": "meta"}, "offloading to meta"),
        ({"": "disk"}, "not a device"),
        ("sequential", "use 'auto', 'balanced'"),
    ],
)
def test_bad_device_maps_are_refused_with_the_reason(device_map, message):
    with pytest.raises(ConfigError, match=message):
        placement.plan_for_device_map(_model(3), device_map)


def test_more_devices_than_the_machine_has_is_refused_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="CUDA devices"):
        HookedTransformer.from_pretrained(str(tmp_path / "not-even-there"), n_devices=64)
    with pytest.raises(ConfigError, match="splits the blocks over CUDA devices"):
        placement.check_n_devices(torch.device("cpu"), 2)


def test_placed_model_runs_hooks_and_caches_like_the_unplaced_one():
    model = _model(3)
    tokens = torch.randint(0, 50, (2, 10))
    expected_logits, expected_cache = model.run_with_cache(tokens)
    model.place_on_devices(device_map={"": "cpu", "blocks.1": torch.device("cpu")})
    assert len(model._placement_handles) == len(placement.parts(model))
    model.reset_hooks(including_permanent=True)  # hook-point hooks only
    assert len(model._placement_handles) == len(placement.parts(model))
    logits, cache = model.run_with_cache(tokens)
    assert torch.equal(logits, expected_logits)
    assert set(cache.keys()) == set(expected_cache.keys())
    for name in expected_cache.keys():
        assert torch.equal(cache[name], expected_cache[name]), name

    def zero_head(z, hook):
        z[:, :, 1] = 0
        return z

    patched = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", zero_head)])
    assert not torch.allclose(patched, logits)
    assert torch.equal(model(tokens), logits)  # the temporary hook is gone
    model.to("cpu")
    assert "_placement_handles" not in model.__dict__ and model.cfg.n_devices == 1


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_split_over_two_gpus_equals_one_gpu():
    model = _model(4).to("cuda:0")
    tokens = torch.randint(0, 50, (2, 12), device="cuda:0")
    expected_logits, expected_cache = model.run_with_cache(tokens)
    expected_text = model.generate(tokens[:1, :4], max_new_tokens=6, do_sample=False)
    model.place_on_devices(n_devices=2)
    assert model.blocks[3].attn.W_Q.device == torch.device("cuda", 1)
    logits, cache = model.run_with_cache(tokens)
    assert logits.device == torch.device("cuda", 1)
    torch.testing.assert_close(logits.to("cuda:0"), expected_logits, atol=1e-6, rtol=0)
    assert cache["blocks.3.hook_resid_post"].device == torch.device("cuda", 1)
    for name in expected_cache.keys():
        torch.testing.assert_close(
            cache[name].to("cuda:0"), expected_cache[name], atol=1e-6, rtol=0
        )
    text = model.generate(tokens[:1, :4], max_new_tokens=6, do_sample=False)
    assert torch.equal(text.to("cuda:0"), expected_text)
