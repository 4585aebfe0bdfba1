"""Temporarily overridden model defaults (`transformer_lens.utilities.defaults_utils`)."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from lookingglass.errors import InputError
from lookingglass.utils.tensors import get_nested_attr, set_nested_attr

USE_DEFAULT_VALUE = None


def override_or_use_default_value(default_flag: Any, override: Any = None) -> Any:
    """`override` unless it is None, else `default_flag`."""
    return override if override is not None else default_flag


class LocallyOverridenDefaults:
    """Inside the block, `model.cfg.default_prepend_bos` and `model.tokenizer.padding_side`
    take the given values (None: keep the default); they are restored on exit.

    `with LocallyOverridenDefaults(model, prepend_bos=False, padding_side="left"): ...`
    (TransformerLens's spelling of "overridden").
    """

    _LOCATIONS = {
        "prepend_bos": ("model.cfg.default_prepend_bos", (USE_DEFAULT_VALUE, True, False)),
        "padding_side": ("model.tokenizer.padding_side", (USE_DEFAULT_VALUE, "left", "right")),
    }

    def __init__(self, model: Any, **overrides: Any) -> None:
        self.model = model
        self.overrides = overrides
        self._saved: dict[str, Any] = {}
        for name in overrides:
            if name not in self._LOCATIONS:
                raise InputError(
                    f"{name} is not a valid parameter to override. "
                    f"Valid parameters are {list(self._LOCATIONS)}."
                )

    def _skip(self, name: str) -> bool:
        return name == "padding_side" and self.model.tokenizer is None

    def __enter__(self) -> LocallyOverridenDefaults:
        for name, override in self.overrides.items():
            if self._skip(name):
                continue
            location, valid = self._LOCATIONS[name]
            if override not in valid:
                raise InputError(f"{name} must be one of {list(valid)}, but got {override}.")
            default = get_nested_attr(self, location)
            self._saved[name] = deepcopy(default)
            set_nested_attr(self, location, override_or_use_default_value(default, override))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, value in self._saved.items():
            set_nested_attr(self, self._LOCATIONS[name][0], value)
        self._saved.clear()
