"""`python -m lookingglass.explorer.serve run APP [options]`: `streamlit run`, with the
explorer's heavy modules imported and its resources loading before the first visit.

Under a plain `streamlit run`, the first browser session runs the app script, which
imports torch, transformers and the library (about 4 s on two CPU cores) and then loads
the model: the first visitor waits for all of it. Here the server runs in a process that
has already imported them and started `resources.prefetch()` (model, head scores,
dataset, mean-ablation reference, snapshots), so the app script finds them in
`sys.modules` and the process-wide resources. `lookingglass explore` starts the server
this way.

Only modules without Streamlit caches are imported here: `st.cache_data` checks its
storage when a function is decorated, and before the server exists that logs "No
runtime found, using MemoryCacheStorageManager", once per cached function (the seven
warnings every start used to print; Streamlit's loggers each carry their own level and
do not propagate, so lowering the level of the "streamlit" logger did not hide them).
The pages' modules are imported by the app script, under the runtime.
"""

from __future__ import annotations

import sys


def main() -> int:
    from lookingglass.explorer import resources

    resources.prefetch()

    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
