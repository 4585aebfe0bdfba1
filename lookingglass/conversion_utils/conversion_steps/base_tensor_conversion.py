"""TransformerLens's `BaseTensorConversion`: a reversible view of a tensor.

`HookPoint.enable_reshape(conversion)` makes every hook on that point see
`conversion.convert(x)` and have what it returns passed through `conversion.revert`.
Subclasses implement `handle_conversion` (and `revert`, the identity by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lookingglass.errors import NotSupportedError


class BaseTensorConversion:
    """`convert(x)` = `output_filter(handle_conversion(input_filter(x)))`, each filter
    optional; `revert(x)` undoes it (the identity unless overridden)."""

    def __init__(
        self, input_filter: Callable | None = None, output_filter: Callable | None = None
    ) -> None:
        self.input_filter = input_filter
        self.output_filter = output_filter

    def convert(self, input_value: Any, *full_context: Any) -> Any:
        """The converted value (what a hook sees)."""
        if self.input_filter is not None:
            input_value = self.input_filter(input_value)
        output = self.handle_conversion(input_value, *full_context)
        return self.output_filter(output) if self.output_filter is not None else output

    def handle_conversion(self, input_value: Any, *full_context: Any) -> Any:
        """The conversion itself: subclasses implement it."""
        raise NotSupportedError(
            f"The conversion function for {type(self).__name__} needs to be implemented: "
            "override handle_conversion."
        )

    def revert(self, input_value: Any, *full_context: Any) -> Any:
        """Undo the conversion (a hook's result back to the hook point's layout)."""
        return input_value
