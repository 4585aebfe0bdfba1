"""TransformerLens's module path `transformer_lens.SVDInterpreter`, re-exporting
`lookingglass.analysis.svd.SVDInterpreter`."""

from lookingglass.analysis.svd import VECTOR_TYPES, SVDInterpreter

OUTPUT_EMBEDDING = "unembed.W_U"

__all__ = ["OUTPUT_EMBEDDING", "VECTOR_TYPES", "SVDInterpreter"]
