"""The indirect-object-identification eval of TransformerLens's `evals`
(Wang et al. 2022, https://arxiv.org/abs/2211.00593): `IOIDataset` and `ioi_eval`."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


class IOIDataset(Dataset):
    """Prompts like "John and Mary went to the store ... Mary handed the milk to John",
    each item `{"prompt": ids (BOS first when prepend_bos), "IO": ids of " John",
    "S": ids of " Mary"}`, as TransformerLens's.

    Samples are drawn with Python's global `random` (seeded with `seed` when given):
    a template, a noun for each `[PLACEHOLDER]`, two distinct names ([A] is the indirect
    object, [B] the subject); `symmetric` adds the sample with the names swapped.
    """

    def __init__(
        self,
        tokenizer: Any,
        templates: list[str] | None = None,
        names: list[str] | None = None,
        nouns: dict[str, list[str]] | None = None,
        num_samples: int = 1000,
        symmetric: bool = False,
        prepend_bos: bool = True,
        seed: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.prepend_bos = prepend_bos
        if seed is not None:
            random.seed(seed)
        self.templates = templates if templates is not None else self.get_default_templates()
        self.names = names if names is not None else self.get_default_names()
        self.nouns = nouns if nouns is not None else self.get_default_nouns()
        self.samples: list[dict[str, str]] = []
        for _ in range(num_samples // 2 if symmetric else num_samples):
            self.samples.extend(self.get_sample(symmetric=symmetric))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        sample = self.samples[idx]
        prompt = self.tokenizer.encode(sample["text"])
        if self.prepend_bos:
            prompt = [self.tokenizer.bos_token_id, *prompt]
        return {
            "prompt": torch.LongTensor(prompt),
            "IO": torch.LongTensor(self.tokenizer.encode(sample["IO"])),
            "S": torch.LongTensor(self.tokenizer.encode(sample["S"])),
        }

    def get_sample(self, symmetric: bool = False) -> list[dict[str, str]]:
        """One sample (two when `symmetric`): `{"text", "IO", "S"}`, names with a space."""
        template = random.choice(self.templates)
        for noun_type, noun_list in self.nouns.items():
            template = template.replace(f"[{noun_type}]", random.choice(noun_list))
        a, b = random.sample(self.names, 2)
        samples = [
            {"text": template.replace("[A]", a).replace("[B]", b), "IO": " " + a, "S": " " + b}
        ]
        if symmetric:
            text = template.replace("[A]", b).replace("[B]", a)
            samples.append({"text": text, "IO": " " + b, "S": " " + a})
        return samples

    @staticmethod
    def get_default_names() -> list[str]:
        return ["John", "Mary"]

    @staticmethod
    def get_default_templates() -> list[str]:
        return [
            "[A] and [B] went to the [LOCATION] to buy [OBJECT]. [B] handed the [OBJECT] to [A]",
            "Then, [B] and [A] went to the [LOCATION]. [B] gave the [OBJECT] to [A]",
        ]

    @staticmethod
    def get_default_nouns() -> dict[str, list[str]]:
        return {"LOCATION": ["store", "market"], "OBJECT": ["milk", "eggs", "bread"]}


def _collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    prompts = [sample["prompt"] for sample in samples]
    return {
        "prompt": torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True),
        "IO": [sample["IO"] for sample in samples],
        "S": [sample["S"] for sample in samples],
        "prompt_length": [p.shape[0] for p in prompts],
    }


@torch.inference_mode()
def ioi_eval(
    model: Any,
    dataset: Any = None,
    batch_size: int = 8,
    num_samples: int = 1000,
    tokenizer: Any = None,
    symmetric: bool = False,
) -> dict[str, float]:
    """`{"Logit Difference": mean logit(IO) - logit(S), "Accuracy": fraction > 0}` at
    the position predicting the first token where the IO and S names differ (the
    prompt ends with the IO name), over `dataset` (default: a fresh `IOIDataset`).
    Right-padded with 0 in batches, as TransformerLens's."""
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if dataset is None:
        dataset = IOIDataset(tokenizer, num_samples=num_samples, symmetric=symmetric)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=_collate)
    total_correct, total_logit_diff = 0, 0.0
    for batch in loader:
        batch_logits = model(batch["prompt"], return_type="logits")
        for i in range(batch_logits.shape[0]):
            io, s = batch["IO"][i], batch["S"][i]
            prefix_length = batch["prompt_length"][i] - io.shape[0]
            n = min(io.shape[0], s.shape[0])
            start = torch.where(io[:n] != s[:n])[0][0]
            logits = batch_logits[i, prefix_length + start - 1]
            logit_diff = logits[io[start]] - logits[s[start]]
            total_correct += (logit_diff > 0).item()
            total_logit_diff += logit_diff.item()
    return {
        "Logit Difference": total_logit_diff / len(dataset),
        "Accuracy": total_correct / len(dataset),
    }
