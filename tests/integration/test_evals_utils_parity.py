"""Each `lookingglass.utils` / `lookingglass.evals` function gives what TransformerLens
3.9's gives on the same inputs (the same random draws where a function samples; models
with the same tiny random weights where one is needed)."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch

from lookingglass import evals, utils
from tests._analysis_helpers import tl_twin
from tests._helpers import CORPUS, make_model, one_cpu_thread, save_and_reload_tokenizer


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def tl():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import transformer_lens.utils as tl_utils
    return tl_utils


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return save_and_reload_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def models(tokenizer):
    model = make_model(seed=5, tokenizer=tokenizer, n_ctx=256)  # sanity_check: 221 tokens
    return model, tl_twin(model, tokenizer)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    else:
        np.testing.assert_array_equal(a, b)


def test_activation_functions(tl):
    x = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0)) * 3
    for name in ("gelu_new", "gelu_fast", "solu"):
        _same(getattr(utils, name)(x), getattr(tl, name)(x))
    for name in utils.SUPPORTED_ACTIVATIONS:
        _same(utils.SUPPORTED_ACTIVATIONS[name](x), tl.SUPPORTED_ACTIVATIONS[name](x))
    for cap in (None, -1.0, 0.0, 2.5):
        assert utils.softcap_enabled(cap) == tl.softcap_enabled(cap)
        _same(utils.apply_softcap(x, cap), tl.apply_softcap(x, cap))


def test_tensor_helpers(tl):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 4, generator=g)
    batch1 = torch.randn(1, 3, 2, generator=g)
    for fn in ("get_corner", "transpose", "is_square", "is_lower_triangular"):
        for t in (x, x.tril(), torch.randn(2, 3, generator=g), torch.randn(5, 5, 5, generator=g)):
            _same(getattr(utils, fn)(t), getattr(tl, fn)(t))
    _same(utils.remove_batch_dim(batch1), tl.remove_batch_dim(batch1))
    _same(utils.remove_batch_dim(x), tl.remove_batch_dim(x))
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0], [0, 1, 1, 0, 1]])
    for offset in (0, 2):
        _same(utils.get_offset_position_ids(offset, mask), tl.get_offset_position_ids(offset, mask))
    for dim in (0, 1, -1):
        for reverse in (False, True):
            _same(
                utils.get_cumsum_along_dim(x, dim, reverse),
                tl.get_cumsum_along_dim(x, dim, reverse),
            )
    resid = torch.randn(2, 3, 4, generator=g)
    for clone in (True, False):
        _same(
            utils.repeat_along_head_dimension(resid, 5, clone),
            tl.repeat_along_head_dimension(resid, 5, clone),
        )
    d = {"a.b.c": 1, "a.b": 2, "a.bc": 3, "x.a.b": 4}
    for prefix in ("a", "a.", "a.b", "x"):
        assert utils.filter_dict_by_prefix(d, prefix) == tl.filter_dict_by_prefix(d, prefix)
    for value in (x, x.to(torch.bfloat16), x.half(), [1, 2], (1.5,), 3, "s", np.ones(2)):
        _same(utils.to_numpy(value), tl.to_numpy(value))
    for fn in ("get_nested_attr",):
        assert getattr(utils, fn)(torch, "nn.functional.relu") is tl.get_nested_attr(
            torch, "nn.functional.relu"
        )


def test_check_structure_prints_the_same(tl, capsys):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 5, generator=g)
    for b in (a * 2, a.flip(0), a.T):
        for verbose in (False, True):
            utils.check_structure(a, b, verbose=verbose)
            ours = capsys.readouterr().out
            tl.check_structure(a, b, verbose=verbose)
            assert ours == capsys.readouterr().out


def test_initialization(tl):
    for shape in ((6,), (6, 4), (3, 6, 4)):
        assert utils.calc_fan_in_and_fan_out(torch.empty(shape)) == tl.calc_fan_in_and_fan_out(
            torch.empty(shape)
        )
        for name, kwargs in [
            ("init_xavier_uniform_", {"gain": 0.5}),
            ("init_xavier_normal_", {}),
            ("init_kaiming_uniform_", {"nonlinearity": "leaky_relu", "a": 0.1}),
            ("init_kaiming_normal_", {"mode": "fan_out"}),
        ]:
            torch.manual_seed(0)
            ours = getattr(utils, name)(torch.empty(shape), **kwargs)
            torch.manual_seed(0)
            _same(ours, getattr(tl, name)(torch.empty(shape), **kwargs))


def test_losses_and_accuracy(tl):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 6, 11, generator=g)
    tokens = torch.randint(0, 11, (3, 6), generator=g)
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    for attention_mask in (None, mask, mask.bool()):
        for per_token in (False, True):
            torch.testing.assert_close(
                utils.lm_cross_entropy_loss(logits, tokens, attention_mask, per_token),
                tl.lm_cross_entropy_loss(logits, tokens, attention_mask, per_token),
            )
    tokens[:, 1:] = logits[:, :-1].argmax(-1)
    tokens[0, 3] = (tokens[0, 3] + 1) % 11
    for per_token in (False, True):
        _same(
            utils.lm_accuracy(logits, tokens, per_token), tl.lm_accuracy(logits, tokens, per_token)
        )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"temperature": 0.0},
        {"temperature": 0.0, "repetition_penalty": 1.5},
        {"top_k": 3},
        {"top_k": 100},
        {"top_p": 0.5, "temperature": 0.7},
        {"freq_penalty": 2.0},
        {"repetition_penalty": 1.3, "top_k": 5},
    ],
)
def test_sample_logits(tl, options):
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(16, 20, generator=g) * 3
    tokens = torch.randint(0, 20, (16, 7), generator=g)
    torch.manual_seed(11)
    ours = utils.sample_logits(logits, tokens=tokens, **options)
    torch.manual_seed(11)
    _same(ours, tl.sample_logits(logits, tokens=tokens, **options))


def test_logits_to_df(tl, tokenizer):
    logits = torch.randn(len(tokenizer), generator=torch.Generator().manual_seed(5))
    for kwargs in ({}, {"tokenizer": tokenizer, "top_k": 7}):
        assert utils.logits_to_df(logits, **kwargs).equals(tl.logits_to_df(logits, **kwargs))


@pytest.mark.parametrize(
    "spec",
    [
        None,
        2,
        -1,
        (3,),
        (1, 4),
        (0, 5, 2),
        slice(1, 3),
        [0, 2],
        torch.tensor([1, 3]),
        np.array([4, 0]),
        torch.tensor([True, False, True, False, True]),
    ],
)
def test_slice(tl, spec):
    x = torch.arange(5 * 3).reshape(5, 3)
    ours, theirs = utils.Slice(spec), tl.Slice(spec)
    assert ours.mode == theirs.mode
    _same(ours.apply(x), theirs.apply(x))
    _same(ours.indices(5), theirs.indices(5))
    _same(utils.Slice.unwrap(spec).apply(x), tl.Slice.unwrap(spec).apply(x))


@pytest.mark.parametrize(
    "args",
    [
        ("embed",),
        ("k6",),
        ("scale4ln1",),
        ("pre5",),
        ("k", 6, "a"),
        ("pre", 2),
        ("resid_post", 0),
        ("normalized", 27, "ln2"),
        ("scale",),
        ("attn", 3),
        ("mlp_post", 1),
        ("blocks.0.hook_q",),
        ("hook_embed",),
        ("z", 1, "attention"),
        ("resid_mid", 2, "b"),
        ("q", "3"),
    ],
)
def test_get_act_name(tl, args):
    assert utils.get_act_name(*args) == tl.get_act_name(*args)


@pytest.fixture
def fresh_tokenizer(tmp_path):
    """A tokenizer of its own (these functions may add a pad token to it)."""
    return save_and_reload_tokenizer(tmp_path)


@pytest.mark.parametrize("pad_is_bos", [True, False])
def test_tokenization_helpers(tl, fresh_tokenizer, pad_is_bos):
    tokenizer = fresh_tokenizer
    if pad_is_bos:
        tokenizer.pad_token = tokenizer.bos_token
    else:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    bos = tokenizer.bos_token
    for text in ("hello", ["a", "bc"]):
        assert utils.get_input_with_manually_prepended_bos(
            bos, text
        ) == tl.get_input_with_manually_prepended_bos(bos, text)
    pad, b = tokenizer.pad_token_id, tokenizer.bos_token_id
    left = torch.tensor([[b, 5, 6, 7], [pad, pad, b, 9], [pad, b, 8, 9]])
    right = torch.tensor([[b, 5, 6, 7], [b, 9, pad, pad], [b, 8, 9, pad]])
    for tokens, side in ((left, "left"), (right, "right")):
        for prepend_bos in (True, False):
            _same(
                utils.get_attention_mask(tokenizer, tokens, prepend_bos, side),
                tl.get_attention_mask(tokenizer, tokens, prepend_bos, side),
            )
        _same(
            utils.get_tokens_with_bos_removed(tokenizer, tokens, side),
            tl.get_tokens_with_bos_removed(tokenizer, tokens, side),
        )


@pytest.mark.parametrize("add_bos_token", [True, False])
@pytest.mark.parametrize("max_length", [8, 2000])
def test_tokenize_and_concatenate(tl, tmp_path, add_bos_token, max_length):
    import datasets

    data = datasets.Dataset.from_dict({"text": CORPUS * 3, "other": list(range(len(CORPUS) * 3))})
    options = dict(max_length=max_length, add_bos_token=add_bos_token, num_proc=None)
    ours = utils.tokenize_and_concatenate(
        data, save_and_reload_tokenizer(tmp_path / "a"), **options
    )
    theirs = tl.tokenize_and_concatenate(data, save_and_reload_tokenizer(tmp_path / "b"), **options)
    assert ours.column_names == theirs.column_names == ["tokens"]
    _same(ours["tokens"], theirs["tokens"])


def test_locally_overridden_defaults(tl, models):
    model, _ = models
    before = (model.cfg.default_prepend_bos, model.tokenizer.padding_side)
    with utils.LocallyOverridenDefaults(model, prepend_bos=False, padding_side="left"):
        assert (model.cfg.default_prepend_bos, model.tokenizer.padding_side) == (False, "left")
    assert (model.cfg.default_prepend_bos, model.tokenizer.padding_side) == before
    assert utils.override_or_use_default_value(1, None) == tl.override_or_use_default_value(1)
    assert utils.override_or_use_default_value(1, 0) == tl.override_or_use_default_value(1, 0)


def test_composition_scores_and_matrix_corner(tl, models):
    model, twin = models
    left, right = model.OV[0], model.QK[1]
    torch.testing.assert_close(
        utils.composition_scores(left, right), tl.composition_scores(twin.OV[0], twin.QK[1])
    )
    torch.testing.assert_close(utils.get_matrix_corner(left), tl.get_matrix_corner(twin.OV[0]))


def test_test_prompt_prints_the_same_numbers(tl, models, capsys):
    model, twin = models
    for answer in ("Mary", ["Mary", "John"]):
        utils.test_prompt("When Mary and John went to the store, John gave", answer, model, top_k=3)
        ours = capsys.readouterr().out.splitlines()
        tl.test_prompt("When Mary and John went to the store, John gave", answer, twin, top_k=3)
        theirs = capsys.readouterr().out.splitlines()
        assert [line.strip() for line in ours] == [line.strip() for line in theirs]


def test_sanity_check(models):
    from transformer_lens import evals as tl_evals

    model, twin = models
    torch.testing.assert_close(evals.sanity_check(model), tl_evals.sanity_check(twin))


def test_induction_loss(tokenizer):
    from transformer_lens import evals as tl_evals

    model = make_model(seed=6, d_vocab=20000)  # its random tokens are ids 100 to 19999
    twin = tl_twin(model)
    for prepend_bos in (None, False):
        torch.manual_seed(0)
        ours = evals.induction_loss(
            model, tokenizer, batch_size=2, subseq_len=20, prepend_bos=prepend_bos
        )
        torch.manual_seed(0)
        theirs = tl_evals.induction_loss(
            twin, tokenizer, batch_size=2, subseq_len=20, prepend_bos=prepend_bos, device="cpu"
        )
        torch.testing.assert_close(ours, theirs)


def test_ioi_dataset_and_eval(models, tokenizer):
    from transformer_lens import evals as tl_evals

    model, twin = models
    for kwargs in (
        {"num_samples": 12, "seed": 3},
        {"num_samples": 10, "symmetric": True, "seed": 4},
    ):
        ours = evals.IOIDataset(tokenizer, **kwargs)
        theirs = tl_evals.IOIDataset(tokenizer, **kwargs)
        assert ours.samples == theirs.samples
        for i in range(len(ours)):
            for key, value in ours[i].items():
                _same(value, theirs[i][key])
        result = evals.ioi_eval(model, dataset=ours, batch_size=4)
        expected = tl_evals.ioi_eval(twin, dataset=theirs, batch_size=4)
        assert result.keys() == expected.keys()
        for key in result:
            assert result[key] == pytest.approx(expected[key], abs=1e-5)
    random.seed()


def test_evaluate_on_dataset(models, tokenizer):
    from transformer_lens import evals as tl_evals

    model, twin = models
    loader = [
        {"tokens": torch.randint(0, len(tokenizer), (2, 12), generator=g)}
        for g in (torch.Generator().manual_seed(i) for i in range(4))
    ]
    for truncate in (1, 100):
        assert evals.evaluate_on_dataset(model, loader, truncate) == pytest.approx(
            tl_evals.evaluate_on_dataset(twin, loader, truncate, device="cpu"), abs=1e-5
        )
