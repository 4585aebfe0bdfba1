"""The exceptions lookingglass raises.

Every error the library raises on purpose is a `LookingGlassError`, so callers can catch
the library's complaints without catching unrelated bugs. Messages say what was wrong,
what was expected, and how to fix it.

Each class also subclasses the built-in exceptions TransformerLens 3.9 raises in the same
situation, so code written for TransformerLens (`except AssertionError`, `except
ValueError`, `pytest.raises(AssertionError)`) keeps catching them:

- `ConfigError`: also `ValueError`, `AssertionError` (`HookedTransformerConfig` asserts).
- `InputError`: also `ValueError`, `AssertionError` (input checks in `HookedTransformer`,
  `utils`, `head_detector` are asserts or ValueErrors).
- `HookError`: also `KeyError` (an unknown hook name is `mod_dict[name]`), `ValueError`.
- `CheckpointError`: also `ValueError`, `OSError` (Hugging Face's missing-file error).
- `UnsupportedArchitectureError`: also `NotImplementedError` ("not currently supported"),
  `ValueError`.
- `NotSupportedError`: also `NotImplementedError`.
"""


class LookingGlassError(Exception):
    """Base class of every error lookingglass raises on purpose."""


class ConfigError(LookingGlassError, ValueError, AssertionError):
    """A model or training configuration field has a bad or unsupported value."""


class InputError(LookingGlassError, ValueError, AssertionError):
    """The input to a model or function is malformed (empty, too long, out of range)."""


class HookError(LookingGlassError, KeyError, ValueError):
    """A hook name is unknown, or a hook function misbehaved (wrong shape, dtype, type)."""

    # KeyError's str() is the repr of its message; show the message as written.
    __str__ = Exception.__str__


class HookSwitchedOffError(HookError, AssertionError):
    """A hook on an optional hook point whose `use_*` flag is off (an AssertionError, as
    TransformerLens's `check_hooks_to_add` raises)."""


class CheckpointError(LookingGlassError, ValueError, OSError):
    """A checkpoint folder or file is missing, corrupt, or does not match the model."""

    __str__ = Exception.__str__  # OSError's str() would do the same for one argument


class UnsupportedArchitectureError(LookingGlassError, NotImplementedError, ValueError):
    """The checkpoint's architecture has no native implementation."""


class NotSupportedError(LookingGlassError, NotImplementedError):
    """A TransformerLens name or feature lookingglass does not provide (yet); the message
    names the lookingglass equivalent, if there is one."""
