"""TransformerLens's `conversion_utils.conversion_steps` (only `BaseTensorConversion`)."""

from lookingglass.conversion_utils.conversion_steps.base_tensor_conversion import (
    BaseTensorConversion,
)

__all__ = ["BaseTensorConversion"]
