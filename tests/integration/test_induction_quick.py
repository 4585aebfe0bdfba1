"""Induction heads form in a 2-layer attention-only model and not in a 1-layer one.

Both models train on the same random sequences with repeated segments (the
replication's data, `lookingglass.training.replicate.make_data`), then each head's
prefix-matching score is read from its attention pattern on repeated random tokens by
`lookingglass.analysis.heads.induction_scores`. Olsson et al. (2022): a 2-layer model
forms induction heads (previous-token head in layer 0, induction head in layer 1); a
1-layer model without smeared keys cannot.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lookingglass.analysis.heads import induction_scores
from lookingglass.training.replicate import QUICK, build_model, make_data
from lookingglass.training.train import TrainConfig, train

SETTINGS = dataclasses.replace(QUICK, n_train_rows=16_000, n_eval_rows=64)
N_STEPS = 500  # the 2-layer model's phase change is at about step 400 with these settings


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is fastest, and never oversubscribed
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return make_data(SETTINGS)


def trained(name: str, rows: torch.Tensor):
    model = build_model(name, SETTINGS)
    config = TrainConfig(
        n_steps=N_STEPS,
        batch_size=SETTINGS.batch_size,
        lr=SETTINGS.lr,
        warmup_steps=SETTINGS.warmup_steps,
        min_lr_ratio=1.0,
        eval_every=0,
        progress=False,
        seed=0,
    )
    train(model, rows, config)
    return model


def scores(model) -> torch.Tensor:
    return induction_scores(model, seq_len=20, n_seq=20, seed=1, prepend_bos=False)


def test_two_layer_model_forms_an_induction_head_in_layer_1(data):
    model = trained("attn2", data[0])
    induction = scores(model)
    assert induction.shape == (2, 4)
    assert induction[1].max() > 0.5, f"layer-1 induction scores {induction[1].tolist()}"


def test_one_layer_model_without_smeared_keys_has_no_induction_head(data):
    model = trained("attn1", data[0])
    induction = scores(model)
    assert induction.max() < 0.2, f"induction scores {induction.tolist()}"
