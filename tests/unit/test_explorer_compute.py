"""The explorer's numbers (`explorer.compute`, `explorer.schematics`, `explorer.sources`)
against the library's analysis functions and hand computations, its input checks, and
the `explore` command line."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from lookingglass import HookedTransformer
from lookingglass.analysis import (
    full_ov_circuit,
    induction_scores,
    logit_lens,
    ov_copying_scores,
    previous_token_scores,
)
from lookingglass.errors import InputError
from lookingglass.explorer import ENV, compute, schematics, sources
from lookingglass.explorer import tokens as token_display
from lookingglass.explorer.cli import add_explore_parser, streamlit_command
from lookingglass.interventions import Component, per_token_loss_change
from tests._explorer_helpers import (
    make_dynamics_folder,
    make_snapshots,
    make_store,
    save_tiny_model,
)

PROMPT = "And Abraham said unto Abimelech, I will swear. And Abraham said unto"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("explorer_model"))


@pytest.fixture(scope="module")
def model(model_dir):
    # As the app loads it: with the default weight processing (folded norms).
    return HookedTransformer.from_pretrained(model_dir, device="cpu").eval().requires_grad_(False)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "texts.txt"
    path.write_text(
        "In the beginning God created the heaven and the earth. " * 20
        + "\n\nAnd the earth was without form, and void. " * 2
        + "\n\n\n"
    )
    return path


# ------------------------------------------------------------------------- inputs
@pytest.mark.parametrize(
    "prompt, message",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("x" * (compute.MAX_PROMPT_CHARS + 1), "characters"),
        (" the" * 200, "tokens long"),
    ],
)
def test_bad_prompts_are_input_errors_that_say_why(model, prompt, message):
    with pytest.raises(InputError, match=message):
        compute.prompt_tokens(model, prompt)


def test_prompt_limit_is_bounded_by_n_ctx(model):
    assert compute.prompt_limit(model) == min(compute.MAX_PROMPT_TOKENS, model.cfg.n_ctx)
    tokens = compute.prompt_tokens(model, PROMPT)
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id
    assert torch.equal(tokens, model.to_tokens(PROMPT).cpu())


def test_tokens_and_heads_are_checked(model):
    assert compute.single_token(model, " the") == model.to_single_token(" the")
    assert compute.single_token(model, 7) == 7  # ids pass (bytes of a character have no string)
    with pytest.raises(InputError, match="outside the vocabulary"):
        compute.single_token(model, model.cfg.d_vocab)
    with pytest.raises(InputError, match="not a single token"):
        compute.single_token(model, " Abimelechzzz")
    with pytest.raises(InputError, match="No token"):
        compute.single_token(model, "")
    assert compute.parse_head(model, "l1h3") == (1, 3)
    with pytest.raises(InputError, match="out of range"):
        compute.parse_head(model, "L9H0")
    with pytest.raises(InputError, match="out of range"):
        compute.parse_head(model, "L0H4")
    with pytest.raises(InputError, match="L<layer>H<head>"):
        compute.parse_head(model, "head 3")
    with pytest.raises(InputError, match="no such layer"):
        compute.parse_component(model, "mlp 0")  # attention-only


# ------------------------------------------------------------------------- prompt
def test_analyze_prompt_matches_the_model(model):
    result = compute.analyze_prompt(model, PROMPT, top_k=5)
    tokens = model.to_tokens(PROMPT)
    logits, cache = model.run_with_cache(tokens)
    probs = logits[0].softmax(-1)
    top = probs.topk(5, dim=-1)
    assert [[t.token_id for t in row] for row in result.top] == top.indices.tolist()
    values = [[t.value for t in row] for row in result.top]
    np.testing.assert_allclose(values, top.values.numpy(), atol=1e-5)
    assert result.top[3][0].token == model.to_single_str_token(int(top.indices[3, 0]))
    for layer in range(model.cfg.n_layers):
        np.testing.assert_allclose(
            result.patterns[layer], cache["pattern", layer][0].numpy(), atol=1e-5
        )
    loss = model(tokens, return_type="loss", loss_per_token=True)[0]
    np.testing.assert_allclose(result.loss, loss.detach().numpy(), atol=1e-5)
    lens = logit_lens(model, cache, top_k=3)
    assert result.lens.labels == lens.labels == ["0_pre", "1_pre", "final_post"]
    assert torch.equal(result.lens.top_tokens, lens.top_tokens)
    assert result.str_tokens == model.to_str_tokens(PROMPT)


@pytest.mark.parametrize("wrong", [None, " God"])
def test_direct_logit_attribution_sums_to_the_logit(model, wrong):
    position = 5
    result = compute.direct_logit_attribution(model, PROMPT, position, " Abraham", wrong)
    assert result.layer_labels == ["embed", "pos_embed", "0_attn_out", "1_attn_out"]
    assert result.layer_values.sum() + result.bias == pytest.approx(result.logit, abs=1e-4)
    # Each head by hand: its write z @ W_O, centred and divided by the final norm's scale,
    # read along the unembedding direction of the answer (minus the wrong token's).
    _, cache = model.run_with_cache(model.to_tokens(PROMPT))
    direction = model.W_U[:, model.to_single_token(" Abraham")]
    if wrong:
        direction = direction - model.W_U[:, model.to_single_token(wrong)]
    scale = cache["ln_final.hook_scale"][0, position]
    for layer in range(model.cfg.n_layers):
        writes = torch.einsum("he,hed->hd", cache["z", layer][0, position], model.W_O[layer])
        writes = writes - writes.mean(-1, keepdim=True)
        expected = (writes / scale) @ direction
        np.testing.assert_allclose(result.head_values[layer], expected.detach().numpy(), atol=1e-5)
    assert result.target.startswith("' Abraham'")


def test_attribution_rejects_bad_positions_and_tokens(model):
    with pytest.raises(InputError, match="out of range"):
        compute.direct_logit_attribution(model, PROMPT, 99, " the")
    with pytest.raises(InputError, match="single token"):
        compute.direct_logit_attribution(model, PROMPT, 1, "Abimelechzz")


# ----------------------------------------------------------------------- circuits
def test_head_scores_are_the_analysis_functions(model):
    scores = compute.head_scores(model)
    assert scores.probe_len == min(50, (model.cfg.n_ctx - 1) // 2)
    expected = induction_scores(model, seq_len=scores.probe_len, n_seq=10)
    np.testing.assert_allclose(scores.induction, expected.numpy(), atol=1e-5)
    previous = previous_token_scores(model, seq_len=scores.probe_len, n_seq=10)
    np.testing.assert_allclose(scores.previous_token, previous.numpy(), atol=1e-5)
    np.testing.assert_allclose(scores.copying, ov_copying_scores(model).numpy(), atol=1e-5)
    label, value = scores.strongest(scores.induction)
    layer, head = divmod(int(expected.argmax()), model.cfg.n_heads)
    assert label == f"L{layer}H{head}" and value == pytest.approx(float(expected.max()))


def test_circuit_view_reads_the_qk_and_ov_rows(model):
    view = compute.circuit_view(model, 1, 2, " Abraham", " said", k=5)
    q, s = model.to_single_token(" Abraham"), model.to_single_token(" said")
    qk = model.W_E[q] @ model.W_Q[1, 2] @ model.W_K[1, 2].T @ model.W_E.T
    assert [t.token_id for t in view.top_keys] == qk.topk(5).indices.tolist()
    np.testing.assert_allclose(
        [t.value for t in view.top_keys], qk.topk(5).values.detach(), rtol=1e-4, atol=1e-5
    )
    ov = model.W_E[s] @ model.W_V[1, 2] @ model.W_O[1, 2] @ model.W_U
    assert [t.token_id for t in view.boosted] == ov.topk(5).indices.tolist()
    assert [t.token_id for t in view.suppressed] == ov.topk(5, largest=False).indices.tolist()
    assert view.source_logit == pytest.approx(float(ov[s]), abs=1e-5)
    assert view.source_rank == int((ov > ov[s]).sum())
    assert view.copying_score == pytest.approx(float(ov_copying_scores(model)[1, 2]), abs=1e-5)
    assert view.head == "L1H2" and view.query == " Abraham"
    with pytest.raises(InputError, match="out of range"):
        compute.circuit_view(model, 2, 0, " the", " the")
    assert full_ov_circuit(model).shape[-1] == model.cfg.d_vocab


# ------------------------------------------------------------------------ browse
@pytest.fixture(scope="module")
def example(model):
    return sources.example_tokens(model, sources.corpus_dataset().texts[0])


def test_examples_and_reference_rows(model, example, data_file):
    assert example.shape == (1, sources.example_length(model))
    assert example[0, 0].item() == model.tokenizer.bos_token_id
    later = sources.example_tokens(model, sources.corpus_dataset().texts[0], start=10)
    assert torch.equal(later[0, 1:20], example[0, 11:30])
    with pytest.raises(InputError, match="past the document"):
        sources.example_tokens(model, "short text", start=500)
    rows = sources.reference_rows(model, sources.corpus_dataset(), n_rows=4)
    assert rows.shape == (4, sources.example_length(model))
    short = sources.file_dataset(data_file)  # documents shorter than an example
    assert len(short.texts) == 3
    with pytest.raises(InputError, match="mean ablation"):
        sources.reference_rows(model, sources.Dataset(["a"], ["tiny"], "x"))


@pytest.mark.parametrize("component", ["L1H2", "L0H0", "attn 1"])
def test_zero_ablation_view_matches_per_token_loss_change(model, example, component):
    view = compute.ablation_view(model, example, component, "zero")
    chosen, _, _ = compute.parse_component(model, component)
    change = per_token_loss_change(model, example, chosen, "zero")[0]
    clean = model(example, return_type="loss", loss_per_token=True)[0]
    np.testing.assert_allclose(view.clean_loss, clean.detach().numpy(), atol=1e-4)
    np.testing.assert_allclose(view.ablated_loss - view.clean_loss, change.numpy(), atol=1e-4)
    assert view.helps_most[0].change == pytest.approx(float(change.max()), abs=1e-4)
    assert view.hurts_most[0].change == pytest.approx(float(change.min()), abs=1e-4)
    logits = model(example)[0]
    targets = example[0, 1:]
    np.testing.assert_allclose(
        view.clean_target_logit, logits[:-1].gather(-1, targets[:, None])[:, 0].detach(), atol=1e-4
    )
    assert view.clean_top[7][0].token_id == int(logits[7].argmax())


def test_mean_ablation_uses_the_dataset_means(model, example):
    rows = sources.reference_rows(model, sources.corpus_dataset(), n_rows=4)
    means = compute.component_means(model, rows)
    view = compute.ablation_view(model, example, "L1H2", "mean", means)
    change = per_token_loss_change(model, example, Component.head(1, 2), "mean", data=rows)[0]
    np.testing.assert_allclose(view.ablated_loss - view.clean_loss, change.numpy(), atol=1e-4)
    with pytest.raises(InputError, match="means"):
        compute.ablation_view(model, example, "L1H2", "mean")
    with pytest.raises(InputError, match="method"):
        compute.ablation_view(model, example, "L1H2", "resample")


def test_ablation_view_shows_the_heads_attention_attribution_and_lens(model, example):
    view = compute.ablation_view(model, example, "L1H2", "zero")
    _, cache = model.run_with_cache(example)
    np.testing.assert_allclose(view.pattern, cache["pattern", 1][0, 2].numpy(), atol=1e-5)
    write = torch.einsum("pe,ed->pd", cache["z", 1][0, :-1, 2], model.W_O[1, 2])
    write = write - write.mean(-1, keepdim=True)
    direction = model.W_U[:, example[0, 1:]].T
    expected = ((write / cache["ln_final.hook_scale"][0, :-1]) * direction).sum(-1)
    np.testing.assert_allclose(view.direct_attribution, expected.detach().numpy(), atol=1e-4)
    lens = logit_lens(model, cache, target_tokens=example[:, 1:], pos_slice=slice(0, -1), top_k=1)
    assert view.lens_label == "1_pre"
    np.testing.assert_allclose(view.lens_target_prob, lens.target_probs[1, 0].numpy(), atol=1e-5)
    top = int(lens.top_tokens[1, 0, 4, 0])  # byte pieces read <0xNN> (test_explorer_tokens_ranking)
    assert view.lens_top[4] == token_display.token_text(model.tokenizer, top)
    assert compute.ablation_view(model, example, "attn 0", "zero").pattern is None


# -------------------------------------------------------------------- schematics
def test_head_steps_recompute_every_step_from_the_weights(model):
    steps = schematics.head_steps(model, PROMPT, 1, 3, 6)
    assert set(steps.checks) == {
        "q = x W_Q + b_Q",
        "k = x W_K + b_K",
        "v = x W_V + b_V",
        "scores = q k / scale",
        "pattern = softmax(scores)",
        "z = pattern v",
    }
    assert max(steps.checks.values()) < 1e-4
    assert steps.k.shape == (7, model.cfg.d_head) and steps.pattern.sum() == pytest.approx(
        1.0, abs=1e-5
    )
    assert steps.attn_scale == pytest.approx(model.cfg.d_head**0.5)
    _, cache = model.run_with_cache(model.to_tokens(PROMPT))
    np.testing.assert_allclose(steps.z, cache["z", 1][0, 6, 3].numpy(), atol=1e-5)
    with pytest.raises(InputError, match="out of range"):
        schematics.head_steps(model, PROMPT, 0, 0, 100)


def test_embeddings_and_residual_sum_add_up(model):
    view = schematics.embedding_view(model, PROMPT)
    assert view.max_abs_diff < 1e-5 and view.token_embed.shape == (
        len(view.str_tokens),
        model.cfg.d_model,
    )
    total = schematics.residual_sum(model, PROMPT, 4)
    assert total.labels == ["embed", "pos_embed", "0_attn_out", "1_attn_out"]
    assert total.max_abs_diff < 1e-4
    logits = model(model.to_tokens(PROMPT))[0, 4]
    predicted = int(logits.argmax())
    assert total.predicted == model.to_single_str_token(predicted)
    assert total.attributions.sum() == pytest.approx(
        float(logits[predicted] - model.b_U[predicted]), abs=1e-4
    )


# ----------------------------------------------------------------------- sources
def test_data_files_are_validated(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    assert sources.file_dataset(jsonl).texts == ["one", "two"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": 1}\n')
    with pytest.raises(sources.SourceError, match="line 2"):
        sources.file_dataset(bad)
    with pytest.raises(sources.SourceError, match="does not exist"):
        sources.check_data_path(tmp_path / "missing.txt")
    (tmp_path / "d.csv").write_text("a,b")
    with pytest.raises(sources.SourceError, match=".txt"):
        sources.check_data_path(tmp_path / "d.csv")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(sources.SourceError, match="no documents"):
        sources.file_dataset(tmp_path / "empty.txt")


def test_store_runs_and_details(tmp_path):
    store = make_store(tmp_path / "runs.db")
    with pytest.raises(sources.SourceError, match="does not exist"):
        sources.check_store_path(tmp_path / "nope.db")
    (tmp_path / "text.db").write_text("not a database")
    with pytest.raises(sources.SourceError, match="not an experiment store"):
        sources.check_store_path(tmp_path / "text.db")
    bench = sources.open_bench(store)
    try:
        rows = sources.run_rows(bench)
        assert [(r.name, r.status) for r in rows] == [("toy_losses", "ok")]
        assert rows[0].plots == ["curve.plotly.json", "curve.png"]
        detail = sources.run_detail(bench, rows[0].run_id)
        assert detail.args == {"scale": "1.0"}
        assert detail.result["note"] == "'toy'" and "def toy_losses" in detail.source
        assert detail.attachments["curve.png"] == "image/png"
    finally:
        bench.close()


def test_dynamics_from_npz_and_from_snapshots(tmp_path):
    view = sources.dynamics_view(make_dynamics_folder(tmp_path / "run"))
    assert view.steps.tolist() == [0, 10, 20, 40, 80, 160]
    assert [h["head"] for h in view.summary["induction_heads"]] == ["L1H2"]
    assert view.pca_trajectory.shape == (6, 3)
    measured = sources.dynamics_view(make_snapshots(tmp_path / "snaps"), n_tokens=20)
    assert measured.steps.tolist() == [0, 10, 20] and measured.induction.shape == (3, 2, 4)
    assert "measured" in measured.origin
    with pytest.raises(sources.SourceError, match="no step_"):
        sources.check_snapshots_path(tmp_path)


# ------------------------------------------------------------------------- CLI
def _args(*argv):
    parser = argparse.ArgumentParser()
    add_explore_parser(parser.add_subparsers())
    return parser.parse_args(["explore", *argv])


def test_explore_binds_localhost_and_passes_checked_paths(tmp_path, model_dir, data_file):
    store = make_store(tmp_path / "runs.db")
    command, env = streamlit_command(
        _args(
            "--model",
            str(model_dir),
            "--data",
            str(data_file),
            "--store",
            str(store),
            "--port",
            "9123",
        )
    )
    assert command[1:4] == ["-m", "lookingglass.explorer.serve", "run"] and command[4].endswith(
        "explorer/app.py"
    )
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "9123"
    assert (
        options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    )
    assert env[ENV["model"]] == str(model_dir.resolve()) and env[ENV["data"]] == str(
        data_file.resolve()
    )
    assert env[ENV["store"]] == str(store.resolve()) and ENV["snapshots"] not in env
    assert streamlit_command(_args())[1][ENV["model"]] == "lookingglass-attn2"


def test_explore_refuses_bad_paths(tmp_path, capsys):
    from lookingglass.cli import main

    assert main(["explore", "--store", str(tmp_path / "missing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["explore", "--snapshots", str(tmp_path)]) == 2
    assert main(["explore", "--port", "70000"]) == 2
