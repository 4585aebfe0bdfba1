"""The exceptions lookingglass raises.

Every error the library raises on purpose is a `LookingGlassError`, so callers can catch
the library's complaints without catching unrelated bugs. Messages say what was wrong,
what was expected, and how to fix it.
"""


class LookingGlassError(Exception):
    """Base class of every error lookingglass raises on purpose."""


class ConfigError(LookingGlassError, ValueError):
    """A model or training configuration field has a bad or unsupported value."""


class InputError(LookingGlassError, ValueError):
    """The input to a model or function is malformed (empty, too long, out of range)."""


class HookError(LookingGlassError):
    """A hook name is unknown, or a hook function misbehaved (wrong shape, dtype, type)."""


class CheckpointError(LookingGlassError):
    """A checkpoint folder or file is missing, corrupt, or does not match the model."""


class UnsupportedArchitectureError(LookingGlassError):
    """The checkpoint's architecture has no native implementation."""
