"""Small helpers with TransformerLens's names: activation names, losses, conversions;
and `write_atomic`, how the library writes every file a reader may open."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

_LAYER_TYPE_ALIAS = {
    "a": "attn",
    "m": "mlp",
    "b": "",
    "block": "",
    "blocks": "",
    "attention": "attn",
}
_ACT_NAME_ALIAS = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "key": "k",
    "query": "q",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_mid": "mid",
    "mlp_post": "post",
}
_ATTN_ACTS = ("k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores", "mixed_k")
_MLP_ACTS = ("pre", "post", "mid", "pre_linear")


def get_act_name(name: str, layer: int | str | None = None, layer_type: str | None = None) -> str:
    """Full hook name from shorthand, as TransformerLens's `utils.get_act_name`.

    `get_act_name("pattern", 3)` -> "blocks.3.attn.hook_pattern";
    `get_act_name("resid_post", 0)` -> "blocks.0.hook_resid_post";
    `get_act_name("scale", 2, "ln1")` -> "blocks.2.ln1.hook_scale";
    `get_act_name("k6")` -> "blocks.6.attn.hook_k"; a full name is returned unchanged.
    """
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    match = re.match(r"([a-z_]+?)(\d+)([a-z]?.*)", name)
    if match is not None and layer is None:
        name, layer, layer_type = match.group(1), int(match.group(2)), match.group(3) or None
    name = _ACT_NAME_ALIAS.get(name, name)
    full = f"blocks.{layer}." if layer is not None else ""
    if name in _ATTN_ACTS:
        layer_type = "attn"
    elif name in _MLP_ACTS:
        layer_type = "mlp"
    elif layer_type in _LAYER_TYPE_ALIAS:
        layer_type = _LAYER_TYPE_ALIAS[layer_type]
    if layer_type:
        full += f"{layer_type}."
    full += f"hook_{name}"
    if name in ("scale", "normalized") and layer is None:
        full = f"ln_final.{full}"
    return full


def lm_cross_entropy_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    per_token: bool = False,
) -> Float[Tensor, ""] | Float[Tensor, "batch pos_minus_1"]:
    """Next-token cross-entropy: position p predicts token p+1.

    With an attention mask, positions whose input or target is padding are left out (set
    to 0 in the per-token output). Same definition as TransformerLens's.
    """
    log_probs = logits.float().log_softmax(dim=-1)
    predicted = log_probs[:, :-1].gather(-1, tokens[:, 1:, None].to(logits.device))[..., 0]
    if attention_mask is not None:
        keep = (attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()).to(logits.device)
        predicted = predicted * keep
        n_tokens = keep.sum()
    else:
        n_tokens = predicted.numel()
    if per_token:
        return -predicted
    return -predicted.sum() / n_tokens


def lm_accuracy(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    per_token: bool = False,
) -> Float[Tensor, ""] | Float[Tensor, "batch pos_minus_1"]:
    """Fraction of positions whose argmax prediction is the next token."""
    correct = (logits[:, :-1].argmax(dim=-1) == tokens[:, 1:].to(logits.device)).float()
    return correct if per_token else correct.mean()


def to_numpy(tensor) -> np.ndarray:
    """A numpy array from a tensor (detached, on CPU), list or number."""
    if isinstance(tensor, Tensor):
        return (
            tensor.detach().cpu().float().numpy()
            if tensor.is_floating_point()
            else tensor.detach().cpu().numpy()
        )
    return np.asarray(tensor)


def get_device() -> torch.device:
    """The best available device: CUDA, then MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ---------------------------------------------------------------------------- slicing
SliceInput = int | tuple | slice | list | Tensor | np.ndarray | None


class Slice:
    """A slice along one dimension, TransformerLens's `utils.Slice`.

    `None`: everything (identity). An int: that index (the dimension is dropped). A
    tuple: `slice(*tuple)`, so `(k,)` is `:k` and `(m, k)` is `m:k`. A slice: itself. A
    list, tensor or array: those indices (the dimension is kept).
    """

    def __init__(self, input_slice: SliceInput | Slice = None) -> None:
        if isinstance(input_slice, Slice):
            self.slice, self.mode = input_slice.slice, input_slice.mode
        elif isinstance(input_slice, tuple):
            self.slice, self.mode = slice(*input_slice), "slice"
        elif isinstance(input_slice, int):
            self.slice, self.mode = input_slice, "int"
        elif isinstance(input_slice, slice):
            self.slice, self.mode = input_slice, "slice"
        elif isinstance(input_slice, list | Tensor | np.ndarray):
            self.slice, self.mode = to_numpy(input_slice).astype(np.int64), "array"
        elif input_slice is None:
            self.slice, self.mode = slice(None), "identity"
        else:
            raise TypeError(
                f"A slice is None, an int, a tuple, a slice, or a list/tensor/array of indices; "
                f"got {type(input_slice).__name__}."
            )

    def apply(self, tensor: Tensor, dim: int = 0) -> Tensor:
        """`tensor` sliced along `dim` (negative dims count from the end)."""
        index: list = [slice(None)] * tensor.ndim
        index[dim] = self.slice
        return tensor[tuple(index)]

    def indices(self, max_ctx: int | None = None) -> np.ndarray:
        """The indices this slice selects from an axis of length `max_ctx`."""
        if self.mode == "int":
            return np.array([self.slice], dtype=np.int64)
        if max_ctx is None:
            raise ValueError("max_ctx is needed for a slice that is not an integer.")
        return np.arange(max_ctx, dtype=np.int64)[self.slice]

    @classmethod
    def unwrap(cls, slice_input: SliceInput | Slice) -> Slice:
        """A Slice; an int becomes a one-element list, so the dimension is kept."""
        if isinstance(slice_input, Slice):
            return slice_input
        return cls([slice_input] if isinstance(slice_input, int) else slice_input)

    def __repr__(self) -> str:
        return f"Slice: {self.slice} Mode: {self.mode} "


def composition_scores(left, right, broadcast_dims: bool = True) -> Tensor:
    """Composition scores of two `FactoredMatrix` circuits; see
    `lookingglass.factored_matrix.composition_scores`."""
    from lookingglass.factored_matrix import composition_scores as scores

    return scores(left, right, broadcast_dims)


# ---------------------------------------------------------------------- test_prompt
class AnswerTokenStats(NamedTuple):
    """How the model ranks one answer token at the position that predicts it."""

    token: str
    rank: int
    logit: float
    prob: float


def test_prompt(
    prompt: str,
    answer: str | list[str],
    model,
    prepend_space_to_answer: bool = True,
    print_details: bool = True,
    prepend_bos: bool | None = None,
    top_k: int = 10,
) -> list[list[AnswerTokenStats]]:
    """Check whether the model gives `answer` after `prompt`, as TransformerLens's
    `utils.test_prompt`, and return the numbers it prints.

    Prints the tokenized prompt and answer, the rank (0 = top), logit and probability
    of each answer token, and the `top_k` tokens at each answer position, then the ranks.
    A multi-token answer is scored token by token (teacher forcing). A list of answers is
    compared as alternative next tokens (their first tokens only).

    Args:
        prompt: the prompt text.
        answer: the answer, or a list of alternative answers.
        model: a `HookedTransformer` with a tokenizer.
        prepend_space_to_answer: prepend " " to answers that do not start with one.
        print_details: print everything (False: only the final ranks line).
        prepend_bos: BOS for the prompt (None: the model's default).
        top_k: how many top tokens to print per answer position.

    Returns:
        `stats[answer_position][answer_index]`: `AnswerTokenStats(token, rank, logit, prob)`.
    """
    answers = [answer] if isinstance(answer, str) else list(answer)
    n_answers = len(answers)
    if prepend_space_to_answer:
        answers = [a if a.startswith(" ") else " " + a for a in answers]
    prompt_tokens = model.to_tokens(prompt, prepend_bos=prepend_bos)
    answer_tokens = model.to_tokens(answers, prepend_bos=False)
    if n_answers > 1:
        answer_tokens = answer_tokens[:, :1]  # alternatives: the next token only
    tokens = torch.cat([prompt_tokens.repeat(answer_tokens.shape[0], 1), answer_tokens], dim=1)
    prompt_str_tokens = model.to_str_tokens(prompt, prepend_bos=prepend_bos)
    answer_str_tokens = [model.to_str_tokens(a, prepend_bos=False) for a in answers]
    prompt_length = len(prompt_str_tokens)
    answer_length = 1 if n_answers > 1 else len(answer_str_tokens[0])
    if print_details:
        print("Tokenized prompt:", prompt_str_tokens)
        if n_answers > 1:
            print("Tokenized answers:", answer_str_tokens)
        else:
            print("Tokenized answer:", answer_str_tokens[0])
    with torch.no_grad():
        logits = model(tokens)
    probs = logits.softmax(dim=-1)
    stats: list[list[AnswerTokenStats]] = []
    for index in range(prompt_length, prompt_length + answer_length):
        targets = tokens[:, index]
        token_probs = probs[:, index - 1]  # position p predicts token p + 1
        sorted_probs, sorted_tokens = token_probs.sort(descending=True)
        ranks = sorted_tokens.argsort(-1)[torch.arange(n_answers), targets].tolist()
        row = [
            AnswerTokenStats(
                answer_str_tokens[i][index - prompt_length],
                ranks[i],
                logits[i, index - 1, targets[i]].item(),
                token_probs[i, targets[i]].item(),
            )
            for i in range(n_answers)
        ]
        stats.append(row)
        if print_details:
            print(f"Performance on answer token{'s' if n_answers > 1 else ''}:")
            for s in row:
                print(
                    f"Rank: {s.rank: <8} Logit: {s.logit:5.2f} Prob: {s.prob:6.2%} "
                    f"Token: |{s.token}|"
                )
            for i in range(top_k):
                top = sorted_tokens[0, i]
                print(
                    f"Top {i}th token. Logit: {logits[0, index - 1, top].item():5.2f} "
                    f"Prob: {sorted_probs[0, i].item():6.2%} Token: |{model.to_string(top)}|"
                )
    ranks_by_position = [[(s.token, s.rank) for s in row] for row in stats]
    if n_answers == 1:
        print("Ranks of the answer tokens:", [row[0] for row in ranks_by_position])
    else:
        print("Ranks of the answer tokens:", ranks_by_position)
    return stats


test_prompt.__test__ = False  # not a pytest test, whatever its name


def tokenize_and_concatenate(*args, **kwargs):
    """TransformerLens's `utils.tokenize_and_concatenate`; see
    `lookingglass.training.data.tokenize_and_concatenate`."""
    from lookingglass.training.data import tokenize_and_concatenate as _impl

    return _impl(*args, **kwargs)


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A file opened for writing at a temporary name beside `path` ("wb", or "w" for
    UTF-8 text), flushed to disk and renamed over `path` when the block ends. A reader
    sees the old file or the new one, never half of one; if the block raises, the old
    file is untouched and the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` all at once (`atomic_file`)."""
    with atomic_file(path, "w" if isinstance(data, str) else "wb") as file:
        file.write(data)
    return Path(path)
