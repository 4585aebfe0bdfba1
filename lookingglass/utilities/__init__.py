"""TransformerLens 3.9's newer name for `utils` (`transformer_lens.utilities`): the same
functions as `lookingglass.utils`."""

from typing import Any

from lookingglass import utils
from lookingglass.utils import *  # noqa: F403
from lookingglass.utils import __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    return getattr(utils, name)  # the names utils refuses, refused the same way
