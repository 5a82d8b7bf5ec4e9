"""The AutoPEFT search space: configurations, spaces over a model, encodings.

* :mod:`.configuration`: :class:`PeftConfiguration` and the degenerate rule;
* :mod:`.space`: :class:`SearchSpace` (dimensions, validation, sampling,
  neighbours, counting) and the paper's ablated variants;
* :mod:`.encoding`: vectors for the GP, with one canonical encoding of the
  degenerate configurations.
"""

from .configuration import MODULE_NAMES, MODULES, SIZE_KEYS, PeftConfiguration, layer_key
from .space import VARIANTS, Dimension, SearchSpace, size_choices

__all__ = [
    "MODULES",
    "MODULE_NAMES",
    "SIZE_KEYS",
    "VARIANTS",
    "Dimension",
    "PeftConfiguration",
    "SearchSpace",
    "layer_key",
    "size_choices",
]
