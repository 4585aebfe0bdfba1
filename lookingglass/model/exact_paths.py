"""Fast paths whose numbers do not depend on which hooks are attached.

Norms (`F.layer_norm`) and attention (`scaled_dot_product_attention`) have a fused fast
path and an explicit path that materializes the hookable intermediates (`hook_scale`,
`hook_normalized`, `hook_attn_scores`, `hook_pattern`). The two agree only to float
rounding (~1e-7), so if attaching a hook switched paths, caching
`blocks.0.ln1.hook_scale` would change the logits in the last bits, and a pattern cached
with a names filter would differ from the same pattern in a full cache.

So a hooked component runs the explicit path for its hooks and, when the hooks left
their tensors as they were (read them, cached them), returns the fused path's numbers
with the explicit path's autograd graph: the forward values are bit-identical to an
unhooked run, and gradients (and backward hooks) flow through the hooked tensors as in
the explicit definition. A hook that edits its tensor gets the explicit path's numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lookingglass.hooks import HookPoint


class Watch:
    """Remembers a tensor before hooks see it, to tell afterwards whether they changed it
    (replaced it by other values, or edited it in place)."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor
        # Inference-mode tensors have no version counter: keep a copy to compare instead.
        self.copy = tensor.clone() if tensor.is_inference() else None
        self.version = None if self.copy is not None else tensor._version

    def unchanged(self, after: Tensor) -> bool:
        """True if `after` (what the hooks returned) has the values the tensor had."""
        if self.copy is not None:
            same_before = torch.equal(self.tensor, self.copy)
        else:
            same_before = self.tensor._version == self.version
        return same_before and (after is self.tensor or torch.equal(after, self.tensor))


def fast_values(fast: Tensor, explicit: Tensor) -> Tensor:
    """`fast`'s values with `explicit`'s autograd graph (both compute the same function).

    `explicit - explicit.detach()` is exactly zero, so the sum has `fast`'s values bit for
    bit, and its gradient is the gradient through `explicit`.
    """
    if not explicit.requires_grad:
        return fast
    return fast.detach() + (explicit - explicit.detach())


def through(hook_point: HookPoint, tensor: Tensor) -> tuple[Tensor, bool]:
    """`tensor` passed through `hook_point`, and whether its hooks left the values as
    they were (always True when nothing is attached)."""
    if not hook_point.has_hooks():
        return tensor, True
    watch = Watch(tensor)
    out = hook_point(tensor)
    return out, watch.unchanged(out)
