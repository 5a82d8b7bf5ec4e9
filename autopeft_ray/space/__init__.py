"""The AutoPEFT search space: configurations, spaces over a model, encodings.

* :mod:`.configuration`: :class:`PeftConfiguration` and the degenerate rule;
* :mod:`.space`: :class:`SearchSpace` (dimensions, validation, sampling,
  neighbours, counting) and the paper's ablated variants;
* :mod:`.encoding`: vectors for the GP, with one canonical encoding of the
  degenerate configurations;
* :mod:`.support`: each module as an ``adapters`` configuration, and the
  modules a model family cannot build (fixed at 0 in its spaces).
"""

from .configuration import MODULE_NAMES, MODULES, SIZE_KEYS, PeftConfiguration, layer_key
from .space import (
    MAX_LORA_RANK,
    VARIANTS,
    WIDEST_VARIANT,
    Dimension,
    SearchSpace,
    module_choices,
    size_choices,
)

__all__ = [
    "MAX_LORA_RANK",
    "MODULES",
    "MODULE_NAMES",
    "SIZE_KEYS",
    "VARIANTS",
    "WIDEST_VARIANT",
    "Dimension",
    "PeftConfiguration",
    "SearchSpace",
    "layer_key",
    "module_choices",
    "size_choices",
]
