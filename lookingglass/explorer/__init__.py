"""The explorer: a local web app (Streamlit) for looking inside a model.

    lookingglass explore [--model NAME_OR_PATH] [--port 8501] [--data FILE]
                         [--store EXPERIMENTS.db] [--snapshots FOLDER]

Pages: Prompt, Circuits (OV and QK), Browse examples (ablation), Schematics,
Experiments (a bench store) and Training dynamics (a snapshots folder). Every number a
page shows comes from a function in `compute` (model computations) or `sources` (the
data, store and snapshots the app was pointed at), which use the public analysis API and
import nothing from Streamlit, so they are tested without a browser. The page modules
(`*_page.py`) only lay the numbers out; `state` holds the cached loaders.
"""

DEFAULT_MODEL = "lookingglass-attn2"
# What the app reads, set by `lookingglass explore` (see `state`).
ENV = {
    "model": "LOOKINGGLASS_EXPLORER_MODEL",
    "data": "LOOKINGGLASS_EXPLORER_DATA",
    "store": "LOOKINGGLASS_EXPLORER_STORE",
    "snapshots": "LOOKINGGLASS_EXPLORER_SNAPSHOTS",
}
