"""TransformerLens's module path `transformer_lens.head_detector`, re-exporting
`lookingglass.analysis.heads` (`detect_head` with TransformerLens's signature and
meaning: scores `[n_layers, n_heads]`, -1 for heads not asked for)."""

from lookingglass.analysis.heads import (
    HEAD_NAMES,
    ErrorMeasure,
    HeadName,
    LayerHeadTuple,
    LayerToHead,
    compute_head_attention_similarity_score,
    detect_head,
    get_duplicate_token_head_detection_pattern,
    get_induction_head_detection_pattern,
    get_previous_token_head_detection_pattern,
)


def get_supported_heads() -> None:
    """Print the supported head names (as TransformerLens; the names are `HEAD_NAMES`)."""
    print(f"Supported heads: {list(HEAD_NAMES)}")


__all__ = [
    "HEAD_NAMES",
    "ErrorMeasure",
    "HeadName",
    "LayerHeadTuple",
    "LayerToHead",
    "compute_head_attention_similarity_score",
    "detect_head",
    "get_duplicate_token_head_detection_pattern",
    "get_induction_head_detection_pattern",
    "get_previous_token_head_detection_pattern",
    "get_supported_heads",
]
