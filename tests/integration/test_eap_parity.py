"""Edge attribution patching (EAP, Syed et al. 2023) gives TransformerLens 3.9's scores.

EAP scores an edge u -> d by `(corrupted_u - clean_u) . d metric / d input_d`, where u
is a write into the residual stream (`hook_embed`, `hook_pos_embed`, each head's
`attn.hook_result`, `hook_mlp_out`) and d a read from it (each head's
`hook_q/k/v_input`, `hook_mlp_in`, the final `hook_resid_post`). The same small function,
written only against the TransformerLens hook API, runs on both libraries with identical
weights; the scores must agree. It only does if `hook_q/k/v_input` mean the residual
before ln1, per head, as in TransformerLens.
"""

from __future__ import annotations

import pytest
import torch

from tests._helpers import max_abs_diff, one_cpu_thread, random_tokens
from tests.integration.test_hook_meanings import GPT2_LIKE, LLAMA_LIKE, _pair

FLAGS = dict(use_split_qkv_input=True, use_attn_result=True, use_hook_mlp_in=True)
UPSTREAM = ("hook_embed", "hook_pos_embed", "attn.hook_result", "hook_mlp_out")
DOWNSTREAM = ("hook_q_input", "hook_k_input", "hook_v_input", "hook_mlp_in")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


def _is_upstream(name: str) -> bool:
    return name.endswith(UPSTREAM)


def _is_downstream(name: str, n_layers: int) -> bool:
    return name.endswith(DOWNSTREAM) or name == f"blocks.{n_layers - 1}.hook_resid_post"


def _layer(name: str) -> float:
    """Where a hook sits in the forward order: embeddings, then per layer attention and
    MLP, then the final residual (an edge runs from an earlier node to a later one)."""
    if not name.startswith("blocks."):
        return -1
    layer = int(name.split(".")[1])
    if "resid_post" in name:
        return layer + 1
    return layer + (0.5 if "mlp" in name else 0.0)


def eap_scores(model, clean, corrupted, answer, wrong) -> dict[tuple[str, str], torch.Tensor]:
    """EAP edge scores `{(upstream, downstream): [up_heads, down_heads]}` (heads 1 for
    non-head nodes), from the TransformerLens hook API only."""
    n_layers = model.cfg.n_layers
    _, clean_cache = model.run_with_cache(clean, names_filter=_is_upstream)
    _, corrupted_cache = model.run_with_cache(corrupted, names_filter=_is_upstream)
    grads: dict[str, torch.Tensor] = {}

    def save_grad(grad, hook):
        grads[hook.name] = grad.detach()

    downstream = lambda name: _is_downstream(name, n_layers)  # noqa: E731
    with model.hooks(bwd_hooks=[(downstream, save_grad)]):
        logits = model(clean)
        metric = (logits[:, -1, answer] - logits[:, -1, wrong]).mean()
        metric.backward()
    scores = {}
    for up in clean_cache.keys():
        delta = corrupted_cache[up] - clean_cache[up]
        delta = delta if delta.dim() == 4 else delta[:, :, None]
        for down, grad in grads.items():
            if _layer(up) >= _layer(down):
                continue
            grad = grad if grad.dim() == 4 else grad[:, :, None]
            scores[(up, down)] = torch.einsum("bpud,bpkd->uk", delta, grad)
    return scores


@pytest.mark.parametrize("arch", [GPT2_LIKE, LLAMA_LIKE], ids=["gpt2-like", "llama-like-gqa"])
def test_eap_scores_equal_transformerlens(arch):
    ours, theirs = _pair(31, arch, **FLAGS)
    clean = random_tokens(3, 10, seed=1)
    corrupted = clean.clone()
    corrupted[:, 2:5] = random_tokens(3, 3, seed=2)
    scores = eap_scores(ours, clean, corrupted, answer=5, wrong=7)
    tl_scores = eap_scores(theirs, clean, corrupted, answer=5, wrong=7)
    assert scores.keys() == tl_scores.keys()
    n_heads, n_kv = 4, arch.get("n_key_value_heads", 4)
    assert scores[("blocks.0.attn.hook_result", "blocks.1.hook_k_input")].shape == (n_heads, n_kv)
    largest = max(s.abs().max().item() for s in tl_scores.values())
    assert largest > 1e-2  # the scores are not all trivially zero
    diffs = {edge: max_abs_diff(scores[edge], tl_scores[edge]) for edge in scores}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= 1e-5, f"{worst}: {diffs[worst]:.3g}"
