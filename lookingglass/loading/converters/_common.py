"""Checks shared by every converter and by the native loader: does a state dict have
exactly the tensors, with exactly the shapes, that the model expects?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from lookingglass.errors import CheckpointError

_SHOWN = 20  # names listed per category before "... and N more"


def check_state_dict(
    found: Mapping[str, torch.Tensor],
    expected: Mapping[str, Sequence[int] | None],
    source: str,
    optional: Sequence[str] = (),
) -> None:
    """Raise `CheckpointError` listing every missing, unexpected and mis-shaped tensor.

    Args:
        found: the state dict read from the checkpoint.
        expected: name -> shape the model needs (None: any shape is accepted).
        source: what was read (a folder or file name), for the message.
        optional: names that may be absent or present (e.g. a tied `lm_head.weight`).
    """
    missing = sorted(set(expected) - set(found) - set(optional))
    unexpected = sorted(set(found) - set(expected) - set(optional))
    mismatched = sorted(
        f"{name}: checkpoint {tuple(found[name].shape)}, model {tuple(shape)}"
        for name, shape in expected.items()
        if shape is not None and name in found and tuple(found[name].shape) != tuple(shape)
    )
    if not (missing or unexpected or mismatched):
        return
    parts = [f"The checkpoint {source} does not match the model."]
    for label, names in (
        ("Missing keys", missing),
        ("Unexpected keys", unexpected),
        ("Shape mismatches", mismatched),
    ):
        if names:
            more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
            parts.append(f"{label} ({len(names)}): {', '.join(names[:_SHOWN])}{more}.")
    parts.append(
        "Check that config.json belongs to these weights and that the folder holds every shard."
    )
    raise CheckpointError(" ".join(parts))
