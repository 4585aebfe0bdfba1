"""MMLU evals give TransformerLens 3.9's results on identical weights and questions
(the hub dataset is replaced by a few local questions in both libraries)."""

from __future__ import annotations

import datasets
import pytest
import transformer_lens.evals as tl_evals
import transformers

from lookingglass import evals
from lookingglass.errors import InputError
from tests._analysis_helpers import tl_twin
from tests._helpers import make_model, make_tokenizer

QUESTIONS = {
    "astronomy": [
        {"question": "Red?", "choices": ["Mars", "Sun", "Ice", "Sky"]},
        {"question": "Sun?", "choices": ["star", "rock", "gas", "moon"]},
    ],
    "virology": [{"question": "Virus?", "choices": ["tiny", "huge", "blue", "loud"]}],
}


def _fake_load_dataset(path, subject, split="test"):
    assert path == "cais/mmlu"
    rows = [dict(q, answer=i % 4) for i, q in enumerate(QUESTIONS[subject])]
    return datasets.Dataset.from_list(rows)


def test_invalid_subject_raises_before_loading():
    with pytest.raises(InputError, match="Invalid subject"):
        evals.make_mmlu_data_loader(subjects=["astronomy", "not_a_subject"])


def test_mmlu_eval_matches_transformerlens(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", _fake_load_dataset)
    monkeypatch.setattr(tl_evals, "load_dataset", _fake_load_dataset)
    make_tokenizer().save_pretrained(tmp_path)
    ours = make_model(seed=3, tokenizer=transformers.AutoTokenizer.from_pretrained(tmp_path))
    theirs = tl_twin(ours, transformers.AutoTokenizer.from_pretrained(tmp_path))
    subjects = ["astronomy", "virology"]
    assert evals.make_mmlu_data_loader(subjects, num_samples=1) == (
        tl_evals.make_mmlu_data_loader(subjects, num_samples=1)
    )
    result = evals.mmlu_eval(ours, subjects=subjects)
    expected = tl_evals.mmlu_eval(theirs, subjects=subjects)
    assert result == expected
    assert result["num_total"] == 3
