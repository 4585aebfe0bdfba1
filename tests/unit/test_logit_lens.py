"""The logit lens, `utils.test_prompt`, and the language-model losses.

`logit_lens` is checked against the lens computed by hand from cached residuals and the
weights; `test_prompt`, `lm_cross_entropy_loss` and `lm_accuracy` against TransformerLens.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lookingglass import utils
from lookingglass.analysis import logit_lens
from tests._helpers import (
    assert_close,
    make_model,
    make_tokenizer,
    one_cpu_thread,
    random_tokens,
    save_and_reload_tokenizer,
)

ATOL = 1e-5
BATCH, POS, TOP_K = 2, 10, 4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def model():
    return make_model(seed=5, n_layers=3, tokenizer=make_tokenizer())


@pytest.fixture(scope="module")
def run(model):
    tokens = random_tokens(BATCH, POS, d_vocab=model.cfg.d_vocab, seed=6)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    return tokens, logits, cache


def _reference_log_probs(model, cache, incl_mid=False) -> tuple[torch.Tensor, list[str]]:
    """The lens by hand: LayerNorm with ln_final's weights, then W_U and b_U."""
    streams, labels = [], []
    for layer in range(model.cfg.n_layers):
        streams.append(cache[f"blocks.{layer}.hook_resid_pre"])
        labels.append(f"{layer}_pre")
        if incl_mid:
            streams.append(cache[f"blocks.{layer}.hook_resid_mid"])
            labels.append(f"{layer}_mid")
    streams.append(cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"])
    labels.append("final_post")
    ln = model.ln_final
    normalized = [F.layer_norm(s, (model.cfg.d_model,), ln.w, ln.b, model.cfg.eps) for s in streams]
    logits = torch.stack([n @ model.W_U + model.b_U for n in normalized])
    return logits.log_softmax(-1), labels


def test_logit_lens_matches_hand_computed_lens(model, run):
    tokens, logits, cache = run
    targets = tokens[:, 1:]
    lens = logit_lens(model, cache, target_tokens=targets, top_k=TOP_K, pos_slice=slice(0, -1))
    log_probs, labels = _reference_log_probs(model, cache)
    log_probs = log_probs[:, :, :-1]
    probs = log_probs.exp()
    assert lens.labels == labels
    assert lens.top_tokens.shape == (model.cfg.n_layers + 1, BATCH, POS - 1, TOP_K)
    top_probs, top_tokens = probs.topk(TOP_K, dim=-1)
    assert_close(lens.top_probs, top_probs, ATOL, "top probs")
    assert torch.equal(lens.top_tokens, top_tokens)
    assert_close(lens.entropy, -(probs * log_probs).sum(-1), ATOL, "entropy")
    final = log_probs[-1]
    assert_close(lens.kl_to_final, (final.exp() * (final - log_probs)).sum(-1), ATOL, "KL")
    assert_close(lens.kl_to_final[-1], torch.zeros(BATCH, POS - 1), ATOL, "KL at the end")
    target_log_probs = log_probs.gather(-1, targets.expand(len(labels), -1, -1)[..., None])
    assert_close(lens.target_probs, target_log_probs[..., 0].exp(), ATOL, "target probs")
    ranks = (log_probs > target_log_probs).sum(-1)
    assert torch.equal(lens.target_ranks, ranks)
    # The last entry is the model's own prediction.
    assert_close(lens.top_probs[-1], logits[:, :-1].softmax(-1).topk(TOP_K).values, ATOL, "final")


def test_logit_lens_options(model, run):
    tokens, _, cache = run
    log_probs, labels = _reference_log_probs(model, cache, incl_mid=True)
    lens = logit_lens(model, cache, target_tokens=7, incl_mid=True, pos_slice=-1)
    assert lens.labels == labels and lens.entropy.shape == (len(labels), BATCH, 1)
    assert_close(lens.target_probs[..., 0], log_probs[:, :, -1, 7].exp(), ATOL, "int target")
    per_row = logit_lens(model, cache, target_tokens=tokens[:, 0])  # labels: the "_pre"s, final
    assert_close(
        per_row.target_probs[:, 1, 3], log_probs[::2, 1, 3, tokens[1, 0]].exp(), ATOL, "row"
    )
    by_string = logit_lens(model, cache, target_tokens=" John")
    john = model.to_single_token(" John")
    assert_close(by_string.target_probs, logit_lens(model, cache, john).target_probs, 0, "str")
    single = model.run_with_cache(tokens[:1])[1].remove_batch_dim()
    unbatched = logit_lens(model, single, top_k=TOP_K)
    assert_close(
        unbatched.top_probs[:, 0], logit_lens(model, cache, top_k=TOP_K).top_probs[:, 0], ATOL, ""
    )
    table = unbatched.table(model, pos=3)
    assert table.count("\n") == len(unbatched.labels) - 1 and "final_post" in table
    with pytest.raises(ValueError):
        logit_lens(model, cache, target_tokens=torch.zeros(3, 3, dtype=torch.long))


@pytest.fixture(scope="module")
def twin_with_tokenizer(tmp_path_factory):
    """Our model and TransformerLens's, the same weights and tokenizer."""
    from tests._analysis_helpers import tl_twin

    tokenizer = save_and_reload_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    model = make_model(seed=8, n_layers=2, tokenizer=tokenizer)
    return model, tl_twin(model, tokenizer)


@pytest.mark.parametrize("answer", [" John", "Mary went to", [" John", " Mary", " the"]])
def test_test_prompt_matches_transformer_lens(twin_with_tokenizer, answer, capsys):
    pytest.importorskip("transformer_lens")
    from transformer_lens.utilities import test_prompt as tl_test_prompt

    model, twin = twin_with_tokenizer
    prompt = "When Mary and John went to the store,"
    stats = utils.test_prompt(prompt, answer, model, top_k=3)
    ours = capsys.readouterr().out
    tl_test_prompt(prompt, answer, twin, top_k=3)
    theirs = capsys.readouterr().out
    assert ours.split() == theirs.split()  # rich may wrap long lines differently
    # The returned numbers are the printed ones, from the logits.
    answers = [answer] if isinstance(answer, str) else answer
    first = stats[0][0]
    prompt_tokens = model.to_tokens(prompt)
    answer_token = model.to_tokens(" " + answers[0].lstrip(" "), prepend_bos=False)[0, 0]
    logits = model(torch.cat([prompt_tokens, answer_token.reshape(1, 1)], dim=1))[0, -2]
    assert first.logit == pytest.approx(logits[answer_token].item(), abs=1e-5)
    assert first.prob == pytest.approx(logits.softmax(-1)[answer_token].item(), abs=1e-6)
    assert first.rank == int((logits > logits[answer_token]).sum())
    n_answer_tokens = len(model.to_str_tokens(" " + answers[0].lstrip(" "), prepend_bos=False))
    assert len(stats) == (1 if isinstance(answer, list) else n_answer_tokens)
    assert [len(row) for row in stats] == [len(answers)] * len(stats)


def test_lm_losses_match_transformer_lens():
    lm_utils = pytest.importorskip("transformer_lens.utilities.lm_utils")
    generator = torch.Generator().manual_seed(9)
    logits = torch.randn(3, 7, 50, generator=generator)
    tokens = torch.randint(0, 50, (3, 7), generator=generator)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0
    mask[2, :2] = 0
    for kwargs in [dict(), dict(attention_mask=mask)]:
        for per_token in (False, True):
            ours = utils.lm_cross_entropy_loss(logits, tokens, per_token=per_token, **kwargs)
            theirs = lm_utils.lm_cross_entropy_loss(logits, tokens, per_token=per_token, **kwargs)
            assert_close(ours, theirs, 1e-6, f"loss {kwargs} {per_token}")
    logits[0, 2, tokens[0, 3]] = 100.0  # one certain hit
    for per_token in (False, True):
        ours = utils.lm_accuracy(logits, tokens, per_token=per_token)
        theirs = lm_utils.lm_accuracy(logits, tokens, per_token=per_token)
        assert_close(ours.float(), theirs.float(), 1e-7, f"accuracy {per_token}")
