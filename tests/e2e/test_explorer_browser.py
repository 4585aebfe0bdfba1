"""The explorer end to end: `lookingglass explore` serves it on a free localhost port and
Debian's headless Chromium (driven by Playwright, never a downloaded browser) goes
through every page, checking real content, that the browser logged no error, that no
request left this machine (everything is served locally: no CDN), and saving a
screenshot of each page.

The model is the shipped one when installed, else a small random one; the store and
the snapshots are small made-up ones. LOOKINGGLASS_E2E_MODEL, LOOKINGGLASS_E2E_STORE
and LOOKINGGLASS_E2E_SNAPSHOTS pick others (the checks read what to expect from them).
Set LOOKINGGLASS_SCREENSHOTS=folder to keep the screenshots there (the docs' are made
so); otherwise they go to pytest's temporary folder. Needs /usr/bin/chromium and the
`playwright` package: `scripts/install_browser.sh` installs both.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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

    def wait(self, charts: int = 0) -> None:
        """Until the script has run and `charts` plotly charts are drawn."""
        self.page.wait_for_timeout(200)
        self.page.wait_for_selector(READY, timeout=60_000)
        self.page.wait_for_function(
            f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}", timeout=30_000
        )

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


def test_every_page_in_a_real_browser(setup, model, tmp_path):
    shots = Path(os.environ.get("LOOKINGGLASS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            browser = Browser(chromium.new_page(viewport={"width": 1400, "height": 900}), shots)
            try:
                _walk(browser, setup, model)
            except Exception:
                browser.page.screenshot(path=str(shots / "failure.png"))  # what the browser saw
                raise
        finally:
            chromium.close()
    print(
        "seconds per page (click to drawn):", {k: round(v, 2) for k, v in browser.timings.items()}
    )
    assert not browser.errors, browser.errors
    assert not browser.external, f"requests left this machine: {browser.external}"
    assert all(seconds < 30 for seconds in browser.timings.values()), browser.timings


def _walk(browser: Browser, setup, model) -> None:
    page = browser.page
    start = time.perf_counter()
    page.goto(setup["url"] + "/")
    page.wait_for_selector("h1:has-text('Prompt')", timeout=60_000)
    browser.wait(charts=4)
    browser.timings["Prompt (first load)"] = time.perf_counter() - start
    prompt = page.locator("textarea").input_value()
    text = browser.text()
    assert "Abraham" in text and "Top next-token predictions" in text
    loss = model(model.to_tokens(prompt), return_type="loss")
    assert f"mean {float(loss):.3f} nats" in text
    last = f"L{model.cfg.n_layers - 1}H0"
    page.get_by_role("radio", name=last, exact=True).click()  # enlarge a head
    browser.wait(charts=5)
    assert f"Attention of {last}" in browser.text()
    browser.screenshot("prompt")
    page.locator("textarea").fill("")  # bad input: an error on the page, then it recovers
    page.locator("textarea").press("Control+Enter")
    page.wait_for_selector("text=The prompt is empty", timeout=30_000)
    page.locator("textarea").fill("And God said, Let there be light")
    page.locator("textarea").press("Control+Enter")
    page.wait_for_selector("text=Logit lens", timeout=30_000)
    browser.wait(charts=4)

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

    browser.open("Schematics", charts=3)
    assert "One attention head, step by step" in browser.text()
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
