"""Every plot function: the figure holds the right data (checked in the plotly and the
matplotlib renderings), and it renders to self-contained HTML and to PNG / SVG."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import lookingglass
from lookingglass import plot
from lookingglass.analysis import logit_lens
from lookingglass.bench import paired_test, profile_model
from tests._helpers import make_model, make_tokenizer, one_cpu_thread

TEXT = "When Mary and John went to the store, John gave a drink to Mary"
SHIPPED = Path(lookingglass.__file__).parent / "pretrained" / "lookingglass-attn2"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def run():
    """A small random model with a tokenizer, one cached run, and its string tokens."""
    model = make_model(tokenizer=make_tokenizer())
    with torch.no_grad():
        logits, cache = model.run_with_cache(TEXT)
    return SimpleNamespace(
        model=model, cache=cache, logits=logits, tokens=model.to_str_tokens(TEXT)
    )


def renders(fig: plot.Figure, tmp_path: Path, name: str) -> str:
    """Render both ways; return the HTML after checking it needs no network."""
    html = fig.to_html(tmp_path / f"{name}.html")
    assert not re.search(r"<script[^>]*src=[\"']?https?:", html), (
        "the HTML must not load scripts from the web"
    )
    assert fig.to_image(tmp_path / f"{name}.png", dpi=30).startswith(b"\x89PNG")
    return html


def heatmap_z(fig: plot.Figure, index: int = 0) -> np.ndarray:
    return np.array(fig.plotly.data[index].z, dtype=float)


def test_attention_patterns_grid(run, tmp_path):
    pattern = run.cache["pattern", 1][0]
    fig = plot.attention_patterns(run.cache, run.tokens, layer=1)
    n = len(run.tokens)
    assert (
        len(fig.panels) == run.model.cfg.n_heads and len(fig.plotly.data) == run.model.cfg.n_heads
    )
    future = np.triu(np.ones((n, n), dtype=bool), k=1)
    for head in range(run.model.cfg.n_heads):
        z = heatmap_z(fig, head)
        assert np.isnan(z[future]).all(), "positions after the destination are masked"
        assert np.allclose(z[~future], pattern[head].numpy()[~future])
        image = fig.matplotlib.axes[head].images[0].get_array()
        assert image.mask[future].all() and np.allclose(
            image.data[~future], pattern[head].numpy()[~future]
        )
    hover = fig.plotly.data[2].hovertext[5][3]
    assert (
        repr(run.tokens[5]) in hover
        and repr(run.tokens[3]) in hover
        and f"{float(pattern[2, 5, 3]):.4f}" in hover
    )
    assert fig.plotly.layout.yaxis.autorange == "reversed"  # destination 0 on top
    html = renders(fig, tmp_path, "attention")
    assert "plotly" in html and len(html) > 1_000_000  # plotly.js is inlined
    only = plot.attention_patterns(pattern[[0]].numpy(), heads=[0])
    assert len(only.panels) == 1 and only.panels[0].x[0] == "0"
    assert fig.to_image(format="svg", dpi=30).lstrip().startswith(b"<?xml")


def test_logit_lens_heatmap(run, tmp_path):
    targets = run.model.to_tokens(TEXT)[:, 1:]
    result = logit_lens(
        run.model, run.cache, target_tokens=targets, pos_slice=slice(0, -1), top_k=3
    )
    fig = plot.logit_lens(result, run.tokens[:-1], model=run.model)
    z = heatmap_z(fig)
    assert z.shape == (run.model.cfg.n_layers + 1, len(run.tokens) - 1)
    assert np.allclose(z, result.top_probs[:, 0, :, 0].numpy())
    top = int(result.top_tokens[1, 0, 4, 0])
    assert fig.plotly.data[0].text[1][4] == repr(run.model.to_single_str_token(top))[1:-1][:10]
    assert list(fig.plotly.layout.yaxis.ticktext) == result.labels
    rank = plot.logit_lens(result, color="rank")
    assert np.allclose(heatmap_z(rank), np.log10(result.target_ranks[:, 0].numpy() + 1))
    assert np.allclose(
        heatmap_z(plot.logit_lens(result, color="entropy")), result.entropy[:, 0].numpy()
    )
    assert fig.plotly.data[0].text[0][0] == fig.panels[0].text[0, 0]
    renders(fig, tmp_path, "lens")
    no_targets = logit_lens(run.model, run.cache)
    with pytest.raises(lookingglass.InputError, match="target_tokens"):
        plot.logit_lens(no_targets, color="rank")


def test_attribution_bars_and_head_heatmap(run, tmp_path):
    values = torch.tensor([0.5, -1.0, 2.0])
    bars = plot.logit_attribution(values, ["embed", "0_attn_out", "0_mlp_out"])
    assert (
        list(bars.plotly.data[0].x) == [0.5, -1.0, 2.0]
        and list(bars.plotly.data[0].y)[1] == "0_attn_out"
    )
    heights = [p.get_width() for p in bars.matplotlib.axes[0].patches]
    assert heights == [0.5, -1.0, 2.0]
    renders(bars, tmp_path, "dla")
    per_head = torch.tensor([[0.1, -0.4], [0.3, 0.2]])
    heads = plot.head_attribution(per_head)
    trace = heads.plotly.data[0]
    assert np.allclose(heatmap_z(heads), per_head.numpy()) and trace.zmid == 0.0
    assert (trace.zmin, trace.zmax) == pytest.approx((-0.4, 0.4))  # symmetric about 0
    assert trace.text[0][1] == "-0.40"
    renders(heads, tmp_path, "heads")


def test_patching_heatmaps_diverge_from_zero(run, tmp_path):
    values = torch.randn(3, 2, len(run.tokens), generator=torch.Generator().manual_seed(0))
    fig = plot.patching_heatmap(values, run.tokens)
    largest = float(values.abs().max())
    assert [p.title for p in fig.panels] == ["resid_pre", "attn_out", "mlp_out"]
    for index, trace in enumerate(fig.plotly.data):
        assert np.allclose(np.array(trace.z, dtype=float), values[index].numpy())
        assert (
            trace.zmid == 0
            and trace.zmin == pytest.approx(-largest)
            and trace.zmax == pytest.approx(largest)
        )
        assert trace.colorscale[0][1] == "rgb(103,0,31)"  # RdBu: dark red at the negative end
    image = fig.matplotlib.axes[0].images[0]
    assert image.get_clim() == pytest.approx((-largest, largest))
    renders(fig, tmp_path, "patching")


def test_loss_per_token_coloured_text(run, tmp_path):
    with torch.no_grad():
        losses = run.model(TEXT, return_type="loss", loss_per_token=True)[0]
    fig = plot.loss_per_token(run.tokens, losses)
    values = fig.panels[0].values
    assert np.isnan(values[0]) and np.allclose(values[1:], losses.numpy())
    html = renders(fig, tmp_path, "loss")
    spans = re.findall(r'<span class="tok"[^>]*data-value="([^"]+)"', html)
    assert len(spans) == len(run.tokens) and float(spans[3]) == pytest.approx(
        float(losses[2]), rel=1e-5
    )
    assert "<script" not in html
    grid = np.array(fig.plotly.data[0].z, dtype=float).reshape(-1)[: len(run.tokens)]
    assert np.allclose(grid[1:], losses.numpy())


def test_training_curves_and_pca_trajectory(tmp_path):
    result = SimpleNamespace(
        train_losses=[4.0, 3.0, 2.5, 2.0], eval_steps=[2, 4], eval_losses=[3.1, 2.2]
    )
    fig = plot.training_curves(result, log_y=True)
    train, evaluation = fig.plotly.data
    assert list(train.x) == [1, 2, 3, 4] and list(train.y) == result.train_losses
    assert list(evaluation.x) == [2, 4] and list(evaluation.y) == [3.1, 2.2]
    assert fig.plotly.layout.yaxis.type == "log"
    renders(fig, tmp_path, "train")
    table = plot.training_curves(
        [{"step": 10, "loss": 3.0, "acc": 0.1}, {"step": 20, "loss": 2.0, "acc": 0.3}]
    )
    assert [p.title for p in table.panels] == ["loss", "acc"] and list(table.plotly.data[1].x) == [
        10,
        20,
    ]
    projections = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    pca = plot.loss_pca_trajectory(
        projections,
        steps=[0, 10, 20, 40, 80, 160],
        explained_variance=[0.6, 0.2, 0.1],
        components=[(0, 1), (1, 2)],
    )
    trace = pca.plotly.data[1]
    assert np.allclose(trace.x, projections[:, 1]) and np.allclose(trace.y, projections[:, 2])
    assert list(trace.text) == ["0", "10", "20", "40", "80", "160"]
    assert pca.panels[0].x_title == "PC1 (60.0%)"
    renders(pca, tmp_path, "pca")
    from lookingglass.training.dynamics import Dynamics, loss_pca

    steps = np.array([0, 10, 20, 40])
    losses = np.random.default_rng(0).random((4, 30))
    fitted = loss_pca(losses, k=2)
    from_pca = plot.loss_pca_trajectory(fitted, steps=steps)
    assert np.allclose(from_pca.plotly.data[0].x, fitted.trajectory[:, 0])
    dynamics = Dynamics(
        steps,
        losses,
        np.random.default_rng(1).random((4, 2, 4)),
        np.zeros((4, 2, 4)),
        np.zeros((4, 9)),
        np.array([4.0, 3.0, 2.5, 2.4]),
        np.array([0.0, -0.1, -0.5, -0.6]),
    )
    curves = plot.training_curves(dynamics)
    assert [p.title for p in curves.panels] == ["eval_loss", "icl_score", "max_induction_score"]
    assert np.allclose(curves.plotly.data[2].y, dynamics.induction.reshape(4, -1).max(1))


def test_bench_result_plots(run, tmp_path):
    result = paired_test(np.arange(6.0), np.arange(6.0) + [1, 2, 1, 2, 1, 2], ("clean", "ablated"))
    fig = plot.hypothesis_result(result)
    assert np.allclose(fig.plotly.data[1].y, np.arange(6.0) + [1, 2, 1, 2, 1, 2])
    renders(fig, tmp_path, "hypothesis")
    profile = profile_model(run.model, run.model.to_tokens(TEXT))
    figure = profile.figure(top=5)
    assert len(figure.panels[0].labels) == 5
    assert max(figure.panels[0].values) == max(r["self_ms"] for r in profile.rows if r["depth"] > 0)
    renders(figure, tmp_path, "profile")


@pytest.mark.skipif(
    not (SHIPPED / "config.json").is_file(), reason="the shipped model is not in the package yet"
)
def test_plots_on_the_shipped_model(tmp_path):
    model = lookingglass.HookedTransformer.from_pretrained("lookingglass-attn2")
    text = "In the beginning God created the heaven and the earth. And the earth was"
    with torch.no_grad():
        _, cache = model.run_with_cache(text)
        losses = model(text, return_type="loss", loss_per_token=True)[0]
    tokens = model.to_str_tokens(text)
    renders(plot.attention_patterns(cache, tokens, layer=model.cfg.n_layers - 1), tmp_path, "attn")
    renders(plot.logit_lens(logit_lens(model, cache), tokens, model=model), tmp_path, "lens")
    renders(plot.loss_per_token(tokens, losses), tmp_path, "loss")


def test_general_heatmap(tmp_path):
    values = np.array([[0.2, np.nan], [0.9, 0.4]])
    fig = plot.heatmap(values, x_labels=["H0", "H1"], title="scores", colorscale="blues")
    z = heatmap_z(fig)
    assert np.isnan(z[0, 1]) and np.allclose(z[[0, 1, 1], [0, 0, 1]], [0.2, 0.9, 0.4])
    assert (
        list(fig.plotly.layout.xaxis.ticktext) == ["H0", "H1"]
        and fig.plotly.data[0].text[1][0] == "0.90"
    )
    diverging = plot.heatmap(-values, diverging=True)
    assert diverging.plotly.data[0].zmid == 0 and diverging.panels[0].colorscale == "rdbu"
    renders(fig, tmp_path, "heatmap")
    with pytest.raises(lookingglass.InputError, match="2-D"):
        plot.heatmap(np.zeros(3))
