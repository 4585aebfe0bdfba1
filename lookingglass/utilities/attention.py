"""TransformerLens's module path `transformer_lens.utilities.attention`
(implementation: `lookingglass.utils.attention`)."""

from lookingglass.utils.attention import clamp_qkv, complex_attn_linear, simple_attn_linear

__all__ = ["clamp_qkv", "complex_attn_linear", "simple_attn_linear"]
