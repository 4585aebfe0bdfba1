"""Server-side time of every explorer page, by default on the real 30-layer model
`smollm2-135m`, under Streamlit's `AppTest` (the page's script run in process: what the
server does for one visit, without the browser's drawing).

    .venv/bin/python benchmarks/bench_explorer.py [--model NAME_OR_FOLDER] [--repeats 5]

For each page: the first visit in a fresh process (after the model and the process-wide
resources are loaded, as `lookingglass explore` loads them before the first visit), and
the median of later visits (Streamlit's result caches warm). Then the linked clicks of
the Prompt page: selecting another position (first time: a new attribution is
computed), another head, and coming back to a position seen before. The browser's own
time, click to the last chart drawn in headless Chromium, is printed by the end-to-end
test (`pytest -s tests/e2e/test_explorer_browser.py`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

APP = ROOT / "lookingglass" / "explorer" / "app.py"
PAGES = [
    ("Prompt", "prompt_page.py"),
    ("Circuits", "circuits_page.py"),
    ("Browse examples", "browse_page.py"),
    ("Schematics", "schematics_page.py"),
    ("Experiments", "experiments_page.py"),
    ("Training dynamics", "dynamics_page.py"),
]


def visit(page: str, **params: str) -> float:
    """Seconds to run the app on `page` once (the navigation script and the page), with
    these linked values in the URL."""
    from streamlit.testing.v1 import AppTest

    start = time.perf_counter()
    at = AppTest.from_file(str(APP), default_timeout=600)
    at.query_params.update(params)
    at.run()
    if page != "prompt_page.py":
        at.switch_page(page).run()
    seconds = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"{page}: {[e.value for e in at.exception]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime" warnings
    from _explorer_helpers import make_dynamics_folder, make_store

    from lookingglass.explorer import ENV, resources

    folder = Path(tempfile.mkdtemp(prefix="bench_explorer_"))
    os.environ[ENV["model"]] = args.model
    os.environ[ENV["store"]] = str(make_store(folder / "runs.db"))
    os.environ[ENV["snapshots"]] = str(make_dynamics_folder(folder / "run"))
    start = time.perf_counter()
    for step in (resources.load_model, resources.head_scores, resources.component_means):
        step(args.model)
    resources.dynamics()
    print(f"model {args.model}: resources loaded in {time.perf_counter() - start:.2f} s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}\n")
    rows = []
    for title, page in PAGES:
        first = visit(page)
        later = [visit(page) for _ in range(args.repeats)]
        rows.append((title, f"{first:.2f}", f"{statistics.median(later):.2f}"))
    cfg = resources.load_model(args.model).model.cfg
    clicks = [  # (what, URL values): each new to the caches the first time
        ("Prompt: select position 5", {"pos": "5"}),
        ("Prompt: select another head", {"pos": "5", "head": f"L{cfg.n_layers // 2}H1"}),
        ("Prompt: select position 9", {"pos": "9", "head": f"L{cfg.n_layers // 2}H1"}),
    ]
    for title, params in clicks:
        first = visit("prompt_page.py", **params)
        later = [visit("prompt_page.py", **params) for _ in range(args.repeats)]
        rows.append((title, f"{first:.2f}", f"{statistics.median(later):.2f}"))
    width = max(len(r[0]) for r in rows)
    print(f"| {'page':<{width}} | first visit (s) | later visits, median (s) |")
    print(f"|{'-' * (width + 2)}|-----------------|--------------------------|")
    for title, first, later in rows:
        print(f"| {title:<{width}} | {first:>15} | {later:>24} |")


if __name__ == "__main__":
    main()
