"""Checks the training commands (`train-default`, `replicate`) run on their arguments
before any slow work: a bad value stops the command at once with a reason."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lookingglass.errors import InputError


def positive_int(text: str) -> int:
    """An argparse `type`: a whole number >= 1 (a step or thread count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def output_folder(path: str | Path, what: str = "--out") -> Path:
    """`path`, checked to be a folder that can be made and written (nothing is created
    yet: a run that fails later leaves no empty folder behind).

    Raises:
        InputError: it is a file, lies under a file, or its nearest existing folder
            cannot be written.
    """
    folder = Path(path).expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == folder else f"lies under {str(existing)!r}, which is"
        raise InputError(f"{what} {str(path)!r} {where} an existing file; name a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(
            f"{what} {str(path)!r} cannot be written ({str(existing)!r}: permission denied)."
        )
    return folder
