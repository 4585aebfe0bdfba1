"""Head detectors: which attention heads attend the way a known kind of head does.

- `detect_head`: TransformerLens's `head_detector.detect_head`, same arguments and
  numbers: compare every head's attention pattern on a prompt with a detection pattern,
  a built-in one ("previous_token_head", "duplicate_token_head", "induction_head") or
  your own lower-triangular `[pos, pos]` tensor.
- `induction_scores`: Olsson et al. (2022)'s prefix-matching score on repeated random
  tokens; `previous_token_scores`: attention to the previous position.
- `copy_suppression_scores`: heads that attend to earlier copies of the token the
  residual stream predicts and whose OV circuit suppresses it (McDougall et al., 2023).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.analysis.circuits import ov_copying_scores
from lookingglass.errors import InputError

HeadName = Literal["previous_token_head", "duplicate_token_head", "induction_head"]
HEAD_NAMES: tuple[str, ...] = get_args(HeadName)
ErrorMeasure = Literal["abs", "mul"]
LayerHeadTuple = tuple[int, int]
LayerToHead = dict[int, list[int]]
Prompt = str | Int[Tensor, " pos"] | Int[Tensor, "1 pos"]


# ------------------------------------------------------------------ detection patterns
def get_previous_token_head_detection_pattern(
    tokens: Int[Tensor, "... pos"],
) -> Float[Tensor, "pos pos"]:
    """1 where query q attends to key q - 1."""
    n = tokens.shape[-1]
    return torch.ones(n - 1).diag(-1)


def get_duplicate_token_head_detection_pattern(
    tokens: Int[Tensor, "... pos"],
) -> Float[Tensor, "pos pos"]:
    """1 where the key is an earlier position holding the query's token."""
    tokens = tokens.reshape(-1)
    same = tokens[:, None] == tokens[None, :]
    same.fill_diagonal_(False)  # every token duplicates itself: ignore that
    return same.float().tril()


def get_induction_head_detection_pattern(
    tokens: Int[Tensor, "... pos"],
) -> Float[Tensor, "pos pos"]:
    """1 where the key is the position right after an earlier copy of the query's token."""
    duplicate = get_duplicate_token_head_detection_pattern(tokens)
    induction = torch.zeros_like(duplicate)
    induction[:, 1:] = duplicate[:, :-1]
    return induction.tril()


DETECTION_PATTERNS: dict[str, Callable[[Tensor], Tensor]] = {
    "previous_token_head": get_previous_token_head_detection_pattern,
    "duplicate_token_head": get_duplicate_token_head_detection_pattern,
    "induction_head": get_induction_head_detection_pattern,
}


def compute_head_attention_similarity_score(
    attention_pattern: Float[Tensor, "pos pos"],
    detection_pattern: Float[Tensor, "pos pos"],
    *,
    exclude_bos: bool,
    exclude_current_token: bool,
    error_measure: ErrorMeasure,
) -> float:
    """How well one head's pattern matches a detection pattern (as TransformerLens).

    "mul": the fraction of the head's attention that falls where the detection pattern
    is 1, `sum(pattern * detection) / sum(pattern)` (after zeroing the BOS column and
    the diagonal when excluded). "abs": `1 - sum|pattern - detection| / pos`, in [-1, 1],
    rounded to 3 decimals as TransformerLens does.
    """
    if attention_pattern.ndim != 2 or attention_pattern.shape[0] != attention_pattern.shape[1]:
        raise InputError(
            f"The attention pattern must be square, got {tuple(attention_pattern.shape)}."
        )
    detection_pattern = detection_pattern.to(attention_pattern.device, attention_pattern.dtype)
    if error_measure == "mul":
        attention_pattern = attention_pattern.clone()  # never edit the caller's cache
        if exclude_bos:
            attention_pattern[:, 0] = 0
        if exclude_current_token:
            attention_pattern.fill_diagonal_(0)
        return ((attention_pattern * detection_pattern).sum() / attention_pattern.sum()).item()
    abs_diff = (attention_pattern - detection_pattern).abs()
    if exclude_bos:
        abs_diff[:, 0] = 0
    if exclude_current_token:
        abs_diff.fill_diagonal_(0)
    return 1 - round((abs_diff.mean() * len(abs_diff)).item(), 3)


def detect_head(
    model,
    seq: Prompt | list[str],
    detection_pattern: Float[Tensor, "pos pos"] | HeadName,
    heads: list[LayerHeadTuple] | LayerToHead | None = None,
    cache=None,
    *,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    error_measure: ErrorMeasure = "mul",
) -> Float[Tensor, "n_layers n_heads"]:
    """Score every head (or those in `heads`) against a detection pattern on one prompt.

    Args:
        model: a `HookedTransformer`.
        seq: a prompt (string, or token ids `[pos]` / `[1, pos]`), or a list of strings:
            then each is scored on its own and the scores averaged (named patterns only).
        detection_pattern: a name in `HEAD_NAMES`, or a lower-triangular `[pos, pos]`
            tensor saying where the head should attend.
        heads: only score these, as `[(layer, head), ...]` or `{layer: [head, ...]}`;
            the rest are -1.
        cache: a cache of this prompt's run (with or without its batch dim of 1).
        exclude_bos: ignore attention to position 0.
        exclude_current_token: ignore attention of each position to itself.
        error_measure: "mul" or "abs" (see `compute_head_attention_similarity_score`).

    Returns:
        `[n_layers, n_heads]` scores, -1 for heads not scored.
    """
    cfg = model.cfg
    if error_measure not in get_args(ErrorMeasure):
        raise InputError(f"error_measure must be 'mul' or 'abs', got {error_measure!r}.")
    if isinstance(detection_pattern, str) and detection_pattern not in HEAD_NAMES:
        raise InputError(
            f"detection_pattern must be a tensor or one of {list(HEAD_NAMES)}, "
            f"got {detection_pattern!r}."
        )
    if isinstance(seq, list):
        if not isinstance(detection_pattern, str):
            raise InputError(
                "A detection pattern tensor fits one prompt; pass one prompt, not a list."
            )
        if cache is not None:
            raise InputError(
                "One cache holds one prompt's run: pass no cache with a list of prompts."
            )
        options = dict(
            exclude_bos=exclude_bos,
            exclude_current_token=exclude_current_token,
            error_measure=error_measure,
        )
        return torch.stack(
            [detect_head(model, s, detection_pattern, heads, **options) for s in seq]
        ).mean(0)
    tokens = _one_sequence(model, seq)
    seq_len = tokens.shape[-1]
    # `to_tokens` truncates to n_ctx, so a prompt of n_ctx tokens may have been longer:
    # rejected, as TransformerLens does.
    if not 1 < seq_len < cfg.n_ctx:
        # TransformerLens's wording: code and tests written for it compare the message.
        raise InputError(
            "The sequence must be non-empty and must fit within the model's context window."
        )
    if isinstance(detection_pattern, str):
        detection_pattern = DETECTION_PATTERNS[detection_pattern](tokens.cpu())
    if error_measure == "mul" and not set(detection_pattern.unique().tolist()) <= {0, 1}:
        warnings.warn(
            "A detection pattern with values other than 0 and 1 is hard to read with "
            "error_measure='mul'.",
            stacklevel=2,
        )
    if detection_pattern.shape != (seq_len, seq_len) or not detection_pattern.equal(
        detection_pattern.tril()
    ):
        raise InputError(
            "The detection pattern must be a lower triangular matrix of shape (sequence_length, "
            f"sequence_length); sequence_length={seq_len}; got detection pattern of shape "
            f"{tuple(detection_pattern.shape)}"
        )
    if cache is None:
        with torch.no_grad():
            _, cache = model.run_with_cache(
                tokens, names_filter=lambda name: name.endswith("hook_pattern")
            )
    matches = -torch.ones(cfg.n_layers, cfg.n_heads, dtype=cfg.dtype)
    for layer, layer_heads in _layer_to_heads(heads, cfg).items():
        patterns = cache["pattern", layer]
        patterns = patterns[0] if patterns.ndim == 4 else patterns  # [head, q, k]
        for head in layer_heads:
            matches[layer, head] = compute_head_attention_similarity_score(
                patterns[head],
                detection_pattern,
                exclude_bos=exclude_bos,
                exclude_current_token=exclude_current_token,
                error_measure=error_measure,
            )
    return matches


def get_supported_heads() -> tuple[str, ...]:
    """The names of the built-in detection patterns."""
    return HEAD_NAMES


# ------------------------------------------------------------ scores on random tokens
def repeated_random_tokens(
    model, seq_len: int, n_seq: int = 1, seed: int = 0, prepend_bos: bool | None = None
) -> Int[Tensor, "n_seq total_len"]:
    """`n_seq` rows of `seq_len` uniformly random tokens repeated twice, after a BOS when
    `prepend_bos` (default: the model's `default_prepend_bos` when it has a tokenizer):
    `[n_seq, 2 * seq_len (+ 1)]`. The same seed gives the same tokens on every machine."""
    if prepend_bos is None:
        prepend_bos = (
            model.cfg.default_prepend_bos and getattr(model, "tokenizer", None) is not None
        )
    total = 2 * seq_len + int(prepend_bos)
    if seq_len < 1 or n_seq < 1 or total > model.cfg.n_ctx:
        raise InputError(
            f"Need seq_len >= 1, n_seq >= 1 and {total} tokens <= n_ctx={model.cfg.n_ctx}."
        )
    generator = torch.Generator().manual_seed(seed)
    half = torch.randint(0, model.cfg.d_vocab, (n_seq, seq_len), generator=generator)
    tokens = torch.cat([half, half], dim=1)
    if prepend_bos:
        bos = model.to_tokens("", prepend_bos=True, move_to_device=False)[0, :1]
        tokens = torch.cat([bos.expand(n_seq, 1), tokens], dim=1)
    return tokens.to(model.W_E.device)


def induction_scores(
    model, seq_len: int = 50, n_seq: int = 10, seed: int = 0, prepend_bos: bool | None = None
) -> Float[Tensor, "n_layers n_heads"]:
    """The induction (prefix-matching) score of every head, as in Olsson et al. (2022):
    on `repeated_random_tokens`, the attention from each token of the second repeat to
    the token right after its copy in the first repeat (query q, key q - seq_len + 1),
    averaged over those seq_len queries and the n_seq rows. 1 for a perfect induction
    head; about 1 / position for a head attending uniformly."""
    tokens = repeated_random_tokens(model, seq_len, n_seq, seed, prepend_bos)
    first_query = tokens.shape[1] - seq_len
    return _mean_diagonal_attention(model, tokens, offset=seq_len - 1, first_query=first_query)


def previous_token_scores(
    model,
    tokens: Int[Tensor, "batch pos"] | str | list[str] | None = None,
    seq_len: int = 50,
    n_seq: int = 10,
    seed: int = 0,
) -> Float[Tensor, "n_layers n_heads"]:
    """The attention of every position but the first to the position before it, averaged
    over positions and rows: 1 for a perfect previous-token head. On `tokens` (a string,
    a list of strings scored one by one and averaged, or unpadded token ids), or by
    default on `repeated_random_tokens(model, seq_len, n_seq, seed)`."""
    if isinstance(tokens, list):
        return torch.stack([previous_token_scores(model, text) for text in tokens]).mean(0)
    if tokens is None:
        tokens = repeated_random_tokens(model, seq_len, n_seq, seed)
    elif isinstance(tokens, str):
        tokens = model.to_tokens(tokens)
    return _mean_diagonal_attention(
        model, tokens.reshape(-1, tokens.shape[-1]), offset=1, first_query=1
    )


def _mean_diagonal_attention(
    model, tokens: Int[Tensor, "batch pos"], offset: int, first_query: int
) -> Float[Tensor, "n_layers n_heads"]:
    """Mean over rows and queries q >= first_query of the attention from q to q - offset.
    Reduced inside the hooks, so no pattern is kept."""
    scores = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)

    def reduce(pattern: Float[Tensor, "batch head q k"], hook) -> None:
        layer = int(hook.name.split(".")[1])
        diagonal = pattern.diagonal(offset=-offset, dim1=-2, dim2=-1)  # j <-> q = j + offset
        scores[layer] = diagonal[..., first_query - offset :].float().mean(dim=(0, -1)).cpu()

    hooks = [(f"blocks.{layer}.attn.hook_pattern", reduce) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        model.run_with_hooks(tokens, return_type=None, fwd_hooks=hooks)
    return scores


# --------------------------------------------------------------- copy suppression
@dataclass
class CopySuppressionScores:
    """Copy-suppression evidence per head, `[n_layers, n_heads]` each.

    `ov_copying`: `copying_score` of the head's full OV circuit W_E W_V W_O W_U (below 0:
    attending to a token lowers its logit). `attention_to_predicted`: at each query
    position, take the token the residual stream entering the head's layer predicts
    (the logit lens: ln_final, W_U, b_U, top-1), find its earlier occurrences in the
    prompt (keys k < q, and k > 0 with `exclude_bos`), and sum the head's attention to
    them; averaged over the queries that have any such occurrence (NaN if none do).
    `candidates`: heads with `ov_copying <= max_copying_score` and
    `attention_to_predicted >= min_attention`, by decreasing attention.
    """

    ov_copying: Float[Tensor, "n_layers n_heads"]
    attention_to_predicted: Float[Tensor, "n_layers n_heads"]
    candidates: list[tuple[int, int]]


def copy_suppression_scores(
    model,
    tokens: Int[Tensor, "batch pos"] | str | list[str],
    max_copying_score: float = -0.3,
    min_attention: float = 0.3,
    exclude_bos: bool = True,
) -> CopySuppressionScores:
    """Find copy-suppression candidates: heads whose OV circuit is negative-copying and
    that attend to earlier occurrences of the token the model is about to predict.

    Both criteria and their thresholds are spelled out in `CopySuppressionScores`. The
    OV criterion reads raw W_E and W_U (fold the norms first); the attention criterion
    needs prompts where predicted tokens recur (natural text does).

    Args:
        model: a `HookedTransformer` with d_vocab == d_vocab_out.
        tokens: token ids `[batch, pos]` (no padding), a string, or a list of strings
            (each run on its own; the queries of all of them are pooled).
        max_copying_score: the OV copying score must be at most this.
        min_attention: the mean attention to predicted-token copies must be at least this.
        exclude_bos: never count position 0 as an occurrence.
    """
    prompts = tokens if isinstance(tokens, list) else [tokens]
    total = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    count = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for prompt in prompts:
        prompt_total, prompt_count = _attention_to_predicted(model, prompt, exclude_bos)
        total, count = total + prompt_total, count + prompt_count
    attention = total / count  # 0 / 0 = NaN: no query had an earlier occurrence
    with torch.no_grad():
        ov_copying = ov_copying_scores(model).float().cpu()
    chosen = (ov_copying <= max_copying_score) & (attention >= min_attention)
    candidates = sorted(
        (tuple(lh) for lh in chosen.nonzero().tolist()), key=lambda lh: -attention[lh].item()
    )
    return CopySuppressionScores(ov_copying, attention, candidates)


@torch.no_grad()
def _attention_to_predicted(
    model, tokens: Int[Tensor, "batch pos"] | str, exclude_bos: bool
) -> tuple[Float[Tensor, "n_layers n_heads"], Float[Tensor, "n_layers n_heads"]]:
    """Summed attention to earlier occurrences of the predicted token, and the number of
    queries that have one, per head."""
    tokens = model.to_tokens(tokens) if isinstance(tokens, str) else tokens
    tokens = tokens.reshape(-1, tokens.shape[-1]).to(model.W_E.device)
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    _, cache = model.run_with_cache(
        tokens, names_filter=lambda n: n.endswith(("hook_pattern", "hook_resid_pre")) or n == last
    )
    lens = cache.accumulated_resid(apply_ln=True)[:-1]  # the input of each layer
    predicted = (lens @ model.W_U + model.b_U).argmax(dim=-1)  # [layer, batch, q]
    n = tokens.shape[1]
    earlier = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril(-1)
    if exclude_bos:
        earlier[:, 0] = False
    total = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    count = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        occurs = (tokens[:, None, :] == predicted[layer][:, :, None]) & earlier  # [b, q, k]
        pattern = cache["pattern", layer]  # [batch, head, q, k]
        mass = (pattern * occurs[:, None].to(pattern.dtype)).sum(dim=-1)  # [batch, head, q]
        has_occurrence = occurs.any(dim=-1)[:, None, :]
        total[layer] = (mass * has_occurrence).sum(dim=(0, 2)).float().cpu()
        count[layer] = has_occurrence.sum(dim=(0, 2)).float().cpu()
    return total, count


def _one_sequence(model, seq: Prompt) -> Int[Tensor, "1 pos"]:
    if isinstance(seq, str):
        return model.to_tokens(seq)
    if seq.ndim == 1 or (seq.ndim == 2 and seq.shape[0] == 1):
        return seq.reshape(1, -1).to(model.W_E.device)
    raise InputError(f"detect_head takes one sequence; got token ids of shape {tuple(seq.shape)}.")


def _layer_to_heads(heads, cfg) -> dict[int, list[int]]:
    if heads is None:
        return {layer: list(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
    if isinstance(heads, list):
        layer2heads: dict[int, list[int]] = defaultdict(list)
        for layer, head in heads:
            layer2heads[layer].append(head)
        return layer2heads
    return heads
