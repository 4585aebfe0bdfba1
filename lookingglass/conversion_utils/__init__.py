"""TransformerLens's `conversion_utils` module path, for the one piece HookedTransformer
code uses: `conversion_steps.base_tensor_conversion.BaseTensorConversion`, the
conversion `HookPoint.enable_reshape` applies around hooks."""
