"""The explorer's numbers: pure functions of a model and its input, no Streamlit.

Every page shows what one of these functions returns. They call the public analysis API
(`run_with_cache`, `ActivationCache` decompositions, `analysis.logit_lens`, the circuits
and head detectors, `interventions.ablation`) and return small dataclasses of NumPy
arrays and strings, which the app caches per (model, input, settings). Bad input (an
empty or overlong prompt, a string that is not one token, a head out of range) raises
`InputError` with a message the page shows as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass import utils
from lookingglass.analysis import (
    copying_score,
    induction_scores,
    logit_lens,
    ov_copying_scores,
    previous_token_scores,
)
from lookingglass.analysis.logit_lens import LogitLensResult
from lookingglass.errors import InputError
from lookingglass.explorer import tokens as tokens_text
from lookingglass.interventions import (
    Component,
    ablation_hooks,
    dataset_activations,
    mean_ablation_hook,
    top_loss_changes,
)

MAX_PROMPT_CHARS = 4000
MAX_PROMPT_TOKENS = 128  # BOS included; also never more than the model's n_ctx
ABLATION_METHODS = ("zero", "mean")


# ------------------------------------------------------------------------- inputs
def prompt_limit(model) -> int:
    """The most tokens (BOS included) a prompt may have in the explorer."""
    return min(MAX_PROMPT_TOKENS, model.cfg.n_ctx)


def prompt_tokens(model, prompt: str) -> Int[Tensor, "1 pos"]:
    """The prompt's token ids `[1, pos]` (BOS first, as the model's default says).

    Raises:
        InputError: no tokenizer, an empty prompt, or one longer than `prompt_limit`.
    """
    if getattr(model, "tokenizer", None) is None:
        raise InputError("This model has no tokenizer, so it cannot read typed text.")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("The prompt is empty: type some text.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(
            f"The prompt has {len(prompt)} characters; the explorer takes at most "
            f"{MAX_PROMPT_CHARS}. Shorten it."
        )
    tokens = model.to_tokens(prompt, truncate=False).cpu()
    limit = prompt_limit(model)
    if tokens.shape[1] > limit:
        raise InputError(
            f"The prompt is {tokens.shape[1]} tokens long (BOS included); the explorer "
            f"takes at most {limit} (n_ctx is {model.cfg.n_ctx}). Shorten it."
        )
    return tokens


def truncated_prompt(model, prompt: str) -> str:
    """The longest start of `prompt`, cut at a token boundary, that `prompt_tokens`
    accepts (at most `prompt_limit` tokens and `MAX_PROMPT_CHARS` characters)."""
    prompt = prompt[:MAX_PROMPT_CHARS]
    tokens = model.to_tokens(prompt, truncate=False)[0]
    bos = int(tokens.shape[0]) - int(
        model.to_tokens(prompt, prepend_bos=False, truncate=False).shape[1]
    )
    ids = tokens[bos : prompt_limit(model)].tolist()
    text = model.tokenizer.decode(ids)
    while text and not prompt.startswith(text):  # a byte piece cut in the middle of a character
        ids = ids[:-1]
        text = model.tokenizer.decode(ids)
    return text


def single_token(model, text: str | int) -> int:
    """The id of `text` if it is exactly one token (a leading space is part of a token);
    an int is taken as a token id. (Ids matter: a token that is part of a UTF-8
    character decodes to a string that does not encode back to it.)

    Raises:
        InputError: empty, not exactly one token (naming the pieces it splits into), or
            an id outside the vocabulary.
    """
    if isinstance(text, int):
        if not 0 <= text < model.cfg.d_vocab:
            raise InputError(
                f"Token id {text} is outside the vocabulary (0 to {model.cfg.d_vocab - 1})."
            )
        return text
    if getattr(model, "tokenizer", None) is None:
        raise InputError("This model has no tokenizer, so tokens cannot be typed.")
    if not text:
        raise InputError("No token given: type one token, e.g. ' the' (with its leading space).")
    return model.to_single_token(text)


def head_labels(model) -> list[str]:
    """`L{layer}H{head}` for every head, layer-major."""
    return model.all_head_labels()


def parse_head(model, label: str) -> tuple[int, int]:
    """(layer, head) from a label such as "L1H3".

    Raises:
        InputError: not of that form, or a layer or head the model does not have.
    """
    text = str(label).strip().upper()
    layer_text, _, head_text = text.removeprefix("L").partition("H")
    if not text.startswith("L") or not layer_text.isdigit() or not head_text.isdigit():
        raise InputError(f"{label!r} is not a head: write it as L<layer>H<head>, e.g. L1H3.")
    layer, head = int(layer_text), int(head_text)
    check_head(model, layer, head)
    return layer, head


def check_head(model, layer: int, head: int) -> None:
    """Raise `InputError` unless the model has head `head` in layer `layer`."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise InputError(
            f"Head L{layer}H{head} is out of range: the model has {n_layers} layers of "
            f"{n_heads} heads (L0H0 to L{n_layers - 1}H{n_heads - 1})."
        )


def token_str(model, token: int) -> str:
    """One token as text (bytes that are not a whole character as `<0xNN>`)."""
    if getattr(model, "tokenizer", None) is None:
        return model.to_single_str_token(int(token))
    return tokens_text.token_text(model.tokenizer, int(token))


# ------------------------------------------------------------------------- prompt
@dataclass
class TokenScore:
    """A token and a number (a score, a logit)."""

    token: str
    token_id: int
    value: float


@dataclass
class PromptAnalysis:
    """A prompt's run: tokens, predictions, attention, logit lens, per-token loss."""

    str_tokens: list[str]
    tokens: np.ndarray  # [pos]
    top: list[list[TokenScore]]  # [pos][k] next-token predictions and their probabilities
    patterns: np.ndarray  # [n_layers, n_heads, pos, pos]
    lens: LogitLensResult  # per layer (resid_pre of each, then final) and position, batch 1;
    # its target is the next token (at the last position: the model's top prediction)
    loss: np.ndarray  # [pos - 1]: loss of predicting token p + 1 at position p


@torch.no_grad()
def analyze_prompt(model, prompt: str, top_k: int = 5) -> PromptAnalysis:
    """Run the prompt once and keep what the Prompt page shows."""
    tokens = prompt_tokens(model, prompt)
    kept = ("hook_pattern", "hook_resid_pre", "hook_resid_post")
    logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(kept))
    logits = logits[0].cpu()
    patterns = torch.stack([cache["pattern", l][0] for l in range(model.cfg.n_layers)])
    targets = torch.cat([tokens[0, 1:], logits[-1].argmax()[None].to(tokens.device)])
    lens = logit_lens(model, cache, target_tokens=targets[None], top_k=3)
    loss = utils.lm_cross_entropy_loss(logits[None], tokens.to(logits.device), per_token=True)[0]
    return PromptAnalysis(
        str_tokens=tokens_text.str_tokens(model, tokens[0].tolist()),
        tokens=tokens[0].numpy(),
        top=_top_scores(model, logits, top_k),
        patterns=patterns.float().cpu().numpy(),
        lens=LogitLensResult(
            **{k: v.cpu() if isinstance(v, Tensor) else v for k, v in vars(lens).items()}
        ),
        loss=loss.float().cpu().numpy(),
    )


@dataclass
class Attribution:
    """Direct logit attribution at one position toward a token (or a difference)."""

    position: int
    target: str  # e.g. "' God'" or "' God' - ' Lord'"
    head_values: np.ndarray  # [n_layers, n_heads]
    layer_labels: list[str]  # "embed", "pos_embed", "0_attn_out", ...
    layer_values: np.ndarray  # [component]
    logit: float  # the model's own logit (difference) at that position
    bias: float  # b_U's part of it (not attributed to any component)


@torch.no_grad()
def direct_logit_attribution(
    model, prompt: str, position: int, answer: str | int, wrong: str | int | None = None
) -> Attribution:
    """How much each head and each layer writes directly toward `answer` (minus `wrong`;
    each a single-token string or a token id) at `position`, after the final norm's
    cached scale (`ActivationCache.logit_attrs`). The layer values plus `bias` sum to
    `logit` when the final norm is folded."""
    tokens = prompt_tokens(model, prompt)
    n = tokens.shape[1]
    if not 0 <= position < n:
        raise InputError(
            f"Position {position} is out of range: the prompt has {n} tokens (0 to {n - 1})."
        )
    answer_id = single_token(model, answer)
    wrong_id = single_token(model, wrong) if wrong not in (None, "") else None
    logits, cache = model.run_with_cache(tokens)
    heads = cache.stack_head_results(layer=-1, pos_slice=position)
    layers, labels = cache.decompose_resid(layer=-1, pos_slice=position, return_labels=True)
    head_values = cache.logit_attrs(heads, answer_id, wrong_id, pos_slice=position)[:, 0]
    layer_values = cache.logit_attrs(layers, answer_id, wrong_id, pos_slice=position)[:, 0]
    row, b_U = logits[0, position].float(), model.b_U.float()
    logit, bias = row[answer_id], b_U[answer_id]
    target = repr(token_str(model, answer_id))
    if wrong_id is not None:
        logit, bias = logit - row[wrong_id], bias - b_U[wrong_id]
        target += f" - {token_str(model, wrong_id)!r}"
    return Attribution(
        position=position,
        target=target,
        head_values=head_values.reshape(model.cfg.n_layers, model.cfg.n_heads)
        .float()
        .cpu()
        .numpy(),
        layer_labels=labels,
        layer_values=layer_values.float().cpu().numpy(),
        logit=float(logit),
        bias=float(bias),
    )


# ----------------------------------------------------------------------- circuits
@dataclass
class HeadScores:
    """Per-head summaries `[n_layers, n_heads]`: induction (prefix matching on repeated
    random tokens), previous-token attention, OV copying score (NaN if not square)."""

    induction: np.ndarray
    previous_token: np.ndarray
    copying: np.ndarray
    probe_len: int

    def strongest(self, scores: np.ndarray) -> tuple[str, float]:
        """The label and value of the head with the highest score."""
        layer, head = np.unravel_index(np.nanargmax(scores), scores.shape)
        return f"L{layer}H{head}", float(scores[layer, head])


@torch.no_grad()
def head_scores(model, n_seq: int = 10) -> HeadScores:
    """Induction, previous-token and copying scores of every head (`analysis.heads`,
    `analysis.circuits`), probing with repeated random tokens as long as fit n_ctx."""
    bos = model.cfg.default_prepend_bos and model.tokenizer is not None
    probe_len = min(50, (model.cfg.n_ctx - int(bos)) // 2)
    induction = induction_scores(model, seq_len=probe_len, n_seq=n_seq)
    previous = previous_token_scores(model, seq_len=probe_len, n_seq=n_seq)
    if model.cfg.d_vocab == model.cfg.d_vocab_out:
        copying = ov_copying_scores(model).float().cpu().numpy()
    else:
        copying = np.full((model.cfg.n_layers, model.cfg.n_heads), np.nan)
    return HeadScores(induction.float().numpy(), previous.float().numpy(), copying, probe_len)


@dataclass
class CircuitView:
    """One head's QK and OV circuits through the embeddings, for one query token and
    one source token."""

    head: str
    query: str
    top_keys: list[TokenScore]  # keys the query token scores highest (QK)
    source: str
    boosted: list[TokenScore]  # output logits attending to the source raises most (OV)
    suppressed: list[TokenScore]  # ... and lowers most
    source_logit: float  # the OV logit of the source token itself
    source_rank: int  # its rank among all outputs (0 = most boosted)
    copying_score: float


def _token_scores(model, values: Tensor, ids: Tensor) -> list[TokenScore]:
    return [TokenScore(token_str(model, i), int(i), float(values[i])) for i in ids.tolist()]


@torch.no_grad()
def circuit_view(model, layer: int, head: int, query: str, source: str, k: int = 10) -> CircuitView:
    """The QK circuit row of `query` (`full_qk_circuit`: attention scores before
    1/attn_scale, embeddings only, no positions or norms) and the OV circuit row of
    `source` (`full_ov_circuit`: direct effect on the logits of attending to it)."""
    check_head(model, layer, head)
    query_id, source_id = single_token(model, query), single_token(model, source)
    # This head's factors only: all heads' at once take gigabytes on a 30-layer model.
    W_E, QK, OV = model.W_E, model.QK[layer, head], model.OV[layer, head]
    qk_row = (W_E[query_id : query_id + 1] @ QK @ W_E.T).AB[0].float()  # full_qk_circuit
    ov_row = (W_E[source_id : source_id + 1] @ OV @ model.W_U).AB[0].float()  # full_ov_circuit
    k = min(k, ov_row.numel())
    copying = (
        copying_score(W_E @ OV @ model.W_U).item()
        if model.cfg.d_vocab == model.cfg.d_vocab_out
        else float("nan")
    )
    return CircuitView(
        head=f"L{layer}H{head}",
        query=token_str(model, query_id),
        top_keys=_token_scores(model, qk_row, qk_row.topk(k).indices),
        source=token_str(model, source_id),
        boosted=_token_scores(model, ov_row, ov_row.topk(k).indices),
        suppressed=_token_scores(model, ov_row, ov_row.topk(k, largest=False).indices),
        source_logit=float(ov_row[source_id]),
        source_rank=int((ov_row > ov_row[source_id]).sum()),
        copying_score=copying,
    )


# ------------------------------------------------------------------ browse examples
def component_labels(model) -> list[str]:
    """What the Browse page can ablate: every head, then each attention (and MLP) layer."""
    labels = head_labels(model) + [f"attn {l}" for l in range(model.cfg.n_layers)]
    if not model.cfg.attn_only:
        labels += [f"mlp {l}" for l in range(model.cfg.n_layers)]
    return labels


def parse_component(model, label: str) -> tuple[Component, int, str]:
    """(Component, layer, kind) for a label of `component_labels` ("L1H3", "attn 0",
    "mlp 1"); kind is "head", "attn" or "mlp"."""
    kind, _, layer_text = label.partition(" ")
    if kind in ("attn", "mlp") and layer_text.isdigit():
        layer = int(layer_text)
        if not 0 <= layer < model.cfg.n_layers or (kind == "mlp" and model.cfg.attn_only):
            raise InputError(
                f"{label!r}: the model has no such layer ({model.cfg.n_layers} layers"
                f"{', attention only' if model.cfg.attn_only else ''})."
            )
        component = Component.attn_layer(layer) if kind == "attn" else Component.mlp_layer(layer)
        return component, layer, kind
    layer, head = parse_head(model, label)
    return Component.head(layer, head), layer, "head"


def component_means(model, rows: Int[Tensor, "n pos"]) -> dict[str, Tensor]:
    """Mean activation (per position) over `rows` of every hook a component of
    `component_labels` ablates: the reference of mean ablation."""
    names = [f"blocks.{l}.attn.hook_z" for l in range(model.cfg.n_layers)]
    names += [f"blocks.{l}.hook_attn_out" for l in range(model.cfg.n_layers)]
    if not model.cfg.attn_only:
        names += [f"blocks.{l}.hook_mlp_out" for l in range(model.cfg.n_layers)]
    return dataset_activations(model, rows, names, mean=True)


def component_ablation_hooks(
    model, component_label: str, method: str, means: dict[str, Tensor] | None = None
) -> list:
    """`(hook_name, hook_fn)` pairs that ablate a component of `component_labels`:
    "zero", or "mean" with `means` from `component_means`."""
    if method not in ABLATION_METHODS:
        raise InputError(f"Ablation method must be one of {ABLATION_METHODS}, got {method!r}.")
    component, _, _ = parse_component(model, component_label)
    if method == "zero":
        return ablation_hooks(model, [component], "zero")
    if means is None:
        raise InputError("Mean ablation needs the dataset means (component_means).")
    return [(component.hook_name, mean_ablation_hook(means[component.hook_name], component.index))]


@dataclass
class LossChangeRow:
    """A prediction whose loss changed: position p predicts `target` (token p + 1)."""

    position: int
    context: str
    target: str
    change: float


@dataclass
class AblationView:
    """One example with and without a component (Browse examples)."""

    component: str
    method: str
    str_tokens: list[str]
    clean_loss: np.ndarray  # [n - 1]
    ablated_loss: np.ndarray  # [n - 1]
    helps_most: list[LossChangeRow]  # loss rises most when ablated
    hurts_most: list[LossChangeRow]  # loss falls most when ablated
    clean_top: list[list[TokenScore]]  # [n] top-k next-token probabilities, clean
    ablated_top: list[list[TokenScore]]  # [n] ... ablated
    clean_target_logit: np.ndarray  # [n - 1] logit of the actual next token
    ablated_target_logit: np.ndarray  # [n - 1]
    direct_attribution: np.ndarray  # [n - 1] the component's DLA toward the next token
    pattern: np.ndarray | None  # [n, n] the head's attention (heads only)
    lens_label: str  # the residual stream read by the lens, e.g. "1_pre"
    lens_top: list[str]  # [n - 1] the lens's top token just before the component
    lens_target_prob: np.ndarray  # [n - 1] the lens's probability of the next token


def _loss_rows(model, tokens: Tensor, change: Tensor, k: int, largest: bool) -> list[LossChangeRow]:
    return [
        LossChangeRow(c.pos, c.context or "", c.target_str or str(c.target), c.change)
        for c in top_loss_changes(model, tokens, change, k=k, largest=largest)
    ]


@torch.no_grad()
def ablation_view(
    model,
    tokens: Int[Tensor, "1 pos"],
    component_label: str,
    method: str,
    means: dict[str, Tensor] | None = None,
    top_k: int = 5,
    n_rows: int = 10,
) -> AblationView:
    """Run `tokens` clean and with the component ablated ("zero", or "mean" with
    `means` from `component_means`) and collect what the Browse page shows."""
    if method not in ABLATION_METHODS:
        raise InputError(f"Ablation method must be one of {ABLATION_METHODS}, got {method!r}.")
    if tokens.shape[1] < 2:
        raise InputError("The example needs at least 2 tokens to have a next-token loss.")
    component, layer, kind = parse_component(model, component_label)
    hooks = component_ablation_hooks(model, component_label, method, means)
    targets = tokens[:, 1:]
    clean_logits, cache = model.run_with_cache(tokens)
    with model.hooks(fwd_hooks=hooks):
        ablated_logits = model(tokens)
    clean_loss = _next_token_loss(clean_logits, tokens)
    ablated_loss = _next_token_loss(ablated_logits, tokens)
    change = ablated_loss - clean_loss
    inner = slice(0, -1)
    if kind == "head":
        stack = cache.stack_head_results(layer=-1, pos_slice=inner)[
            layer * model.cfg.n_heads + component.index[1]
        ]
    else:
        stack, labels = cache.decompose_resid(layer=-1, pos_slice=inner, return_labels=True)
        stack = stack[labels.index(f"{layer}_{kind}_out")]
    dla = cache.logit_attrs(stack[None], targets, pos_slice=inner)[0, 0]
    lens = logit_lens(
        model, cache, target_tokens=targets, top_k=1, incl_mid=kind == "mlp", pos_slice=inner
    )
    lens_label = f"{layer}_{'mid' if kind == 'mlp' else 'pre'}"
    i = lens.labels.index(lens_label)
    return AblationView(
        component=component_label,
        method=method,
        str_tokens=tokens_text.str_tokens(model, tokens[0].tolist()),
        clean_loss=clean_loss[0].numpy(),
        ablated_loss=ablated_loss[0].numpy(),
        helps_most=_loss_rows(model, tokens, change, n_rows, largest=True),
        hurts_most=_loss_rows(model, tokens, change, n_rows, largest=False),
        clean_top=_top_scores(model, clean_logits[0], top_k),
        ablated_top=_top_scores(model, ablated_logits[0], top_k),
        clean_target_logit=clean_logits[0, :-1]
        .gather(-1, targets[0, :, None])[:, 0]
        .float()
        .numpy(),
        ablated_target_logit=ablated_logits[0, :-1]
        .gather(-1, targets[0, :, None])[:, 0]
        .float()
        .numpy(),
        direct_attribution=dla.float().cpu().numpy(),
        pattern=cache["pattern", layer][0, component.index[1]].float().numpy()
        if kind == "head"
        else None,
        lens_label=lens_label,
        lens_top=[token_str(model, t) for t in lens.top_tokens[i, 0, :, 0].tolist()],
        lens_target_prob=lens.target_probs[i, 0].float().cpu().numpy(),
    )


def _next_token_loss(logits: Tensor, tokens: Tensor) -> Tensor:
    log_probs = logits[:, :-1].float().log_softmax(dim=-1)
    return -log_probs.gather(-1, tokens[:, 1:, None])[..., 0].cpu()


def _top_scores(model, logits: Float[Tensor, "n d_vocab"], k: int) -> list[list[TokenScore]]:
    """The top-k next tokens and their probabilities for each of the n rows."""
    probs = logits.cpu().float().softmax(dim=-1)
    values, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [
        [TokenScore(token_str(model, t), t, p) for t, p in zip(id_row, value_row, strict=True)]
        for id_row, value_row in zip(ids.tolist(), values.tolist(), strict=True)
    ]
