"""`ActivationCache`'s analysis methods: TransformerLens 3.9's numbers on the same weights,
and the identities they exist for (the pieces sum to the stream, attributions to logits).

Each model variant is built once; TransformerLens's twin loads its `state_dict()`.
"""

from __future__ import annotations

import pytest
import torch

from tests._analysis_helpers import tl_twin, twin_caches
from tests._helpers import assert_close, make_model, one_cpu_thread, random_tokens

TL_ATOL = 1e-4  # the bar; observed differences are ~1e-6 (float32 rounding)
SUM_ATOL = 1e-4
N_LAYERS, BATCH, POS = 3, 2, 9
VARIANTS = {
    "LN": dict(normalization_type="LN"),
    "LNPre": dict(normalization_type="LNPre"),
    "RMSPre": dict(normalization_type="RMSPre"),
    "attn_only": dict(normalization_type="LNPre", attn_only=True),
    # Llama-like minus the gated MLP: RMSNorm with weights, rotary (no hook_pos_embed), GQA.
    "RMS_rotary_GQA": dict(
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=16,
        n_key_value_heads=2,
    ),
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module", params=list(VARIANTS))
def setup(request):
    model = make_model(seed=3, n_layers=N_LAYERS, d_mlp=64, **VARIANTS[request.param])
    twin = tl_twin(model)
    tokens = random_tokens(BATCH, POS, seed=4)
    ours, theirs = twin_caches(model, twin, tokens)
    return model, tokens, ours, theirs


def _same(ours, theirs, what: str) -> None:
    if isinstance(ours, tuple):
        assert ours[1] == theirs[1], f"{what}: labels differ"
        ours, theirs = ours[0], theirs[0]
    assert_close(ours, theirs, TL_ATOL, what)


def _calls(ours, theirs, method: str, calls: list[dict]) -> None:
    for kwargs in calls:
        _same(
            getattr(ours, method)(**kwargs), getattr(theirs, method)(**kwargs), f"{method}{kwargs}"
        )


def test_accumulated_resid(setup):
    model, _, ours, theirs = setup
    mid = not model.cfg.attn_only
    calls = [
        dict(return_labels=True),
        dict(apply_ln=True, return_labels=True),
        dict(layer=1, incl_mid=mid, apply_ln=True, return_labels=True),
        dict(layer=2, mlp_input=mid, apply_ln=True, pos_slice=-1),
        dict(incl_mid=mid, apply_ln=True, pos_slice=(2, 6), return_labels=True),
        dict(layer=0, apply_ln=True, pos_slice=[0, 3]),
    ]
    _calls(ours, theirs, "accumulated_resid", calls)


def test_decompose_resid(setup):
    model, _, ours, theirs = setup
    mid = not model.cfg.attn_only
    calls = [
        dict(return_labels=True),
        dict(apply_ln=True, return_labels=True),
        dict(layer=1, mlp_input=mid, apply_ln=True, return_labels=True),
        dict(layer=2, mode="attn", apply_ln=True, pos_slice=-1, return_labels=True),
        dict(mode="mlp", incl_embeds=False, return_labels=True) if mid else dict(layer=0),
        dict(layer=0, mlp_input=mid, apply_ln=True),
    ]
    _calls(ours, theirs, "decompose_resid", calls)


def test_stack_head_results_and_activations(setup):
    _, _, ours, theirs = setup
    calls = [
        dict(return_labels=True),
        dict(return_labels=True, incl_remainder=True, apply_ln=True),
        dict(layer=1, incl_remainder=True, pos_slice=-1, apply_ln=True),
        dict(layer=2, pos_slice=(1, 4), return_labels=True),
        dict(layer=0),
    ]
    _calls(ours, theirs, "stack_head_results", calls)
    for name, layer in [("pattern", -1), ("z", 2), ("resid_pre", 1), ("q", -1)]:
        _same(ours.stack_activation(name, layer), theirs.stack_activation(name, layer), name)
    ours.compute_head_results()
    theirs.compute_head_results()
    for layer in range(N_LAYERS):
        _same(ours["result", layer], theirs["result", layer], f"result {layer}")


def test_neuron_results(setup):
    model, _, ours, theirs = setup
    if model.cfg.attn_only:
        pytest.skip("no neurons")
    project = torch.randn(model.cfg.d_model, 3, generator=torch.Generator().manual_seed(5))
    calls = [
        dict(layer=2, return_labels=True, incl_remainder=True),
        dict(layer=-1, apply_ln=True, pos_slice=-1, neuron_slice=(5, 20), incl_remainder=True),
        dict(layer=3, apply_ln=True, project_output_onto=project, incl_remainder=True),
        dict(layer=1, project_output_onto=project[:, 0], neuron_slice=[1, 7], return_labels=True),
    ]
    _calls(ours, theirs, "stack_neuron_results", calls)
    # An int neuron_slice (TransformerLens fails on it) is the one-element list.
    one = ours.stack_neuron_results(2, neuron_slice=4, return_labels=True)
    assert one[1] == ["L0N4", "L1N4"]
    assert_close(one[0], ours.stack_neuron_results(2, neuron_slice=[4]), 0, "int neuron_slice")
    for kwargs in [
        dict(),
        dict(neuron_slice=(3, 9), pos_slice=-2),
        dict(project_output_onto=project),
    ]:
        _same(
            ours.get_neuron_results(1, **kwargs), theirs.get_neuron_results(1, **kwargs), "neurons"
        )


def test_full_resid_decomposition(setup):
    model, _, ours, theirs = setup
    project = torch.randn(model.cfg.d_model, 3, generator=torch.Generator().manual_seed(6))
    calls = [
        dict(return_labels=True, expand_neurons=False),
        dict(apply_ln=True, pos_slice=-1, return_labels=True, expand_neurons=False),
        dict(layer=1, apply_ln=True, project_output_onto=project[:, 1], expand_neurons=False),
    ]
    if not model.cfg.attn_only:  # TransformerLens needs MLPs for the default expand_neurons
        calls += [
            dict(return_labels=True),
            dict(layer=1, mlp_input=True, apply_ln=True, return_labels=True),
            dict(apply_ln=True, project_output_onto=project),
            dict(layer=2, pos_slice=(0, 5), project_output_onto=project),
        ]
    _calls(ours, theirs, "get_full_resid_decomposition", calls)


def test_logit_attrs_and_token_directions(setup):
    model, tokens, ours, theirs = setup
    twin = theirs.model
    for token in [5, torch.tensor(7), tokens[:, -1], tokens]:
        _same(
            model.tokens_to_residual_directions(token),
            twin.tokens_to_residual_directions(token),
            "dir",
        )
    for layer, mlp_input in [(0, False), (2, not model.cfg.attn_only), (3, False)]:
        args = (layer, mlp_input, not model.cfg.attn_only)
        _same(model.accumulated_bias(*args), twin.accumulated_bias(*args), f"bias {args}")
    stack = ours.decompose_resid(pos_slice=-1)
    answer, wrong = tokens[:, -1], tokens[:, 0]
    for kwargs in [dict(), dict(incorrect_tokens=wrong)]:
        what = f"logit_attrs {kwargs}"
        _same(ours.logit_attrs(stack, answer, pos_slice=-1, **kwargs),
              theirs.logit_attrs(stack, answer, pos_slice=-1, **kwargs), what)  # fmt: skip
    one_row = dict(pos_slice=-1, batch_slice=1)
    _same(ours.logit_attrs(stack, answer[1], **one_row),
          theirs.logit_attrs(stack, answer[1], **one_row), "batch_slice")  # fmt: skip
    full = ours.decompose_resid()
    _same(ours.logit_attrs(full, tokens), theirs.logit_attrs(full, tokens), "per-position attrs")


def test_cache_without_batch_dim(setup):
    model, tokens, _, _ = setup
    ours = model.run_with_cache(tokens[:1])[1].remove_batch_dim()
    theirs = setup[3].model.run_with_cache(tokens[:1], remove_batch_dim=True)[1]
    _same(ours.accumulated_resid(apply_ln=True), theirs.accumulated_resid(apply_ln=True), "accum")
    _same(ours.decompose_resid(apply_ln=True), theirs.decompose_resid(apply_ln=True), "decompose")
    stack = ours.stack_head_results(apply_ln=True, pos_slice=-1)
    _same(stack, theirs.stack_head_results(apply_ln=True, pos_slice=-1), "heads")
    attrs = ours.logit_attrs(stack, 4, pos_slice=-1, has_batch_dim=False)
    _same(attrs, theirs.logit_attrs(stack, 4, pos_slice=-1, has_batch_dim=False), "attrs")


# --------------------------------------------------------------------------- identities
def test_pieces_sum_to_the_stream(setup):
    model, _, cache, _ = setup
    last = cache["resid_post", -1]
    assert_close(cache.decompose_resid().sum(0), last, SUM_ATOL, "decompose_resid")
    assert_close(cache.accumulated_resid()[-1], last, 0, "accumulated_resid[-1]")
    assert_close(cache.get_full_resid_decomposition().sum(0), last, SUM_ATOL, "full")
    assert_close(
        cache.get_full_resid_decomposition(expand_neurons=False).sum(0),
        last,
        SUM_ATOL,
        "full (mlp)",
    )
    for layer in range(N_LAYERS):
        heads = cache.stack_head_results(layer + 1)[-model.cfg.n_heads :]
        b_O = model.blocks[layer].attn.b_O
        assert_close(heads.sum(0) + b_O, cache["attn_out", layer], SUM_ATOL, f"heads {layer}")
        assert_close(
            cache.decompose_resid(layer).sum(0), cache["resid_pre", layer], SUM_ATOL, "pre"
        )
    # As TransformerLens: at layer 0 the remainder is resid_post of layer -1 (the last).
    remainder = cache.stack_head_results(0, incl_remainder=True)
    assert_close(remainder[-1], cache["resid_post", -1], 0, "layer-0 remainder")


def test_attributions_sum_to_logits(setup):
    """With a parameter-free final norm, scaled pieces sum to the normalized stream, so
    direct logit attributions sum to the logit minus b_U (and difference to difference)."""
    model, tokens, cache, _ = setup
    if model.cfg.normalization_type in ("LN", "RMS"):
        pytest.skip("the final norm's weights are not folded")
    logits = model(tokens)
    b_U = model.b_U
    stack = cache.get_full_resid_decomposition(pos_slice=-1)
    answer, wrong = tokens[:, 0], tokens[:, 1]
    rows = torch.arange(BATCH)
    attrs = cache.logit_attrs(stack, answer, pos_slice=-1).sum(0)
    assert_close(attrs, logits[rows, -1, answer] - b_U[answer], SUM_ATOL, "logit")
    diff = cache.logit_attrs(stack, answer, wrong, pos_slice=-1).sum(0)
    expected = (logits[rows, -1, answer] - b_U[answer]) - (logits[rows, -1, wrong] - b_U[wrong])
    assert_close(diff, expected, SUM_ATOL, "logit difference")
    lens = cache.accumulated_resid(apply_ln=True)[-1] @ model.W_U + b_U
    assert_close(lens, logits, SUM_ATOL, "the last logit lens entry is the output")
