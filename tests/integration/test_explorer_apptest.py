"""Every explorer page under Streamlit's `AppTest` (the app's scripts run in process, no
browser): widgets set, and what the page shows checked against the library's analysis
functions. Bad input shows an error on the page, never an exception, and the app keeps
working after it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lookingglass import HookedTransformer
from lookingglass.analysis import induction_scores
from lookingglass.explorer import ENV, compute, sources
from lookingglass.interventions import Component, per_token_loss_change
from tests._explorer_helpers import make_dynamics_folder, make_store, save_tiny_model

streamlit_testing = pytest.importorskip(
    "streamlit.testing.v1", reason="the explorer needs streamlit"
)
APP = Path(__file__).resolve().parents[2] / "lookingglass" / "explorer" / "app.py"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("apptest_model"))


@pytest.fixture(scope="module")
def model(model_dir):
    return HookedTransformer.from_pretrained(model_dir, device="cpu").eval().requires_grad_(False)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, model_dir):
    folder = tmp_path_factory.mktemp("apptest_sources")
    return {
        "model": str(model_dir),
        "store": str(make_store(folder / "runs.db")),
        "snapshots": str(make_dynamics_folder(folder / "run")),
    }


@pytest.fixture
def app(monkeypatch, settings):
    """`app(page, **overrides)`: the app run on one page (a `*_page.py` file name)."""

    def open_page(page: str = "prompt_page.py", **overrides):
        for name, variable in ENV.items():
            monkeypatch.delenv(variable, raising=False)
            value = {**settings, **overrides}.get(name)
            if value is not None:
                monkeypatch.setenv(variable, value)
        at = streamlit_testing.AppTest.from_file(str(APP), default_timeout=120).run()
        if page != "prompt_page.py":
            at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def tables(at, *columns: str) -> list:
    """The page's dataframes (as pandas) that have all these columns, in page order
    (AppTest does not expose a dataframe's key)."""
    return [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]


def param(at, key: str) -> str:
    """The URL's value for `key` (AppTest keeps query parameters as lists)."""
    value = at.query_params[key]
    return value[-1] if isinstance(value, list) else value


def charts(at) -> int:
    return len(at.get("plotly_chart"))


# ------------------------------------------------------------------------- prompt
def test_prompt_page_shows_the_models_numbers(app, model):
    at = app()
    prompt = at.text_area(key="prompt").value
    assert not errors(at)
    assert [h.value for h in at.subheader] == [
        "Tokens",
        "Selected position",
        "Attention",
        "Logit lens",
        "Direct logit attribution",
    ]
    tokens = model.to_tokens(prompt)
    logits = model(tokens)[0]
    n = tokens.shape[1]
    assert at.number_input(key="pos").value == n - 1  # the last position by default
    table = tables(at, "#1")[0]  # the predictions at the selected position
    assert table["pos"].tolist() == [n - 1]
    top = logits.softmax(-1)[-1].topk(2)
    assert table["#1"].iloc[0].endswith(f"{float(top.values[0]):.1%}")
    loss = model(tokens, return_type="loss")
    assert any(f"mean loss {float(loss):.3f} nats" in c.value for c in at.caption)
    # The logit lens column of the selected position: its final row is the model's output.
    lens = tables(at, "p(next)")[0]
    assert lens["layer"].tolist() == [f"{l}_pre" for l in range(model.cfg.n_layers)] + [
        "final_post"
    ]
    assert lens["p(next)"].tolist()[-1] == f"{float(top.values[0]):.2%}"
    # The attribution defaults to the top prediction at the selected position.
    caption = next(c.value for c in at.caption if c.value.startswith("Toward"))
    assert f"is **{float(logits[-1].max()):.3f}**" in caption
    assert charts(at) == 3  # the selected head's attention, attribution per head and layer


def test_prompt_page_follows_the_selected_position_and_head(app, model):
    prompt = "And Abraham said unto Abimelech, And Abraham said"
    at = app()
    at.text_area(key="prompt").set_value(prompt).run()
    at.number_input(key="pos").set_value(3).run()
    at.selectbox(key="head").set_value("L1H2").run()
    assert not at.exception and not errors(at)
    assert [param(at, k) for k in ("prompt", "pos", "head")] == [prompt, "3", "L1H2"]
    tokens = model.to_tokens(prompt)
    probs = model(tokens)[0].softmax(-1)
    following = int(tokens[0, 4])
    assert tables(at, "#1")[0]["pos"].tolist() == [3]
    assert tables(at, "p(next)")[0]["p(next)"].tolist()[-1] == f"{float(probs[3, following]):.2%}"
    # Attribution toward the actual next token minus the top prediction, picked from lists.
    top = int(probs[3].argmax())
    at.selectbox(key="dla_answer_3").set_value(following).run()
    at.selectbox(key="dla_wrong_3").set_value(top).run()
    assert not at.exception and not errors(at)
    expected = compute.direct_logit_attribution(model, prompt, 3, following, top)
    caption = next(c.value for c in at.caption if c.value.startswith("Toward"))
    assert (
        caption.startswith(f"Toward {expected.target}") and f"**{expected.logit:.3f}**" in caption
    )


def test_prompt_page_reads_the_link_and_checks_it(app, model):
    at = app()
    at.query_params["pos"] = "1000"
    at.query_params["head"] = "L9H9"
    at.run()
    n = len(model.to_tokens(at.text_area(key="prompt").value)[0])
    assert not at.exception and at.number_input(key="pos").value == n - 1  # clamped
    assert any("L9H9" in w.value for w in at.warning)
    at.query_params["pos"] = "2"
    at.query_params["head"] = "l0h3"
    at.run()
    assert at.number_input(key="pos").value == 2 and at.selectbox(key="head").value == "L0H3"


def test_the_model_picker_switches_models_without_a_restart(app):
    at = app()
    assert "lookingglass-mlp4" in at.selectbox(key="model").options
    at.selectbox(key="model").set_value("lookingglass-mlp4").run()
    assert not at.exception and not errors(at)
    assert "4 layers x 4 heads" in " ".join(c.value for c in at.sidebar.caption)
    lens = tables(at, "p(next)")[0]
    assert len(lens) == 5  # resid_pre of 4 layers, then the final stream


@pytest.mark.parametrize("prompt, message", [("", "empty"), (" and" * 300, "tokens long")])
def test_prompt_page_reports_bad_prompts_and_recovers(app, prompt, message):
    at = app()
    at.text_area(key="prompt").set_value(prompt).run()
    assert not at.exception and any(message in e for e in errors(at))
    at.text_area(key="prompt").set_value("And God said").run()
    assert not at.exception and not errors(at) and charts(at) == 3


@pytest.mark.parametrize("prompt", [" and" * 300, "In the beginning. " * 300])
def test_prompt_page_offers_to_cut_an_over_long_prompt(app, model, prompt):
    at = app()
    at.text_area(key="prompt").set_value(prompt).run()
    assert at.text_area(key="prompt").value == prompt  # kept as typed, never emptied
    assert any("Cut it to the first" in w.value for w in at.warning)
    at.button[0].click().run()
    cut = at.text_area(key="prompt").value
    assert not at.exception and not errors(at) and prompt.startswith(cut)
    limit = min(128, model.cfg.n_ctx)
    assert model.to_tokens(cut).shape[1] == limit  # exactly what fits, BOS included
    assert param(at, "prompt") == cut


# ----------------------------------------------------------------------- circuits
def test_circuits_page_names_the_strongest_induction_head(app, model):
    at = app("circuits_page.py")
    scores = induction_scores(model, seq_len=50, n_seq=10)
    layer, head = divmod(int(scores.argmax()), model.cfg.n_heads)
    assert (
        f"Strongest induction head: **L{layer}H{head}** (induction score {float(scores.max()):.2f})"
        in at.markdown[0].value
    )
    at.selectbox(key="circuit_head").set_value("L1H3").run()
    at.selectbox(key="through_1").set_value("direct (no other head)").run()
    at.text_input(key="qk_token").set_value(" said").run()
    at.text_input(key="ov_token").set_value(" God").run()
    view = compute.circuit_view(model, 1, 3, " said", " God")
    assert (
        at.subheader[1].value
        == f"L1H3: QK and OV circuits (copying score {view.copying_score:.3f})"
    )
    assert at.query_params["head"] == "L1H3"
    qk = tables(at, "id", "score")[0]
    assert qk["id"].tolist() == [t.token_id for t in view.top_keys]
    np.testing.assert_allclose(qk["score"], [round(t.value, 4) for t in view.top_keys])
    assert tables(at, "logit")[0]["id"].tolist() == [t.token_id for t in view.boosted]
    assert tables(at, "logit")[1]["id"].tolist() == [t.token_id for t in view.suppressed]


def test_circuits_page_reports_bad_heads_and_tokens(app):
    at = app("circuits_page.py")
    at.query_params["head"] = "L9H9"
    at.run()
    assert not at.exception and any("L9H9" in e and "does not have" in e for e in errors(at))
    at.text_input(key="qk_token").set_value("").run()
    assert any("No token" in e for e in errors(at))


# ------------------------------------------------------------------------- browse
def test_browse_page_ablates_and_reports_the_loss(app, model):
    at = app("browse_page.py")
    at.selectbox(key="component").set_value("L1H2").run()
    at.radio(key="method").set_value("zero").run()
    assert not errors(at)
    tokens = sources.example_tokens(model, sources.corpus_dataset().texts[0])
    clean = model(tokens, return_type="loss", loss_per_token=True)[0]
    change = per_token_loss_change(model, tokens, Component.head(1, 2), "zero")[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Mean loss, clean"] == f"{float(clean.mean()):.4f}"
    assert metrics["Mean loss, L1H2 zero-ablated"] == f"{float((clean + change).mean()):.4f}"
    helps = tables(at, "loss change")[0]
    assert helps["loss change"][0] == pytest.approx(round(float(change.max()), 4))
    at.radio(key="method").set_value("mean").run()
    rows = sources.reference_rows(model, sources.corpus_dataset())
    change = per_token_loss_change(model, tokens, Component.head(1, 2), "mean", data=rows)[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Mean loss, L1H2 mean-ablated"] == f"{float((clean + change).mean()):.4f}"
    assert charts(at) == 2  # the loss curves and the head's attention


def test_browse_page_other_examples_and_layers(app, model):
    at = app("browse_page.py")
    at.selectbox(key="doc").set_value(3).run()
    at.selectbox(key="component").set_value("attn 0").run()
    at.number_input(key="start_3").set_value(20).run()
    assert not at.exception and not errors(at)
    text = sources.corpus_dataset().texts[3]
    tokens = sources.example_tokens(model, text, start=20)
    clean = model(tokens, return_type="loss")
    assert {m.label: m.value for m in at.metric}["Mean loss, clean"] == f"{float(clean):.4f}"
    assert charts(at) == 1  # no attention pattern for a whole layer


# --------------------------------------------------------------------- schematics
def test_schematics_page_steps_and_sums(app, model):
    at = app("schematics_page.py")
    at.selectbox(key="head").set_value("L0H1").run()
    prompt = at.text_area(key="prompt").value
    at.number_input(key="pos").set_value(3).run()
    assert not at.exception and not errors(at)
    checks = tables(at, "max |recomputed - cached|")[0]
    assert (checks["max |recomputed - cached|"].astype(float) < 1e-4).all()
    _, cache = model.run_with_cache(model.to_tokens(prompt))
    scores = tables(at, "pattern (softmax)")[0]
    np.testing.assert_allclose(
        scores["pattern (softmax)"], cache["pattern", 0][0, 1, 3, :4].numpy().round(4), atol=1e-4
    )
    resid = tables(at, "norm of write")[0]
    stack = cache.decompose_resid(layer=-1, pos_slice=3)[:, 0]
    np.testing.assert_allclose(
        resid["norm of write"], stack.norm(dim=-1).numpy().round(3), atol=1e-3
    )
    at.text_area(key="prompt").set_value("").run()
    assert any("empty" in e for e in errors(at)) and not at.exception


# -------------------------------------------------------------------- experiments
def test_experiments_page_lists_runs_and_plots(app):
    at = app("experiments_page.py")
    runs = tables(at, "experiment")[0]
    assert runs["experiment"].tolist() == ["toy_losses"] and runs["status"].tolist() == ["ok"]
    assert tables(at, "name", "value")[0]["value"].tolist() == ["1.0"]
    assert "toy_losses" in at.subheader[0].value.replace("\\", "")  # shown escaped
    assert charts(at) == 1 and len(at.image) == 1  # the plotly figure and the PNG


def test_experiments_and_dynamics_pages_without_sources(app):
    at = app("experiments_page.py", store=None)
    assert "--store" in at.info[0].value
    at = app("dynamics_page.py", snapshots=None)
    assert "--snapshots" in at.info[0].value


def test_bad_store_path_is_an_error_on_the_page(app, tmp_path):
    (tmp_path / "x.db").write_text("text")
    at = app("experiments_page.py", store=str(tmp_path / "x.db"))
    assert any("not an experiment store" in e for e in errors(at))


# ------------------------------------------------------------------------ dynamics
def test_dynamics_page_shows_head_scores_and_pca(app):
    at = app("dynamics_page.py")
    assert "**L1H2 (0.85, above threshold from step 40)**" in at.markdown[0].value
    assert charts(at) == 4  # induction, previous-token, losses, PCA trajectory


# ------------------------------------------------------------------ a bad model
def test_a_model_that_does_not_load_is_an_error_on_every_model_page(app, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    for page in ("prompt_page.py", "circuits_page.py", "browse_page.py", "schematics_page.py"):
        for model in (str(tmp_path / "missing"), str(broken)):
            at = app(page, model=model)
            assert any("Could not load the model" in e for e in errors(at)), (page, model)
    at = app("experiments_page.py", model=str(tmp_path / "missing"))
    assert not errors(at) and tables(at, "experiment")


def test_every_page_works_on_the_shipped_model_with_mlps(app):
    """The pages are written for any architecture, not only attention-only models:
    `lookingglass-mlp4` (4 layers with MLPs) opens every page without an error, and the
    Browse page can ablate an MLP layer."""
    from lookingglass.loading.registry import packaged_models

    assert "lookingglass-mlp4" in packaged_models()
    pages = ["prompt_page.py", "circuits_page.py", "browse_page.py", "schematics_page.py"]
    for page in pages:
        at = app(page, model="lookingglass-mlp4")
        assert not errors(at), (page, errors(at))
        assert "4 layers x 4 heads" in " ".join(c.value for c in at.sidebar.caption), page
    at = app("browse_page.py", model="lookingglass-mlp4")
    at.selectbox(key="component").set_value("mlp 2").run()
    assert not errors(at) and not at.exception
    metrics = {m.label: m.value for m in at.metric}
    mlp4 = HookedTransformer.from_pretrained("lookingglass-mlp4", device="cpu")
    tokens = sources.example_tokens(mlp4, sources.corpus_dataset().texts[0])
    with torch.no_grad():
        clean = mlp4(tokens, return_type="loss", loss_per_token=True)[0]
        zeroed = mlp4.run_with_hooks(  # by hand: MLP 2 writes nothing
            tokens,
            return_type="loss",
            loss_per_token=True,
            fwd_hooks=[("blocks.2.hook_mlp_out", lambda out, hook: torch.zeros_like(out))],
        )[0]
    assert metrics["Mean loss, clean"] == f"{float(clean.mean()):.4f}", metrics
    ablated = next(value for label, value in metrics.items() if "mlp 2" in label.lower())
    assert float(ablated) == pytest.approx(float(zeroed.mean()), abs=1e-4), metrics
