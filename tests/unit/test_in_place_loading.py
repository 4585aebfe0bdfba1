"""Loading without a second copy of the weights: memory-mapped safetensors processed in
place. Checked against TransformerLens 3.9's `ProcessWeights` (same numbers), against
the checkpoint file (never written), and for aliasing (a tied unembedding stays a
separate parameter; views of one buffer that share no element are not copied)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from transformer_lens.weight_processing import ProcessWeights

from lookingglass import HookedTransformer
from lookingglass.loading import processing
from lookingglass.loading.converters import converter_for
from lookingglass.loading.in_place import exclusive
from lookingglass.loading.pretrained import load_checkpoint
from tests._helpers import assert_close

TL_ATOL = 1e-6


def test_exclusive_copies_only_what_shares_elements():
    buffer = torch.randn(8, 12)
    sd = {
        "q": buffer[:, :4],  # three column blocks of one buffer: interleaved, disjoint
        "k": buffer[:, 4:8],
        "v": buffer[:, 8:],
        "v_again": buffer[:, 8:10],  # shares elements with "v"
        "transposed": buffer.T,  # shares every element
        "expanded": torch.zeros(3).expand(4, 3),  # one element seen four times
        "own": torch.ones(5),
    }
    before = {k: v.data_ptr() for k, v in sd.items()}
    values = {k: v.clone() for k, v in sd.items()}
    exclusive(sd)
    kept = {k for k, v in sd.items() if v.data_ptr() == before[k]}
    assert kept == {"q", "k", "v", "own"}
    for key, tensor in sd.items():
        assert torch.equal(tensor, values[key])
    sd["v"].add_(1.0)  # writing into one key leaves the copies alone
    assert torch.equal(sd["v_again"], values["v_again"])


@pytest.fixture(scope="module")
def checkpoint_views(tiny_gpt2_dir):
    """The converter's state dict as loaded: views of the (memory-mapped) checkpoint."""
    hf_config, checkpoint = load_checkpoint(tiny_gpt2_dir)
    converter = converter_for(hf_config)
    cfg = converter.config_from_hf(hf_config)
    return lambda: converter.state_dict_from_hf(load_checkpoint(tiny_gpt2_dir)[1], cfg), cfg


@pytest.mark.parametrize(
    "flags",
    [{}, {"refactor_factored_attn_matrices": True}, {"fold_value_biases": False}],
    ids=["defaults", "refactor", "no_bias_fold"],
)
def test_in_place_processing_matches_transformer_lens(checkpoint_views, flags):
    fresh, cfg = checkpoint_views
    ours, _ = processing.process_weights(fresh(), cfg, in_place=True, **flags)
    theirs = ProcessWeights.process_weights(
        {k: v.clone() for k, v in fresh().items()}, cfg, **flags
    )
    for key in ours:
        assert_close(ours[key], theirs[key], TL_ATOL, key)


def _digest(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_processed_load_leaves_the_file_and_tied_weights_alone(tiny_gpt2_dir):
    """GPT-2 ties its unembedding to its embedding: after loading (processing writes into
    the mapped tensors) the file is unchanged, and W_E and W_U are separate parameters."""
    digest = _digest(tiny_gpt2_dir)
    model = HookedTransformer.from_pretrained(tiny_gpt2_dir, device="cpu")
    raw = HookedTransformer.from_pretrained_no_processing(tiny_gpt2_dir, device="cpu")
    assert _digest(tiny_gpt2_dir) == digest
    assert torch.equal(raw.W_U, raw.W_E.T)
    W_U = raw.W_U.detach().clone()
    with torch.no_grad():
        raw.W_E.mul_(0.0)
        model.W_E.mul_(0.0)
    assert torch.equal(raw.W_U, W_U)
    fresh = HookedTransformer.from_pretrained_no_processing(tiny_gpt2_dir, device="cpu")
    assert torch.equal(fresh.W_U, W_U)  # the zeroed W_E was a private copy-on-write page
