"""Experiments page: the runs logged in a bench store (`--store FILE`), each run's
arguments, result and plots."""

from __future__ import annotations

import datetime

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
    st.caption(f"Store: {bench.store.url} ({len(rows)} runs)")
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
    st.subheader(f"Run {detail.run_id}: {detail.title}")
    left, right = st.columns(2)
    left.markdown("**Arguments**")
    left.dataframe(
        pd.DataFrame({"name": list(detail.args), "value": list(detail.args.values())}),
        hide_index=True,
        key="run_args",
    )
    right.markdown("**Result**")
    if detail.error:
        right.error(f"The run failed: {detail.error}")
    right.dataframe(
        pd.DataFrame({"field": list(detail.result), "value": list(detail.result.values())}),
        hide_index=True,
        key="run_result",
    )
    for name, media_type in detail.attachments.items():
        data = bench.load_attachment(detail.run_id, name)
        if name.endswith(".plotly.json"):
            views.show(plotly.io.from_json(data.decode()), key=f"plot_{name}")
        elif media_type in ("image/png", "image/svg+xml"):
            st.image(data if media_type == "image/png" else data.decode(), caption=name)
        else:
            st.download_button(f"Download {name}", data, file_name=name, key=f"download_{name}")
    with st.expander("Source of this version"):
        st.code(detail.source, language="python")


if __name__ == "__main__":
    render()
