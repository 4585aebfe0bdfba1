"""Analysis tools that read a model and its activations through the public API.

- `logit_lens`: what each layer's residual stream predicts (`logit_lens`).
- `circuits`: full OV / QK circuits, composition and copying scores.
- `heads`: head detectors (TransformerLens's `detect_head`, induction, previous-token and
  copy-suppression scores).
- `svd`: the SVD interpreter (`SVDInterpreter`).

The residual-stream decompositions (`decompose_resid`, `accumulated_resid`,
`logit_attrs`, ...) are methods of `ActivationCache`.
"""

from lookingglass.analysis.circuits import (
    all_composition_scores,
    composition_scores,
    copying_score,
    full_ov_circuit,
    full_qk_circuit,
    get_comp_score,
    ov_copying_scores,
)
from lookingglass.analysis.heads import (
    HEAD_NAMES,
    CopySuppressionScores,
    copy_suppression_scores,
    detect_head,
    induction_scores,
    previous_token_scores,
    repeated_random_tokens,
)
from lookingglass.analysis.logit_lens import LogitLensResult, logit_lens
from lookingglass.analysis.svd import SVDInterpreter, TopTokens

__all__ = [
    "HEAD_NAMES",
    "CopySuppressionScores",
    "LogitLensResult",
    "SVDInterpreter",
    "TopTokens",
    "all_composition_scores",
    "composition_scores",
    "copy_suppression_scores",
    "copying_score",
    "detect_head",
    "full_ov_circuit",
    "full_qk_circuit",
    "get_comp_score",
    "induction_scores",
    "logit_lens",
    "ov_copying_scores",
    "previous_token_scores",
    "repeated_random_tokens",
]
