"""`write_atomic`: a reader sees the old file or the new one, never part of one."""

from __future__ import annotations

import os

import pytest

from lookingglass.utils import write_atomic


def test_writes_text_and_bytes_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "report.html"
    write_atomic(path, "old ü")
    assert path.read_text(encoding="utf-8") == "old ü"
    write_atomic(path, b"\x00new")
    assert path.read_bytes() == b"\x00new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("complete old content")

    def interrupted(src, dst):
        raise KeyboardInterrupt  # e.g. Ctrl-C between writing and renaming

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "x" * 1_000_000)
    assert path.read_text() == "complete old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_plot_files_are_written_whole(tmp_path, monkeypatch):
    from lookingglass import plot

    figure = plot.heatmap([[0.0, 1.0], [2.0, 3.0]], title="t")
    figure.to_html(tmp_path / "a.html")
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError, match="disk"):
        figure.to_html(tmp_path / "b.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html"]
