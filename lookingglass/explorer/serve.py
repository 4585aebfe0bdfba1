"""`python -m lookingglass.explorer.serve run APP [options]`: `streamlit run`, with the
explorer's heavy modules imported and its resources loading before the first visit.

Under a plain `streamlit run`, the first browser session runs the app script, which
imports torch, transformers and the library (about 4 s on two CPU cores) and then loads
the model: the first visitor waits for all of it. Here the server runs in a process that
has already imported them and started `state.prefetch()` (model, head scores, dataset,
mean-ablation reference, snapshots), so the app script finds them in `sys.modules` and
the process-wide resources. `lookingglass explore` starts the server this way.
"""

from __future__ import annotations

import logging
import sys


def main() -> int:
    streamlit_logger = logging.getLogger("streamlit")
    level = streamlit_logger.level
    # `st.cache_data` warns that no runtime exists when decorated functions are imported
    # before the server starts; their caches are created later, under the runtime.
    streamlit_logger.setLevel(logging.ERROR)
    try:
        from lookingglass.explorer import state
    finally:
        streamlit_logger.setLevel(level)
    state.prefetch()

    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
