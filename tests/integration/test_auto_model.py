"""HookedAutoModel on architectures we do not implement natively (Mamba) and on tuple
outputs (GPT-2 attention): the reference is what a plain PyTorch forward hook sees."""

import pytest
import torch
import transformers

from lookingglass import HookError
from lookingglass.auto import HookedAutoModel


@pytest.fixture(scope="module")
def mamba():
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, state_size=8
    )
    return transformers.MambaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    cfg._attn_implementation = "eager"  # returns the attention pattern as a second output
    return transformers.GPT2LMHeadModel(cfg).eval()


def torch_hook_outputs(model, tokens, paths):
    """Module outputs as a plain PyTorch forward hook sees them (the reference)."""
    seen, handles = {}, []
    modules = dict(model.named_modules())
    for path in paths:
        handles.append(
            modules[path].register_forward_hook(lambda m, a, out, p=path: seen.__setitem__(p, out))
        )
    try:
        with torch.no_grad():
            logits = model(tokens).logits
    finally:
        for h in handles:
            h.remove()
    return logits, seen


def no_torch_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_mamba_cache_equals_plain_pytorch_hooks(mamba):
    wrapped = HookedAutoModel(mamba)
    tokens = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    paths = ["backbone.layers.0.mixer.out_proj", "backbone.layers.1", "backbone.norm_f"]
    ref_logits, ref = torch_hook_outputs(mamba, tokens, paths)
    with torch.no_grad():
        logits, cache = wrapped.run_with_cache(tokens)
    assert torch.equal(logits, ref_logits)
    for path in paths:
        ours = cache[f"{path}.hook_out"]
        assert ours.shape[0] == 3  # every batch row, not the first
        torch.testing.assert_close(ours, ref[path], rtol=0, atol=0)
    assert no_torch_hooks(mamba)


def test_editing_a_hook_equals_a_manual_edit(mamba):
    wrapped = HookedAutoModel(mamba)
    tokens = torch.randint(0, 100, (2, 6), generator=torch.Generator().manual_seed(2))
    layer = dict(mamba.named_modules())["backbone.layers.0.mixer.out_proj"]

    def manual(module, args, out):
        return out * 0.5

    handle = layer.register_forward_hook(manual)
    try:
        with torch.no_grad():
            expected = mamba(tokens).logits
    finally:
        handle.remove()
    with torch.no_grad():
        plain = wrapped(tokens)
        edited = wrapped.run_with_hooks(
            tokens,
            fwd_hooks=[("backbone.layers.0.mixer.out_proj.hook_out", lambda x, hook: x * 0.5)],
        )
    assert not torch.allclose(plain, expected)
    torch.testing.assert_close(edited, expected, rtol=0, atol=0)


def test_no_hooks_remain_after_exceptions(mamba):
    wrapped = HookedAutoModel(mamba)
    tokens = torch.randint(0, 100, (1, 5))

    def boom(x, hook):
        raise RuntimeError("hook failed")

    for _ in range(50):
        with pytest.raises(RuntimeError, match="hook failed"):
            wrapped.run_with_hooks(tokens, fwd_hooks=[("backbone.layers.1.hook_out", boom)])
    assert wrapped.num_hooks() == 0
    assert no_torch_hooks(mamba)


def test_tuple_outputs_get_one_point_per_tensor(gpt2):
    wrapped = HookedAutoModel(gpt2)
    tokens = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(3))
    _, ref = torch_hook_outputs(gpt2, tokens, ["transformer.h.1.attn"])
    with torch.no_grad():
        _, cache = wrapped.run_with_cache(
            tokens, names_filter=lambda n: n.startswith("transformer.h.1.attn.")
        )
    assert isinstance(ref["transformer.h.1.attn"], tuple)
    assert "transformer.h.1.attn.hook_out" not in wrapped.hook_dict
    torch.testing.assert_close(
        cache["transformer.h.1.attn.hook_out_0"], ref["transformer.h.1.attn"][0]
    )
    # The pattern comes back as its own point: [batch, head, q, k].
    assert cache["transformer.h.1.attn.hook_out_1"].shape == (2, 4, 7, 7)


def test_unknown_hook_name_suggests_close_names(gpt2):
    wrapped = HookedAutoModel(gpt2)
    with pytest.raises(HookError, match="transformer.h.0.mlp.hook_out"):
        wrapped.run_with_hooks(
            torch.zeros(1, 3, dtype=torch.long),
            fwd_hooks=[("transformer.h.0.mlp.hook_ot", lambda x, hook: x)],
        )


def test_input_hooks_see_the_module_input(gpt2):
    wrapped = HookedAutoModel(gpt2)
    tokens = torch.randint(0, 100, (2, 5))
    with torch.no_grad():
        _, cache = wrapped.run_with_cache(tokens)
    torch.testing.assert_close(
        cache["transformer.h.0.mlp.c_proj.hook_in"], cache["transformer.h.0.mlp.act.hook_out"]
    )
