"""SAE features page: pick a shipped SAE (or one under the folder named by the
LOOKINGGLASS_EXPLORER_SAES environment variable), then a feature, and see its activation
histogram, the tokens it promotes and suppresses (W_dec @ W_U), its top activating
contexts and interval groups on held-out King James chapters, and download its
dashboard in Neuronpedia's format. Only those folders are read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import streamlit as st

from lookingglass.explorer import state, views

SAES_ENV = "LOOKINGGLASS_EXPLORER_SAES"


def _folders() -> dict[str, Path]:
    from lookingglass.sae.pretrained import shipped_saes

    found = {name: path for name, path in shipped_saes().items()}
    root = os.environ.get(SAES_ENV, "").strip()
    if root and Path(root).is_dir():
        for cfg in sorted(Path(root).glob("*/cfg.json"))[:200]:
            found[f"{cfg.parent.name} ({root})"] = cfg.parent
    return found


def _activations(model, folder: Path, n_tokens: int):
    from lookingglass.sae import load_sae
    from lookingglass.sae.features import FeatureActivations
    from lookingglass.training.corpus import load_corpus
    from lookingglass.training.data import tokenize_and_concatenate

    sae = load_sae(folder)
    docs = load_corpus("kjv").heldout[:40]
    rows = tokenize_and_concatenate(docs, model.tokenizer, 128)[: max(1, n_tokens // 128)]
    return sae, FeatureActivations.from_model(model, sae, rows, batch_size=4)


def render() -> None:
    """Draw the page."""
    st.title("SAE features")
    folders = _folders()
    if not folders:
        st.info(f"No SAEs found. Set {SAES_ENV} to a folder of SAELens SAE folders.")
        return
    name = st.selectbox("SAE", list(folders))
    n_tokens = st.select_slider("Held-out tokens to scan", [1024, 2048, 4096, 8192], value=2048)
    loaded = state.loaded_model()
    with state.guarded():
        cfg = json.loads((folders[name] / "cfg.json").read_text())
        model_name = (cfg.get("metadata") or {}).get("model_name") or cfg.get("model_name")
        if model_name and model_name != state.model_key():
            st.warning(
                f"This SAE was trained on {views.plain(model_name)}; the explorer runs "
                f"{views.plain(state.model_key())} (start it with --model "
                f"{views.plain(model_name)})."
            )
            if cfg.get("d_in") != loaded.model.cfg.d_model:
                return
        key = ("sae_acts", str(folders[name]), n_tokens, state.model_key())
        with st.spinner("Encoding held-out text with the SAE (once)..."):
            sae, acts = state.resource(
                key, lambda: state.with_model(_activations, folders[name], n_tokens)
            )
        _feature(loaded.model, sae, acts)


def _feature(model, sae, acts) -> None:
    from lookingglass.sae.features import (
        feature_contexts,
        feature_dashboard,
        feature_histogram,
        feature_logit_bars,
    )

    density = acts.density()
    alive = int((density > 0).sum())
    st.caption(
        f"{sae.cfg.architecture} SAE on {sae.cfg.hook_name}, d_sae {sae.cfg.d_sae}; "
        f"{acts.n_tokens} tokens scanned, {alive} features fired on them."
    )
    busiest = density.argsort(descending=True)[:10].tolist()
    st.write("Most frequent features: " + ", ".join(f"{f} ({density[f]:.1%})" for f in busiest))
    f = int(st.number_input("Feature", 0, sae.cfg.d_sae - 1, value=busiest[0]))
    st.markdown(
        f"**Feature {f}**: fires on {density[f]:.3%} of tokens, max {acts.max_activation(f):.2f}"
    )
    if density[f] > 0:
        views.show(feature_histogram(acts, f), key="sae_hist")
    views.show(state.with_model(feature_logit_bars, sae, f), key="sae_logits")
    if density[f] > 0:
        views.show(state.with_model(feature_contexts, acts, f), key="sae_contexts")
        dashboard = state.with_model(feature_dashboard, sae, acts, f)
        st.download_button(
            "Neuronpedia JSON for this feature",
            json.dumps(dashboard),
            file_name=f"feature-{f}.json",
            mime="application/json",
        )


if __name__ == "__main__":
    render()
