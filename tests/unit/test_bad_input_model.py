"""Bad arguments at the model's public entry points (issue 17): `forward`, `to_tokens`,
`to_string`, `generate`, `run_with_cache` and activation/attribution patching.

Each bad argument gets an `InputError` (also a `ValueError`, and an `AssertionError` as
TransformerLens's asserts) whose message names the argument, the value given and what
is allowed; none is answered silently. What TransformerLens 3.9 accepts and computes
meaningfully still works (second table)."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch

from lookingglass.errors import InputError, LookingGlassError
from lookingglass.interventions import patching
from lookingglass.interventions.attribution_patching import get_attr_patch_resid_pre
from tests._helpers import make_model, make_tokenizer, one_cpu_thread, rejected


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def model():
    tokenizer = make_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    return make_model(tokenizer=tokenizer)


@pytest.fixture(scope="module")
def other_model():
    """A model of another shape (1 layer, d_model 32) for caches that do not fit."""
    return make_model(n_layers=1, d_model=32, d_head=8, d_mlp=64, tokenizer=make_tokenizer())


TOKENS = torch.randint(1, 300, (2, 6), generator=torch.Generator().manual_seed(0))


def _mask(value):
    mask = torch.ones(2, 6, dtype=torch.float32 if isinstance(value, float) else torch.long)
    mask[0, 2] = value
    return mask


def _patch(m, cache_tokens, cache_model=None, metric=lambda logits: logits[:, -1].sum()):
    _, cache = (cache_model or m).run_with_cache(cache_tokens)
    return patching.get_act_patch_resid_pre(m, TOKENS, cache, metric)


def _attr(m, cache_tokens, metric=lambda logits: logits[:, -1, 0].sum()):
    _, cache = m.run_with_cache(cache_tokens)
    return get_attr_patch_resid_pre(m, TOKENS, cache, metric)


def _generate(m, max_new_tokens=2, **kwargs):
    return m.generate(TOKENS, max_new_tokens, verbose=False, **kwargs)


V, L, D, C = 366, 2, 64, 64  # the fixture's d_vocab (the tokenizer's), layers, d_model, n_ctx
# (case, call, message fragment: the argument, and what was given)
BAD = [
    (
        "mask wrong length",
        lambda m: m(TOKENS, attention_mask=torch.ones(2, 5)),
        r"attention_mask.*\(2, 5\)",
    ),
    (
        "mask wrong batch",
        lambda m: m(TOKENS, attention_mask=torch.ones(3, 6)),
        r"attention_mask.*\(3, 6\)",
    ),
    ("mask of 2s", lambda m: m(TOKENS, attention_mask=_mask(2)), r"attention_mask.*0.*1.*got 2"),
    ("mask of 0.5", lambda m: m(TOKENS, attention_mask=_mask(0.5)), r"attention_mask.*got 0.5"),
    (
        "mask not a tensor",
        lambda m: m(TOKENS, attention_mask=[[1] * 6] * 2),
        r"attention_mask.*list",
    ),
    ("tokens 3-D", lambda m: m(TOKENS[None]), r"\[batch, pos\].*\(1, 2, 6\)"),
    ("tokens 0-D", lambda m: m(torch.tensor(5)), r"\[batch, pos\].*\(\)"),
    ("tokens uint8", lambda m: m(TOKENS.to(torch.uint8)), r"integer token ids.*uint8"),
    ("tokens bool", lambda m: m(TOKENS > 5), r"integer token ids.*bool"),
    ("tokens float", lambda m: m(TOKENS.float()), r"integer token ids.*float32.*start_at_layer"),
    ("tokens int16", lambda m: m(TOKENS.short()), r"integer token ids.*int16"),
    ("token id negative", lambda m: m(torch.tensor([[1, -1, 2]])), r"Token id -1 .*\[0, 366\)"),
    ("token id = d_vocab", lambda m: m(torch.tensor([[1, V, 2]])), rf"Token id {V} .*\[0, {V}\)"),
    (
        "start_at_layer beyond",
        lambda m: m(torch.randn(2, 6, D), start_at_layer=L + 1),
        r"start_at_layer.*\[-2, 2\].*got 3",
    ),
    (
        "stop_at_layer beyond",
        lambda m: m(TOKENS, stop_at_layer=L + 5),
        r"stop_at_layer.*\[-2, 2\].*got 7",
    ),
    (
        "start_at_layer negative beyond",
        lambda m: m(torch.randn(2, 6, D), start_at_layer=-L - 1),
        r"start_at_layer.*got -3",
    ),
    (
        "stop_at_layer negative beyond",
        lambda m: m(TOKENS, stop_at_layer=-L - 1),
        r"stop_at_layer.*got -3",
    ),
    (
        "start after stop",
        lambda m: m(torch.randn(2, 6, D), start_at_layer=2, stop_at_layer=1),
        r"start_at_layer=2.*stop_at_layer=1",
    ),
    (
        "layer not an int",
        lambda m: m(TOKENS, stop_at_layer=1.5),
        r"stop_at_layer must be an integer.*1.5",
    ),
    (
        "residual longer than n_ctx",
        lambda m: m(torch.randn(1, C + 1, D), start_at_layer=0),
        rf"{C + 1} positions.*n_ctx={C}",
    ),
    (
        "residual wrong d_model",
        lambda m: m(torch.randn(1, 4, D + 1), start_at_layer=0),
        rf"d_model={D}.*\(1, 4, {D + 1}\)",
    ),
    ("residual of ids", lambda m: m(TOKENS, start_at_layer=0), r"residual stream.*int64"),
    ("return_type bogus", lambda m: m(TOKENS, return_type="bogus"), r"return_type.*'bogus'"),
    (
        "padding_side middle",
        lambda m: m(["a b", "c"], padding_side="middle"),
        r"padding_side.*'left', 'right'.*'middle'",
    ),
    (
        "to_tokens padding_side middle",
        lambda m: m.to_tokens(["a b", "c"], padding_side="middle"),
        r"padding_side.*'middle'",
    ),
    (
        "prepend_bos 'yes'",
        lambda m: m("a b", prepend_bos="yes"),
        r"prepend_bos.*True, False or None.*'yes'",
    ),
    (
        "to_tokens prepend_bos 1",
        lambda m: m.to_tokens("a b", prepend_bos=1),
        r"prepend_bos.*1 \(int\)",
    ),
    (
        "to_string id beyond vocab",
        lambda m: m.to_string(torch.tensor([V + 10])),
        rf"Token id {V + 10} .*to_string",
    ),
    ("to_string negative id", lambda m: m.to_string([3, -2]), r"Token id -2 .*to_string"),
    (
        "to_string floats",
        lambda m: m.to_string(torch.tensor([1.5])),
        r"to_string.*integer.*float32",
    ),
    (
        "generate temperature -1",
        lambda m: _generate(m, temperature=-1.0),
        r"temperature.*>= 0.*-1.0",
    ),
    (
        "generate temperature nan",
        lambda m: _generate(m, temperature=math.nan),
        r"temperature.*finite.*nan",
    ),
    ("generate temperature inf", lambda m: _generate(m, temperature=math.inf), r"temperature.*inf"),
    ("generate top_p 1.5", lambda m: _generate(m, top_p=1.5), r"top_p.*\(0, 1\].*1.5"),
    ("generate top_p 0", lambda m: _generate(m, top_p=0.0), r"top_p.*0.0"),
    ("generate top_k 0", lambda m: _generate(m, top_k=0), r"top_k.*>= 1.*0"),
    ("generate top_k float", lambda m: _generate(m, top_k=2.5), r"top_k.*integer.*2.5"),
    (
        "generate freq_penalty nan",
        lambda m: _generate(m, freq_penalty=math.nan),
        r"freq_penalty.*nan",
    ),
    (
        "generate return_type bogus",
        lambda m: _generate(m, return_type="bogus"),
        r"return_type.*'bogus'",
    ),
    (
        "generate eos beyond vocab",
        lambda m: _generate(m, eos_token_id=V + 5),
        rf"eos_token_id {V + 5}.*\[0, {V}\)",
    ),
    ("generate eos negative", lambda m: _generate(m, eos_token_id=-1), r"eos_token_id -1"),
    (
        "generate eos list unreachable",
        lambda m: _generate(m, eos_token_id=[V, V + 1]),
        r"eos_token_id.*never stop",
    ),
    ("generate max_new_tokens -1", lambda m: _generate(m, -1), r"max_new_tokens.*>= 0.*-1"),
    ("generate max_new_tokens 2.5", lambda m: _generate(m, 2.5), r"max_new_tokens.*integer.*2.5"),
    (
        "generate padding_side middle",
        lambda m: _generate(m, padding_side="middle"),
        r"padding_side.*'middle'",
    ),
    (
        "generate embeds wrong d_model",
        lambda m: m.generate(torch.randn(1, 3, D + 2), 2, verbose=False),
        rf"d_model={D}",
    ),
    (
        "generate_stream max_tokens_per_yield 0",
        lambda m: next(m.generate_stream(TOKENS, 2, max_tokens_per_yield=0, verbose=False)),
        r"max_tokens_per_yield.*>= 1",
    ),
    (
        "run_with_cache pos_slice 999",
        lambda m: m.run_with_cache(TOKENS, pos_slice=999),
        r"pos_slice.*999.*6 positions",
    ),
    (
        "run_with_cache pos_slice list",
        lambda m: m.run_with_cache(TOKENS, pos_slice=[0, 7]),
        r"pos_slice.*7.*6 positions",
    ),
    (
        "run_with_cache names_filter int",
        lambda m: m.run_with_cache(TOKENS, names_filter=5),
        r"names_filter.*5 \(int\)",
    ),
    (
        "run_with_cache names_filter list of ints",
        lambda m: m.run_with_cache(TOKENS, names_filter=[1, 2]),
        r"names_filter.*\[1, 2\]",
    ),
    (
        "patch clean cache longer",
        lambda m: _patch(m, torch.randint(1, 300, (2, 9))),
        r"clean_cache.*\(2, 9, 64\).*\(2, 6, 64\)",
    ),
    (
        "patch clean cache shorter",
        lambda m: _patch(m, torch.randint(1, 300, (2, 4))),
        r"clean_cache.*\(2, 4, 64\).*6 tokens",
    ),
    (
        "patch clean cache other batch",
        lambda m: _patch(m, torch.randint(1, 300, (3, 6))),
        r"clean_cache.*\(3, 6, 64\)",
    ),
    (
        "patch metric non-scalar",
        lambda m: _patch(m, TOKENS, metric=lambda logits: logits[:, -1]),
        r"patching_metric.*scalar.*\(2, 366\)",
    ),
    (
        "patch metric string",
        lambda m: _patch(m, TOKENS, metric=lambda logits: "x"),
        r"patching_metric.*'x'",
    ),
    (
        "attribution clean cache longer",
        lambda m: _attr(m, torch.randint(1, 300, (2, 8))),
        r"clean_cache.*\(2, 8, 64\)",
    ),
    (
        "attribution metric non-scalar",
        lambda m: _attr(m, TOKENS, metric=lambda logits: logits[:, -1]),
        r"patching_metric.*shape \(2, 366\)",
    ),
]


@pytest.mark.parametrize("case, call, fragment", BAD, ids=[case for case, _, _ in BAD])
def test_a_bad_argument_gets_an_error_naming_it(model, case, call, fragment):
    with pytest.raises(rejected(InputError)) as caught:
        call(model)
    if isinstance(caught.value, LookingGlassError):  # not the optional jaxtyping check
        assert re.search(fragment, str(caught.value)), (fragment, str(caught.value))
        assert isinstance(caught.value, ValueError | AssertionError)


def test_a_clean_cache_from_another_model_is_refused(model, other_model):
    with pytest.raises(InputError, match=r"clean_cache has no activation 'blocks.1"):
        _patch(model, TOKENS, cache_model=other_model)
    _, cache = other_model.run_with_cache(TOKENS)
    with pytest.raises(InputError, match=r"clean_cache\['blocks.0.hook_resid_pre'\].*\(2, 6, 32\)"):
        patching.generic_activation_patch(
            model, TOKENS, cache, lambda logits: logits.sum(),
            patching.layer_pos_patch_setter, "resid_pre", index_df=_df([(0, 1)]),
        )  # fmt: skip


def _df(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["layer", "pos"])


# What TransformerLens 3.9 accepts and computes meaningfully keeps working.
GOOD = [
    ("negative layers in range", lambda m: m(TOKENS, stop_at_layer=-1)),
    (
        "start_at_layer = n_layers (unembed only)",
        lambda m: m(torch.randn(2, 6, D), start_at_layer=L),
    ),
    ("start_at_layer = -n_layers", lambda m: m(torch.randn(2, 6, D), start_at_layer=-L)),
    (
        "start = stop (identity)",
        lambda m: m(torch.randn(2, 6, D), start_at_layer=1, stop_at_layer=1),
    ),
    ("int32 tokens", lambda m: m(TOKENS.int())),
    ("1-D tokens", lambda m: m(TOKENS[0])),
    ("bool mask", lambda m: m(TOKENS, attention_mask=_mask(0).bool())),
    ("float 0/1 mask", lambda m: m(TOKENS, attention_mask=_mask(0.0))),
    (
        "all-zero mask row (TransformerLens: a zero pattern)",
        lambda m: m(TOKENS, attention_mask=torch.tensor([[1] * 6, [0] * 6])),
    ),
    ("temperature 0 is greedy", lambda m: _generate(m, temperature=0.0)),
    ("negative freq_penalty is ignored", lambda m: _generate(m, freq_penalty=-1.0)),
    (
        "eos list with an id beyond the vocabulary",
        lambda m: _generate(m, eos_token_id=[3, V + 100]),
    ),
    ("top_p = 1 and top_k beyond d_vocab", lambda m: _generate(m, top_p=1.0, top_k=10 * V)),
    (
        "pos_slice -1",
        lambda m: m.run_with_cache(TOKENS, pos_slice=-1)[1]["blocks.0.hook_resid_pre"],
    ),
    (
        "names_filter tuple",
        lambda m: m.run_with_cache(TOKENS, names_filter=("hook_embed",))[1]["hook_embed"],
    ),
    ("to_string of ids in the vocabulary", lambda m: m.to_string([1, 2])),
    ("clean cache of batch 1 broadcasts", lambda m: _patch(m, TOKENS[:1])),
]


@pytest.mark.parametrize("case, call", GOOD, ids=[case for case, _ in GOOD])
def test_what_transformerlens_accepts_still_works(model, case, call):
    out = call(model)
    tensors = [out] if isinstance(out, torch.Tensor) else []
    assert all(not t.is_floating_point() or bool(t.isfinite().all()) for t in tensors), case


def test_negative_layers_follow_python_slices(model):
    assert torch.equal(model(TOKENS, stop_at_layer=-1), model(TOKENS, stop_at_layer=L - 1))
    resid = model(TOKENS, stop_at_layer=1)
    assert torch.equal(model(resid, start_at_layer=-1), model(resid, start_at_layer=L - 1))


def test_demo_with_an_empty_prompt_exits_2_with_the_reason():
    result = subprocess.run(
        [sys.executable, "-m", "lookingglass.cli", "demo", "--prompt", "  "],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--prompt" in result.stderr and "empty" in result.stderr


def _path(m, receivers="resid_final", senders=((0, 1),), clean=TOKENS, **kwargs):
    from lookingglass.interventions.path_patching import path_patch

    metric = kwargs.pop("metric", lambda logits: logits[:, -1, 0].mean())
    return path_patch(m, clean, TOKENS, list(senders), receivers, metric, **kwargs)


PATH_AND_INDEX = [
    ("path clean tokens longer", lambda m: _path(m, clean=torch.randint(1, 300, (2, 8))),
     r"Clean tokens \(2, 8\).*\(2, 6\)"),
    ("path sender not a pair", lambda m: _path(m, senders=[5]), r"sender head.*pair.*got 5"),
    ("path sender beyond", lambda m: _path(m, senders=[(5, 1)]), r"sender head \(5, 1\)"),
    ("path receiver 5", lambda m: _path(m, receivers=[5]), r"receiver.*got 5"),
    ("path receiver_positions 99", lambda m: _path(m, (1, 0), receiver_positions=[99]),
     r"receiver_positions \[99\].*6 positions"),
    ("path metric vector", lambda m: _path(m, metric=lambda logits: logits[:, -1, 0]),
     r"patching_metric.*\(2,\)"),
    ("index_df position 99",
     lambda m: _indexed(m, patching.layer_pos_patch_setter, "resid_pre", 99),
     r"Patch index \[0, 99\].*hook_resid_pre"),
    ("index_df head 99", lambda m: _indexed(m, patching.layer_head_vector_patch_setter, "z", 99),
     r"Patch index \[0, 99\].*hook_z.*\(2, 6, 4, 16\)"),
]  # fmt: skip


def _indexed(m, setter, activation, second):
    import pandas as pd

    _, cache = m.run_with_cache(TOKENS)
    index_df = pd.DataFrame([(0, second)], columns=["layer", "index"])
    metric = lambda logits: logits.sum()  # noqa: E731
    return patching.generic_activation_patch(
        m, TOKENS, cache, metric, setter, activation, index_df=index_df
    )


@pytest.mark.parametrize(
    "case, call, fragment", PATH_AND_INDEX, ids=[c for c, _, _ in PATH_AND_INDEX]
)
def test_path_patching_and_patch_indices_name_what_is_wrong(model, case, call, fragment):
    with pytest.raises(InputError, match=fragment):
        call(model)


def test_a_single_receiver_tuple_and_negative_positions_work(model):
    assert math.isfinite(_path(model, (1, 0), receiver_positions=[-1]))
