"""TransformerLens's module path `transformer_lens.ActivationCache`:
`from lookingglass.ActivationCache import ActivationCache` gives our class
(`lookingglass.cache.ActivationCache`). As in TransformerLens, the package attribute
`lookingglass.ActivationCache` is the class itself."""

from lookingglass.cache import ActivationCache

__all__ = ["ActivationCache"]
