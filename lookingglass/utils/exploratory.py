"""`test_prompt`: does the model give the answer after the prompt? (TransformerLens's
`utils.test_prompt`, also returning the numbers it prints.)"""

from __future__ import annotations

from typing import NamedTuple

import torch


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
