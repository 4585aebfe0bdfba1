"""Experiments page: the runs logged in a bench store (`--store FILE`), each run's
arguments, result and plots.

Everything shown comes from the store, which may hold anything: text is escaped
(`views.plain`) where Streamlit would render Markdown, figures lose remote URLs, and an
SVG is drawn as an image (which loads nothing else), never as a path or a URL.
"""

from __future__ import annotations

import base64
import datetime
import json

import pandas as pd
import plotly.io
import streamlit as st

from lookingglass.explorer import sources, state, views


def render() -> None:
    """Draw the page."""
    st.title("Experiments")
    path = state.setting("store")
    if path is None:
        st.info(
            "No experiment store given. Start the explorer with --store EXPERIMENTS.db "
            "(the file a `lookingglass.bench.Bench` logs to) to browse its runs here."
        )
        return
    with state.guarded():
        bench = sources.open_bench(path)
        try:
            _runs(bench)
        finally:
            bench.close()


def _runs(bench) -> None:
    rows = sources.run_rows(bench)
    st.caption(f"Store: {views.plain(bench.store.url)} ({len(rows)} runs)")
    if not rows:
        st.info("The store holds no runs yet.")
        return
    table = pd.DataFrame(
        {
            "run": [r.run_id for r in rows],
            "experiment": [r.name for r in rows],
            "version": [r.version for r in rows],
            "status": [r.status for r in rows],
            "started": [
                datetime.datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S")
                for r in rows
            ],
            "seconds": [None if r.duration is None else round(r.duration, 3) for r in rows],
            "model": [r.model for r in rows],
            "plots": [", ".join(r.plots) for r in rows],
        }
    )
    st.dataframe(table, hide_index=True, key="runs")
    run_id = st.selectbox(
        "Run",
        [r.run_id for r in rows],
        key="run",
        format_func=lambda i: next(f"{i}: {r.name}@{r.version}" for r in rows if r.run_id == i),
    )
    detail = sources.run_detail(bench, run_id)
    st.subheader(f"Run {detail.run_id}: {views.plain(detail.title)}")
    left, right = st.columns(2)
    left.markdown("**Arguments**")
    left.dataframe(
        pd.DataFrame({"name": list(detail.args), "value": list(detail.args.values())}),
        hide_index=True,
        key="run_args",
    )
    right.markdown("**Result**")
    if detail.error:
        right.error(f"The run failed: {views.plain(detail.error)}")
    right.dataframe(
        pd.DataFrame({"field": list(detail.result), "value": list(detail.result.values())}),
        hide_index=True,
        key="run_result",
    )
    for name, media_type in detail.attachments.items():
        data = bench.load_attachment(detail.run_id, name)
        if name.endswith(".plotly.json"):
            figure = views.without_remote_urls(json.loads(data.decode()))
            views.show(plotly.io.from_json(json.dumps(figure)), key=f"plot_{name}")
        elif media_type in ("image/png", "image/svg+xml"):
            image = data
            if media_type == "image/svg+xml":  # a data URL: never read as a path or URL
                image = "data:image/svg+xml;base64," + base64.b64encode(data).decode()
            st.image(image, caption=views.plain(name))
        else:
            st.download_button(
                f"Download {views.plain(name)}", data, file_name=name, key=f"download_{name}"
            )
    with st.expander("Source of this version"):
        st.code(detail.source, language="python")


if __name__ == "__main__":
    render()
