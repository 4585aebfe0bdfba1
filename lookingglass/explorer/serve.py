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
    # `st.cache_data` warns "No runtime found" once per decorated function imported before
    # the server starts (seven in `state`); their caches are created later, under the
    # runtime. Streamlit gives each of its loggers its own level and handler, so the
    # logger that warns is the one to quiet ("streamlit" above it would not do).
    from streamlit.runtime.caching import cache_data_api

    caching_logger = logging.getLogger(cache_data_api.__name__)
    level = caching_logger.level
    caching_logger.setLevel(logging.ERROR)
    try:
        from lookingglass.explorer import state
    finally:
        caching_logger.setLevel(level)
    state.prefetch()

    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
