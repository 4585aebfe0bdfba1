"""CSPA and the copy-suppression survey on the real model, SmolLM2-135M-Instruct (30
layers, 9 query heads sharing 3 key/value heads): the pieces agree with the model's own
forward pass and with the library's mean ablation, and one number of
docs/copy_suppression.md is re-derived."""

from __future__ import annotations

import pytest
import torch

from lookingglass.analysis.copy_suppression import ov_suppression_fraction
from lookingglass.interventions import (
    ablate,
    copy_suppression_preserving_ablation,
    cspa_head_output,
    head_mean_result,
)
from lookingglass.interventions.cspa import cspa_hook_names

TEXT = (
    "And Moses said unto the LORD, Behold, the children of Israel have not hearkened "
    "unto me; how then shall Pharaoh hear me, who am of uncircumcised lips? And the LORD "
    "spake unto Moses and unto Aaron, and gave them a charge unto the children of Israel."
)
HEAD = (24, 1)  # any head of a grouped-query layer will do for the first two tests
BEST = (23, 3)  # the doc's best candidate: its OV suppression fraction, 27.5%
BEST_OV_FRACTION = 282 / 1024


@pytest.fixture(scope="module")
def tokens(smollm2):
    return smollm2.to_tokens(TEXT)[:, :48]


@torch.no_grad()
def test_per_source_decomposition_is_the_heads_output(smollm2, tokens):
    """Summing pattern x (v @ W_O) over sources, with the key/value head this query head
    shares, gives the head's output as the model computes it from hook_z."""
    layer, head = HEAD
    names = [*cspa_hook_names(smollm2, layer), f"blocks.{layer}.attn.hook_z"]
    _, cache = smollm2.run_with_cache(tokens, names_filter=names, return_cache_object=False)
    mean = torch.zeros(smollm2.cfg.d_model)
    clean, everything, _ = cspa_head_output(
        smollm2, tokens, HEAD, mean, cache, project_ov=False, restrict_qk=False
    )
    reference = cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ smollm2.W_O[layer, head]
    torch.testing.assert_close(clean, reference, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(everything, reference, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_keeping_nothing_is_the_librarys_mean_ablation(smollm2, tokens):
    data = smollm2.to_tokens(TEXT)[:, 48:80]
    mean = head_mean_result(smollm2, HEAD, data)
    result = copy_suppression_preserving_ablation(smollm2, tokens, HEAD, mean, top_k=0, path="full")
    with ablate(smollm2, heads=[HEAD], method="mean", data=data, per_position=False):
        reference = smollm2(tokens, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(result.loss_mean_ablated, reference, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(result.loss_cspa, reference, atol=2e-4, rtol=1e-4)


@torch.no_grad()
def test_ov_suppression_fraction_of_the_documented_candidate(smollm2):
    """docs/copy_suppression.md, OV suppression fraction of the best candidate (1,024
    tokens, seed 0)."""
    scores = ov_suppression_fraction(smollm2, n_tokens=1024, seed=0, heads=[BEST])
    assert scores[BEST] == pytest.approx(BEST_OV_FRACTION, abs=1e-3)
    assert scores.isnan().sum() == scores.numel() - 1
