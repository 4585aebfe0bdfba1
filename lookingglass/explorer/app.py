"""The explorer's Streamlit entry point: `streamlit run app.py` (what `lookingglass
explore` does). It registers the pages and starts reading the dataset in the background;
each page is a `*_page.py` file next to this one, and what the app reads is set by the
environment (see `state`)."""

from pathlib import Path

import streamlit as st

from lookingglass.explorer import state

HERE = Path(__file__).resolve().parent
PAGES = [
    ("prompt_page.py", "Prompt", "prompt"),
    ("circuits_page.py", "Circuits", "circuits"),
    ("browse_page.py", "Browse examples", "browse"),
    ("schematics_page.py", "Schematics", "schematics"),
    ("experiments_page.py", "Experiments", "experiments"),
    ("dynamics_page.py", "Training dynamics", "dynamics"),
    ("sae_page.py", "SAE features", "sae"),
]

st.set_page_config(page_title="lookingglass explorer", layout="wide")
navigation = st.navigation(
    [
        st.Page(HERE / file, title=title, url_path=url, default=index == 0)
        for index, (file, title, url) in enumerate(PAGES)
    ]
)
state.sync_url()
state.model_picker()
state.prefetch()
try:
    navigation.run()
finally:  # also when a page stops early (st.stop, an error shown)
    state.remember_url()
state.model_sidebar()
