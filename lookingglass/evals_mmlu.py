"""TransformerLens's MMLU evals (`make_mmlu_data_loader`, `mmlu_eval`) with its exact
definitions: zero-shot, the four choices in the prompt, the answer is the letter (" A"
... " D") with the highest log-probability after "Answer:". The questions come from the
Hugging Face dataset `cais/mmlu` (network or local cache): a subject that cannot be
loaded is skipped with a warning, as in TransformerLens.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from lookingglass.errors import InputError

# MMLU's 57 subjects and answer letters, as TransformerLens lists them.
MMLU_SUBJECTS = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
]
MMLU_ANSWER_LETTERS = ["A", "B", "C", "D"]


def make_mmlu_data_loader(
    subjects: str | list[str] | None = None, split: str = "test", num_samples: int | None = None
) -> list[dict[str, Any]]:
    """MMLU questions as dicts `{"question", "choices" (4 strings), "answer" (0-3),
    "subject"}`: all 57 subjects (None), one, or a list; `num_samples` caps each
    subject. An unknown subject raises `InputError` (a ValueError) before any loading."""
    if subjects is None:
        to_load = list(MMLU_SUBJECTS)
    elif isinstance(subjects, str):
        to_load = [subjects]
    else:
        to_load = list(subjects)
    invalid = set(to_load) - set(MMLU_SUBJECTS)
    if invalid:
        raise InputError(
            f"Invalid subject(s): {invalid}. Valid subjects: {', '.join(sorted(MMLU_SUBJECTS))}"
        )
    import datasets

    data: list[dict[str, Any]] = []
    for subject in to_load:
        try:
            dataset = datasets.load_dataset("cais/mmlu", subject, split=split)
        except Exception as error:  # as TransformerLens: skip the subject, say why
            logging.warning("Could not load MMLU subject %r: %s", subject, error)
            continue
        n = len(dataset) if num_samples is None else min(num_samples, len(dataset))
        for i in range(n):
            example = dataset[i]
            data.append(
                {
                    "question": example["question"],
                    "choices": example["choices"],
                    "answer": example["answer"],
                    "subject": subject,
                }
            )
    return data


def _letter_token_ids(tokenizer: Any) -> list[int]:
    """Each answer letter's id: " A" if that is one token, else the first token of "A"."""
    ids = []
    for letter in MMLU_ANSWER_LETTERS:
        token_ids = tokenizer.encode(" " + letter, add_special_tokens=False)
        if len(token_ids) != 1:
            token_ids = tokenizer.encode(letter, add_special_tokens=False)
        ids.append(token_ids[0])
    return ids


def _prompt(question: str, choices: list[str]) -> str:
    lines = [f"Question: {question}", "Choices:"]
    lines += [f"{chr(65 + i)}. {choice}" for i, choice in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:"


@torch.no_grad()
def mmlu_eval(
    model: Any,
    tokenizer: Any = None,
    subjects: str | list[str] | None = None,
    split: str = "test",
    num_samples: int | None = None,
) -> dict[str, Any]:
    """Zero-shot MMLU accuracy: `{"accuracy", "num_correct", "num_total",
    "subject_scores"}` (per-subject accuracy). Each prompt is encoded with the tokenizer's
    own special tokens, as TransformerLens."""
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    data = make_mmlu_data_loader(subjects=subjects, split=split, num_samples=num_samples)
    if not data:
        raise InputError("No MMLU data loaded. Check your subjects parameter.")
    letter_ids = _letter_token_ids(tokenizer)
    correct: dict[str, int] = {}
    total: dict[str, int] = {}
    device = next(model.parameters()).device
    for example in data:
        prompt = _prompt(example["question"], example["choices"])
        tokens = tokenizer.encode(prompt, return_tensors="pt").to(device)
        log_probs = model(tokens, return_type="logits")[0, -1].log_softmax(dim=-1)
        scores = [log_probs[letter_ids[i]].item() for i in range(len(example["choices"]))]
        is_correct = int(scores.index(max(scores)) == example["answer"])
        subject = example["subject"]
        correct[subject] = correct.get(subject, 0) + is_correct
        total[subject] = total.get(subject, 0) + 1
    num_correct, num_total = sum(correct.values()), sum(total.values())
    return {
        "accuracy": num_correct / num_total if num_total else 0.0,
        "num_correct": num_correct,
        "num_total": num_total,
        "subject_scores": {s: correct[s] / total[s] for s in correct},
    }
