"""Caching costs only what is cached: a sliced cache entry does not keep its whole
activation alive, caching every hook leaves the logits bit for bit as a plain forward
(PyTorch's fused attention), and gradients through a cached pattern are PyTorch's."""

from __future__ import annotations

import torch

from tests._helpers import make_model, random_tokens


def _own_bytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


def test_pos_slice_stores_only_the_slice():
    model = make_model(seed=0)
    tokens = random_tokens(batch=2, pos=12)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, pos_slice=-1, remove_batch_dim=False)
        _, sliced = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape[-2] == 1
    assert _own_bytes(pattern) == pattern.numel() * pattern.element_size()
    resid = sliced["blocks.0.hook_resid_pre"]
    assert resid.dim() == 2 and _own_bytes(resid) == resid.numel() * resid.element_size()


def test_full_cache_keeps_logits_and_gradients():
    model = make_model(seed=1)
    tokens = random_tokens(batch=2, pos=10)
    with torch.no_grad():
        plain = model(tokens)
        cached, cache = model.run_with_cache(tokens)
    assert torch.equal(plain, cached)
    assert "blocks.0.attn.hook_pattern" in cache

    def grad_of_W_Q(**kwargs):
        model.zero_grad()
        out = model.run_with_cache(tokens, **kwargs)[0] if kwargs else model(tokens)
        out[:, -1].logsumexp(-1).sum().backward()
        return model.blocks[0].attn.W_Q.grad.clone()

    fused = grad_of_W_Q()  # nothing hooked: scaled_dot_product_attention's backward
    hooked = grad_of_W_Q(names_filter=lambda n: n.endswith("hook_pattern"))
    assert torch.allclose(fused, hooked, atol=1e-6, rtol=1e-4)
