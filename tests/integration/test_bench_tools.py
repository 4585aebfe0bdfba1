"""Each built-in bench tool computes the right thing: checked against the analysis
functions it wraps and against computations written out here from the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lookingglass.analysis import logit_lens
from lookingglass.bench import Bench
from lookingglass.bench.tools import AttentionTool, LogitAttributionTool
from lookingglass.interventions.ablation import ablate
from tests._helpers import assert_close, make_model, make_tokenizer, one_cpu_thread

TEXT = "When Mary and John went to the store, John gave a drink to Mary"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    model = make_model(tokenizer=make_tokenizer())
    with Bench(model, store=tmp_path_factory.mktemp("store") / "e.db", progress=False) as b:
        yield b


def layer_norm(x, ln):
    """The LayerNorm formula, from its weights."""
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt() * ln.w + ln.b


def test_attention_patterns_are_softmaxed_scores(bench):
    model, tool = bench.model, bench.tool("attention")
    tokens = model.to_tokens(TEXT)
    _, cache = model.run_with_cache(tokens)
    pos = tokens.shape[1]
    for layer in range(model.cfg.n_layers):
        q, k = cache["q", layer], cache["k", layer]  # [batch, pos, head, d_head]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / model.cfg.attn_scale
        future = torch.triu(torch.ones(pos, pos, dtype=torch.bool), diagonal=1)
        expected = scores.masked_fill(future, float("-inf")).softmax(-1)
        pattern = tool.patterns(TEXT, layer)
        assert_close(pattern, expected, 1e-5, f"layer {layer} pattern")
        assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), 1e-5, "rows sum to 1")
        assert_close(
            tool.scores(TEXT, layer).masked_fill(future, 0),
            scores.masked_fill(future, 0),
            1e-4,
            "scores",
        )
    assert tool.patterns(TEXT).shape == (model.cfg.n_layers, 1, model.cfg.n_heads, pos, pos)
    top = tool.top_attended(TEXT, 1, 2, k=2)
    pattern = tool.patterns(TEXT, 1)[0, 2]
    assert top[5]["sources"][0][0] == int(pattern[5, :6].argmax())
    assert top[5]["sources"][0][2] == pytest.approx(float(pattern[5].max()))
    assert top[5]["dest_token"] == model.to_str_tokens(TEXT)[5]


def test_head_ablation_matches_a_manual_computation_and_the_ablation_module():
    model = make_model(tokenizer=make_tokenizer(), n_layers=1, attn_only=True)
    tool = AttentionTool(model)
    tokens = model.to_tokens(TEXT)
    _, cache = model.run_with_cache(tokens)
    attn = model.blocks[0].attn
    z = cache["z", 0].clone()
    z[:, :, 1] = 0
    resid_post = cache["resid_pre", 0] + torch.einsum("bphd,hdm->bpm", z, attn.W_O) + attn.b_O
    expected = model.unembed(model.ln_final(resid_post))
    assert_close(tool.ablate_heads(tokens, [(0, 1)]), expected, 1e-4, "zero ablation")
    reference = model.to_tokens(["The quick brown fox jumps over the lazy dog.", TEXT[:40]])
    mean_logits = tool.ablate_heads(tokens, [(0, 1)], mode="mean", reference=reference)
    with ablate(model, heads=[(0, 1)], method="mean", data=reference, per_position=False):
        assert_close(mean_logits, model(tokens), 1e-6, "mean ablation vs interventions.ablation")
    assert model.num_hooks() == 0
    effects = tool.head_ablation_effects(tokens)
    with torch.no_grad():
        loss = model(tokens, return_type="loss")
    assert float(effects[0, 1]) == pytest.approx(
        float(tool.ablate_heads(tokens, [(0, 1)], return_type="loss") - loss), abs=1e-5
    )


def test_logit_lens_reads_the_residual_stream_through_the_unembedding(bench):
    model, tool = bench.model, bench.tool("logit_lens")
    logits, cache = model.run_with_cache(TEXT)
    lens_logits, labels = tool.layer_logits(TEXT)
    assert labels == ["0_pre", "1_pre", "final_post"]
    assert_close(lens_logits[-1], logits, 1e-4, "last lens entry = model logits")
    for index, layer in enumerate(range(model.cfg.n_layers)):
        manual = layer_norm(cache["resid_pre", layer], model.ln_final) @ model.W_U + model.b_U
        assert_close(lens_logits[index], manual, 1e-4, f"lens at layer {layer}")
    result = tool.run(TEXT, top_k=3)
    reference = logit_lens(model, cache, top_k=3)
    assert result.top_tokens.equal(reference.top_tokens)
    assert_close(
        result.top_probs, lens_logits.softmax(-1).topk(3).values, 1e-5, "top-3 probabilities"
    )


def test_logit_attribution_sums_to_the_logit():
    # With LNPre the final norm has no weights, so the attributions add up to logit - b_U exactly.
    model = make_model(tokenizer=make_tokenizer(), normalization_type="LNPre")
    tool = LogitAttributionTool(model)
    tokens = model.to_tokens(TEXT)
    answer = int(tokens[0, -1])
    logits, cache = model.run_with_cache(tokens)
    attrs, labels = tool.by_component(tokens, answer, pos=-1)
    assert labels[:2] == ["embed", "pos_embed"] and len(labels) == 2 + 2 * model.cfg.n_layers
    assert float(attrs.sum()) == pytest.approx(
        float(logits[0, -1, answer] - model.b_U[answer].detach()), abs=1e-3
    )
    heads = tool.by_head(tokens, answer, pos=-1)
    scale = cache["ln_final.hook_scale"][0, -1]
    for layer, head in ((0, 0), (1, 3)):
        written = cache["z", layer][0, -1, head] @ model.blocks[layer].attn.W_O[head]
        manual = (written - written.mean()) / scale @ model.W_U[:, answer]
        assert float(heads[layer, head, 0]) == pytest.approx(float(manual), abs=1e-4)


def test_residual_decomposition_sums_to_the_stream(bench):
    model, tool = bench.model, bench.tool("residual")
    _, cache = model.run_with_cache(TEXT)
    stack, labels = tool.decompose(TEXT, layer=1)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out"]
    assert_close(stack.sum(0), cache["resid_pre", 1], 1e-4, "decomposition of resid_pre 1")
    stack, _ = tool.decompose(TEXT)
    assert_close(stack.sum(0), cache["resid_post", 1], 1e-4, "decomposition of the final stream")
    norms, _ = tool.norms(TEXT, pos=3)
    assert_close(norms[2], cache["attn_out", 0][:, 3].norm(dim=-1), 1e-5, "norm of 0_attn_out")


def test_write_read_composition_scores_from_dense_matrices(bench):
    model, tool = bench.model, bench.tool("write_read")
    OV = model.W_V @ model.W_O  # [layer, head, d_model, d_model]
    QK = model.W_Q @ model.W_K.transpose(-2, -1)
    readers = {"q": QK, "k": QK.transpose(-2, -1), "v": OV}
    for mode, reader in readers.items():
        scores = tool.composition_scores(mode)
        for h_w, h_r in ((0, 0), (2, 3)):
            product = OV[0, h_w] @ reader[1, h_r]
            manual = product.norm() / (OV[0, h_w].norm() * reader[1, h_r].norm())
            assert float(scores[0, h_w, 1, h_r]) == pytest.approx(float(manual), rel=1e-4)
        assert float(scores[1, 0, 0, 0]) == 0.0  # no composition backwards
    writers = tool.identify_write_heads(1, 2, mode="k", top_k=4)
    column = tool.composition_scores("k")[0, :, 1, 2]
    assert [h for _, h, _ in writers] == column.argsort(descending=True).tolist()
    readers_of = tool.identify_read_heads(0, 1, mode="v", top_k=2)
    assert all(layer == 1 for layer, _, _ in readers_of) and readers_of[0][2] >= readers_of[1][2]


def test_causal_tracing_patches_like_a_hand_written_hook(bench):
    model, tool = bench.model, bench.tool("causal_tracing")
    clean, corrupted = (
        model.to_tokens(TEXT),
        model.to_tokens(TEXT.replace("John gave", "Mary gave")),
    )
    answer, wrong = int(clean[0, -1]), int(clean[0, 3])
    metric = tool.logit_diff_metric(clean, corrupted, answer, wrong)
    result = tool.trace(clean, corrupted, metric, what="resid_pre")
    assert result.shape == (model.cfg.n_layers, clean.shape[1])
    _, clean_cache = model.run_with_cache(clean)
    for layer, pos in ((0, 9), (1, 4)):

        def patch(resid, hook, pos=pos, layer=layer):
            resid[:, pos] = clean_cache["resid_pre", layer][:, pos]
            return resid

        with torch.no_grad():
            logits = model.run_with_hooks(
                corrupted, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", patch)]
            )
        assert float(result[layer, pos]) == pytest.approx(float(metric(logits)), abs=1e-4)
    with torch.no_grad():
        assert float(metric(model(clean))) == pytest.approx(1.0) and float(
            metric(model(corrupted))
        ) == pytest.approx(0.0)


def test_circuits_are_the_weight_products(bench):
    model, tool = bench.model, bench.tool("circuits")
    for layer, head in ((0, 1), (1, 3)):
        ov = model.W_E @ model.W_V[layer, head] @ model.W_O[layer, head] @ model.W_U
        qk = model.W_E @ model.W_Q[layer, head] @ model.W_K[layer, head].T @ model.W_E.T
        assert_close(tool.ov(layer, head).AB, ov, 1e-4, "full OV")
        assert_close(tool.qk(layer, head).AB, qk, 1e-3, "full QK")
        eigenvalues = torch.linalg.eigvals(ov.double())  # dense [d_vocab, d_vocab], one thread
        copying = eigenvalues.sum().real / eigenvalues.abs().sum()
        assert float(tool.copying_scores()[layer, head]) == pytest.approx(float(copying), abs=1e-4)
        top = tool.top_ov_tokens(layer, head, 7, k=3)
        assert [t for t, _ in top] == ov[7].topk(3).indices.tolist()


def test_neuron_activations_and_sparsity_statistics(bench):
    from scipy import stats

    model = bench.model
    neurons, sparsity = bench.tool("neurons"), bench.tool("sparsity")
    _, cache = model.run_with_cache(TEXT)
    mlp, ln2 = model.blocks[1].mlp, model.blocks[1].ln2
    manual = F.gelu(
        layer_norm(cache["resid_mid", 1], ln2) @ mlp.W_in + mlp.b_in, approximate="tanh"
    )
    assert_close(neurons.activations(TEXT, 1), manual, 1e-4, "neuron activations")
    texts = [TEXT, "The quick brown fox jumps over the lazy dog."]
    top = neurons.top_activating(texts, 1, 5, k=3)
    best = max(float(neurons.activations(t, 1)[0, :, 5].max()) for t in texts)
    assert (
        top[0]["activation"] == pytest.approx(best)
        and top[0]["activation"] >= top[-1]["activation"]
    )
    acts = torch.cat([neurons.activations(t, 1)[0] for t in texts]).double()
    summary = sparsity.activation_stats(texts, "blocks.1.mlp.hook_post", threshold=0.1)
    assert_close(summary["frequency"], (acts > 0.1).double().mean(0), 1e-12, "activation frequency")
    reference = torch.from_numpy(stats.kurtosis(acts.numpy(), axis=0, fisher=False))
    assert_close(summary["kurtosis"], reference, 1e-8, "kurtosis")
    norms = sparsity.feature_norms(1)
    assert_close(norms["w_in"], mlp.W_in.norm(dim=0), 1e-6, "W_in norms")
    assert_close(norms["w_out"], mlp.W_out.norm(dim=1), 1e-6, "W_out norms")
    interference = sparsity.interference(0)
    W = model.blocks[0].mlp.W_out.double()
    cosine = F.cosine_similarity(W[3:4], W, dim=1)
    cosine[3] = 0
    assert float(interference["max_abs_cosine"][3]) == pytest.approx(float(cosine.abs().max()))
    assert float(interference["dimensionality"][3]) == pytest.approx(
        float(W[3].norm() ** 4 / ((W @ W[3]) ** 2).sum())
    )


def test_surgery_is_an_identity_layer_and_undoes_itself(bench):
    model, surgery = bench.model, bench.tool("surgery")
    tokens = model.to_tokens(TEXT)
    _, cache = model.run_with_cache(tokens)
    original = model(tokens)  # (without a cached pattern the fused attention kernel runs)
    with surgery.delete_layer(1) as edit:
        deleted = model(tokens)
        assert edit.active
    assert not edit.active and model.num_hooks() == 0
    assert_close(
        deleted, model.unembed(model.ln_final(cache["resid_post", 0])), 1e-4, "layer 1 deleted"
    )
    assert model(tokens).equal(original)
    with surgery.delete_layer(0):
        _, deleted_cache = model.run_with_cache(tokens)
    assert deleted_cache["resid_post", 0].equal(deleted_cache["resid_pre", 0])
    with surgery.replace_layer(0, lambda resid: 2 * resid):
        _, doubled = model.run_with_cache(tokens)
    assert_close(doubled["resid_post", 0], 2 * doubled["resid_pre", 0], 1e-6, "replaced layer")
    edit = surgery.knock_out_heads([(0, 2), (1, 0)])
    _, knocked = model.run_with_cache(tokens)
    edit.remove()
    assert (
        float(knocked["z", 0][:, :, 2].abs().max()) == 0.0
        and float(knocked["z", 1][:, :, 0].abs().max()) == 0.0
    )
    assert knocked["z", 0][:, :, 1].equal(cache["z", 0][:, :, 1])
    assert model(tokens).equal(original)
