"""The explorer's SAE features page under Streamlit's `AppTest`: an SAE folder named by
LOOKINGGLASS_EXPLORER_SAES is listed, its most frequent feature shown with the numbers
`FeatureActivations` gives on the same held-out text, and a feature out of range is
refused by the widget, never an exception."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lookingglass import HookedTransformer
from lookingglass.explorer import ENV
from lookingglass.explorer.sae_page import SAES_ENV, _activations
from lookingglass.sae import SAE, SAEConfig
from tests._explorer_helpers import save_tiny_model

streamlit_testing = pytest.importorskip(
    "streamlit.testing.v1", reason="the explorer needs streamlit"
)
APP = Path(__file__).resolve().parents[2] / "lookingglass" / "explorer" / "app.py"


def test_sae_page_shows_a_feature(tmp_path, monkeypatch):
    model_dir = save_tiny_model(tmp_path / "model")
    model = HookedTransformer.from_pretrained(model_dir, device="cpu").eval()
    sae = SAE(
        SAEConfig(
            d_in=model.cfg.d_model,
            d_sae=16,
            architecture="topk",
            k=3,
            hook_name="blocks.0.hook_resid_post",
            model_name=str(model_dir),
        )
    )
    with torch.no_grad():
        sae.W_enc.normal_(generator=torch.Generator().manual_seed(0))
    sae.save_model(tmp_path / "saes" / "tiny")
    for variable in ENV.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(ENV["model"], str(model_dir))
    monkeypatch.setenv(SAES_ENV, str(tmp_path / "saes"))
    at = streamlit_testing.AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("sae_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    choices = at.selectbox[0].options
    if len(choices) > 1:  # the shipped SAE comes first: trained on another model, so said
        assert "was trained on smollm2-135m" in at.warning[0].value
        at.selectbox[0].set_value(next(c for c in choices if c.startswith("tiny"))).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    _, acts = _activations(model, tmp_path / "saes" / "tiny", 2048)
    busiest = int(acts.density().argmax())
    assert at.number_input[0].value == busiest
    text = " ".join(m.value for m in at.markdown)
    assert f"fires on {acts.density()[busiest]:.3%}" in text
    assert len(at.get("plotly_chart")) == 3
    at.number_input[0].set_value(15).run()
    assert not at.exception, [e.value for e in at.exception]
