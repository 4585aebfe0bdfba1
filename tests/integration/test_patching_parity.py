"""Activation patching equals TransformerLens 3.9's `patching` on the same weights.

A random GPT-2-shaped model is built in lookingglass and its state dict loaded into
TransformerLens; every `get_act_patch_*` function must give TransformerLens's numbers
(within 1e-5), batched or not, with the metric declared batched or position-restricted.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from lookingglass import HookedTransformer, ModelConfig, patching
from lookingglass.interventions import declare_metric

transformer_lens = pytest.importorskip("transformer_lens")
from transformer_lens import patching as tl_patching  # noqa: E402

CONFIG = dict(
    n_layers=3,
    d_model=64,
    n_heads=4,
    d_head=16,
    d_vocab=100,
    n_ctx=32,
    act_fn="gelu_new",
    normalization_type="LN",
)
ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny matrices: threads only add contention on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models():
    ours = HookedTransformer(ModelConfig(**CONFIG, seed=3)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tl = transformer_lens.HookedTransformer(transformer_lens.HookedTransformerConfig(**CONFIG))
    tl.load_state_dict(ours.state_dict(), strict=False)
    return ours, tl.eval()


@pytest.fixture(scope="module")
def runs(models):
    ours, tl = models
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 100, (2, 5), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 1:3] = torch.randint(0, 100, (2, 2), generator=gen)
    with torch.no_grad():
        _, our_cache = ours.run_with_cache(clean)
        _, tl_cache = tl.run_with_cache(clean)
    return clean, corrupted, our_cache, tl_cache


@pytest.fixture(autouse=True)
def quiet_tqdm(monkeypatch):
    monkeypatch.setattr(tl_patching, "tqdm", lambda iterable, *a, **k: iterable)


def metric(logits):
    """A logit difference at the last position plus a term reading every position."""
    return (logits[:, -1, 3] - logits[:, -1, 7]).mean() + 0.1 * logits[:, :, 11].mean()


def last_position_metric(logits):
    return (logits[:, -1, 3] - logits[:, -1, 7]).mean()


FUNCTIONS = [
    "get_act_patch_resid_pre",
    "get_act_patch_resid_mid",
    "get_act_patch_attn_out",
    "get_act_patch_mlp_out",
    "get_act_patch_attn_head_out_by_pos",
    "get_act_patch_attn_head_q_by_pos",
    "get_act_patch_attn_head_k_by_pos",
    "get_act_patch_attn_head_v_by_pos",
    "get_act_patch_attn_head_pattern_by_pos",
    "get_act_patch_attn_head_pattern_dest_src_pos",
    "get_act_patch_attn_head_out_all_pos",
    "get_act_patch_attn_head_q_all_pos",
    "get_act_patch_attn_head_k_all_pos",
    "get_act_patch_attn_head_v_all_pos",
    "get_act_patch_attn_head_pattern_all_pos",
    "get_act_patch_block_every",
    "get_act_patch_attn_head_all_pos_every",
    "get_act_patch_attn_head_by_pos_every",
]


EVERY = [name for name in FUNCTIONS if name.endswith("_every")]
_tl_results: dict[str, torch.Tensor] = {}


def tl_result(name, tl, corrupted, tl_cache):
    """TransformerLens's result, computed once per function (its sweeps are slow)."""
    if name not in _tl_results:
        with torch.no_grad():
            _tl_results[name] = getattr(tl_patching, name)(tl, corrupted, tl_cache, metric)
    return _tl_results[name]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_equals_transformer_lens(models, runs, name, monkeypatch):
    ours, tl = models
    clean, corrupted, our_cache, tl_cache = runs
    if name in EVERY:
        # TransformerLens's *_every functions stack its single sweeps, looked up as module
        # globals: serve those from the results above instead of rerunning them.
        for single in set(FUNCTIONS) - set(EVERY):
            result = tl_result(single, tl, corrupted, tl_cache)
            monkeypatch.setattr(tl_patching, single, lambda *args, _r=result: _r)
    expected = tl_result(name, tl, corrupted, tl_cache)
    with torch.no_grad():
        got = getattr(patching, name)(ours, corrupted, our_cache, metric)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype == torch.float32
    assert ours.num_hooks() == 0
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "name",
    [
        "get_act_patch_resid_pre",
        "get_act_patch_attn_head_v_by_pos",
        "get_act_patch_attn_head_pattern_by_pos",
    ],
)
def test_batched_equals_one_variant_per_forward(models, runs, name):
    ours, _ = models
    clean, corrupted, our_cache, _ = runs
    fn = getattr(patching, name)
    one_by_one = fn(ours, corrupted, our_cache, metric, batch_size=1)
    torch.testing.assert_close(
        fn(ours, corrupted, our_cache, metric), one_by_one, atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        fn(ours, corrupted, our_cache, metric, batch_size=7), one_by_one, atol=ATOL, rtol=0
    )


def test_declared_metrics_give_the_same_numbers(models, runs):
    ours, _ = models
    clean, corrupted, our_cache, _ = runs
    plain = patching.get_act_patch_attn_head_out_by_pos(
        ours, corrupted, our_cache, last_position_metric
    )

    @declare_metric(batched=True)
    def batched(logits):  # [n_variants, batch, pos, d_vocab] -> [n_variants]
        return (logits[:, :, -1, 3] - logits[:, :, -1, 7]).mean(-1)

    last_only = declare_metric(last_position_metric, positions=[-1])
    both = declare_metric(batched.fn, batched=True, positions=[4])
    for declared in (batched, last_only, both):
        got = patching.get_act_patch_attn_head_out_by_pos(ours, corrupted, our_cache, declared)
        torch.testing.assert_close(got, plain, atol=ATOL, rtol=0)


def test_position_declaration_hides_other_positions(models, runs):
    ours, _ = models
    clean, corrupted, our_cache, _ = runs
    reads_all = declare_metric(metric, positions=[-1])
    got = patching.get_act_patch_resid_pre(ours, corrupted, our_cache, reads_all)
    assert got.isnan().all(), "a metric reading undeclared positions must see NaN, not stale logits"


def test_index_df_and_custom_setter_match_transformer_lens(models, runs):
    pd = pytest.importorskip("pandas")
    ours, tl = models
    clean, corrupted, our_cache, tl_cache = runs
    index_df = pd.DataFrame({"layer": [2, 0, 1, 1], "pos": [4, 1, -1, 0], "head": [3, 0, 2, 1]})
    kwargs = dict(activation_name="z", index_df=index_df)
    expected = tl_patching.generic_activation_patch(
        tl, corrupted, tl_cache, metric, tl_patching.layer_pos_head_vector_patch_setter, **kwargs
    )
    got, df = patching.generic_activation_patch(
        ours,
        corrupted,
        our_cache,
        metric,
        patching.layer_pos_head_vector_patch_setter,
        return_index_df=True,
        **kwargs,
    )
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert df is index_df

    def scaled_setter(corrupted_activation, index, clean_activation):
        layer, head = index
        corrupted_activation[:, :, head] = 0.5 * (
            corrupted_activation[:, :, head] + clean_activation[:, :, head]
        )
        return corrupted_activation

    args = (metric, scaled_setter, "v", ("layer", "head"))
    expected = tl_patching.generic_activation_patch(tl, corrupted, tl_cache, *args)
    got = patching.generic_activation_patch(ours, corrupted, our_cache, *args)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_patching_the_clean_run_into_itself_changes_nothing(models, runs):
    ours, _ = models
    clean, _, our_cache, _ = runs
    clean_value = metric(ours(clean)).item()
    for name in (
        "get_act_patch_resid_pre",
        "get_act_patch_attn_head_pattern_by_pos",
        "get_act_patch_attn_head_k_all_pos",
    ):
        got = getattr(patching, name)(ours, clean, our_cache, metric)
        torch.testing.assert_close(got, torch.full_like(got, clean_value), atol=ATOL, rtol=0)


def test_patching_all_positions_of_resid_pre_reproduces_the_source_run(models, runs):
    ours, _ = models
    clean, corrupted, our_cache, _ = runs
    clean_logits = ours(clean).detach()

    def whole_activation(corrupted_activation, index, clean_activation):
        return clean_activation.clone()

    def distance(logits):
        return (logits - clean_logits).abs().max()

    got = patching.generic_activation_patch(
        ours, corrupted, our_cache, distance, whole_activation, "resid_pre", ("layer",)
    )
    assert got.shape == (3,)
    assert got.max().item() < ATOL


def test_a_failing_metric_leaves_no_hooks_behind(models, runs):
    ours, _ = models
    clean, corrupted, our_cache, _ = runs

    def broken(logits):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        patching.get_act_patch_attn_head_pattern_by_pos(ours, corrupted, our_cache, broken)
    assert ours.num_hooks() == 0
