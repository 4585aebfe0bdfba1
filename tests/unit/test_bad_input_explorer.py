"""The explorer against hostile stored text and bad `explore` arguments (issue 17).

Stored strings (a run's error, experiment names, attachment names, figures) are shown
as text: every Markdown body the Experiments page hands Streamlit is parsed here with
markdown-it-py (a CommonMark/GFM implementation, the reference) and must hold no image,
link or HTML, while reading as the original characters. `explore` refuses a bad data
file, store or snapshots folder before the server starts."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from pathlib import Path

import pytest
import torch

from lookingglass.bench import Bench
from lookingglass.explorer import ENV, views
from lookingglass.explorer.cli import streamlit_command
from lookingglass.explorer.sources import SourceError

markdown_it = pytest.importorskip("markdown_it")
streamlit_testing = pytest.importorskip("streamlit.testing.v1")
APP = Path(__file__).resolve().parents[2] / "lookingglass" / "explorer" / "app.py"
REMOTE = "198.51.100.7"
HOSTILE = [
    f"RuntimeError: ![x](http://{REMOTE}/t.png)",
    f'<img src="http://{REMOTE}/t.png">',
    f"[click](http://{REMOTE}/) and http://{REMOTE}/bare and www.example.com",
    f"[ref]: http://{REMOTE}/r.png\n\n![ref]",
    f"<http://{REMOTE}/auto>",
    ":red[colour] :material/home: $x^2$ **bold** `code` # heading",
    "back\\slash \\![x](y) & &amp; ~~strike~~ | a | b |",
]
_ACTIVE = {"image", "link_open", "html_inline", "html_block", "math_inline"}


def _parse(body: str) -> list:
    """CommonMark with GFM tables and strikethrough (bare-URL linkify would need
    linkify-it-py, not installed; a bare URL is at most a link one clicks)."""
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(body)


def _tokens(body: str) -> list:
    """All markdown-it tokens of `body`, nested ones included."""
    flat, stack = [], _parse(body)
    while stack:
        token = stack.pop()
        flat.append(token)
        stack.extend(token.children or [])
    return flat


def _text(body: str) -> str:
    """The characters a reader sees (text and inline code), in order."""
    out = []
    for block in _parse(body):
        for token in block.children or []:
            if token.type in ("text", "code_inline"):
                out.append(token.content)
            elif token.type in ("softbreak", "hardbreak"):
                out.append("\n")
    return "".join(out)


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_renders_as_the_same_characters_and_nothing_else(text):
    body = views.plain(text)
    assert not _ACTIVE & {t.type for t in _tokens(body)}
    if "\n\n" not in text:  # (a blank line is a paragraph break in any Markdown)
        assert _text(body) == text


@pytest.mark.parametrize(
    "figure, kept",
    [
        ({"layout": {"images": [{"source": f"http://{REMOTE}/i.png"}]}}, []),
        ({"layout": {"images": [{"source": f"//{REMOTE}/i.png"}]}}, []),
        ({"layout": {"mapbox": {"style": f"https://{REMOTE}/style.json"}}}, []),
        ({"layout": {"images": [{"source": "data:image/png;base64,AA=="}]}}, ["data:"]),
        ({"layout": {"title": {"text": f"see http://{REMOTE}"}}}, ["see http"]),
    ],
)
def test_remote_urls_leave_stored_figures(figure, kept):
    cleaned = json.dumps(views.without_remote_urls(figure))
    assert all(k in cleaned for k in kept)
    assert (REMOTE in cleaned) == any("http" in k for k in kept)


# ---------------------------------------------------------------- the page itself
@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    """A store with a run that raised the issue's error, an experiment whose name is
    Markdown, and attachments that try to load remote content."""
    path = tmp_path_factory.mktemp("hostile") / "runs.db"
    with Bench(None, str(path), progress=False) as bench:

        @bench.log_experiment(name=f"![n](http://{REMOTE}/name.png)")
        def failing() -> None:
            raise RuntimeError(f"![x](http://{REMOTE}/t.png)")

        with pytest.raises(RuntimeError):
            failing()

        @bench.log_experiment(name="fine")
        def fine() -> dict:
            return {"loss": torch.tensor([1.0, 2.0])}

        fine()
        figure = json.dumps(
            {"data": [], "layout": {"images": [{"source": f"http://{REMOTE}/fig.png"}]}}
        ).encode()
        attachments = {
            f"![a](http://{REMOTE}/a.png).plotly.json": (
                "application/json",
                figure,
                ".plotly.json",
            ),
            "svg.svg": ("image/svg+xml", f"http://{REMOTE}/s.png".encode(), ".svg"),
            f"[d](http://{REMOTE}/d).bin": ("application/octet-stream", b"x", ".bin"),
        }
        for name, (media_type, data, ext) in attachments.items():
            bench.store.attach(2, name, media_type, bench.store.put_blob(data, ext), ext)
    return path


def _markdown_bodies(at) -> list[str]:
    bodies = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title"):
        bodies += [e.value for e in getattr(at, kind)]
    bodies += [e.value for e in at.subheader] + [e.value for e in at.header]
    return bodies + [c for image in at.image for c in image.captions]


@pytest.mark.parametrize("run", [1, 2])
def test_the_experiments_page_shows_stored_text_as_text(monkeypatch, hostile_store, run):
    for variable in ENV.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(ENV["model"], str(hostile_store.parent / "no-model"))
    monkeypatch.setenv(ENV["store"], str(hostile_store))
    at = streamlit_testing.AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("experiments_page.py").run()
    at.selectbox(key="run").set_value(run).run()
    assert not at.exception, [e.value for e in at.exception]
    bodies = _markdown_bodies(at)
    for body in bodies:
        assert not _ACTIVE & {t.type for t in _tokens(body)}, body
    shown = "\n".join(_text(b) for b in bodies)
    if run == 1:
        assert f"The run failed: RuntimeError: ![x](http://{REMOTE}/t.png)" in shown
        assert f"![n](http://{REMOTE}/name.png)@" in shown
    else:
        (chart,) = at.get("plotly_chart")
        spec = json.loads(chart.proto.spec)  # the figure the browser draws
        assert "images" in spec["layout"] and REMOTE not in json.dumps(spec)
        (image,) = at.image
        urls = image.value
        assert len(urls) == 1 and REMOTE not in urls[0] and not urls[0].startswith("http")
        (button,) = at.get("download_button")  # its label is Markdown too
        assert not _ACTIVE & {t.type for t in _tokens(button.proto.label)}
        assert _text(button.proto.label) == f"Download [d](http://{REMOTE}/d).bin"


# ------------------------------------------------------------------- explore's checks
def _args(**paths) -> argparse.Namespace:
    defaults = {"model": "m", "port": 8501, "host": "127.0.0.1", "data": None}
    return argparse.Namespace(**{**defaults, "store": None, "snapshots": None, **paths})


def _not_a_store(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    return path


@pytest.mark.parametrize(
    "option, content, reason",
    [
        ("data", b'{"text": "ok"}\n{not json\n', "line 2 is not JSON"),
        (
            "data",
            b'{"text": "ok"}\n{"txt": "no text field"}\n',
            'line 2 has no string field "text"',
        ),
        ("data", b'["a list"]\n', 'line 1 has no string field "text"'),
        ("data", b"\n\n\n", "holds no documents"),
        ("data", b"\xff\xfe not utf-8", "not UTF-8"),
        ("store", b"garbage that is not sqlite", "not an experiment store"),
        ("store", _not_a_store, "not an experiment store"),
        ("snapshots", b'{"steps": [0, 7]}', "lists step(s) [7]"),
        ("snapshots", b"{not json", "unreadable"),
    ],
)
def test_explore_refuses_bad_sources_before_the_server_starts(
    tmp_path, monkeypatch, option, content, reason
):
    from lookingglass.cli import main

    if option == "snapshots":
        (tmp_path / "step_000000").mkdir()
        (tmp_path / "step_000000" / "config.json").write_text("{}")
        (tmp_path / "index.json").write_bytes(content)
        path = tmp_path
    else:
        path = tmp_path / ("bad.jsonl" if option == "data" else "bad.db")
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
    with pytest.raises(SourceError, match=re.escape(reason)):
        streamlit_command(_args(**{option: str(path)}))
    monkeypatch.setattr("os.execve", lambda *a: pytest.fail("the server was started"))
    assert main(["explore", f"--{option}", str(path)]) == 2


def test_explore_accepts_good_sources(tmp_path):
    data = tmp_path / "good.jsonl"
    data.write_text('{"text": "one"}\n\n{"text": "two"}\n')
    with Bench(None, str(tmp_path / "s.db"), progress=False):
        pass
    _, env = streamlit_command(_args(data=str(data), store=str(tmp_path / "s.db")))
    assert env[ENV["data"]] == str(data.resolve()) and env[ENV["store"]].endswith("s.db")
