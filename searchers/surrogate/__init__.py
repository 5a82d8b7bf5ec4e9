"""BoTorch pieces of the AutoPEFT searcher, one concept per module.

* :mod:`.model`: the padded SAAS GP of the score, the known cost, their model list;
* :mod:`.fit`: fitting the score model (NUTS or MAP);
* :mod:`.acquisition`: qLogNEHVI;
* :mod:`.optimize`: discrete local search over encodings.
"""

from .acquisition import build_acquisition, load_fused_kernel
from .fit import (
    NutsSettings,
    enable_compilation_cache,
    fit_map_score_model,
    fit_score_model,
    map_hyperparameters,
)
from .model import DTYPE, CanonicalModelList, KnownCost, PaddedSaasGP, build_model
from .optimize import optimize_acquisition, pareto_neighbour_starts

__all__ = [
    "DTYPE",
    "CanonicalModelList",
    "KnownCost",
    "NutsSettings",
    "PaddedSaasGP",
    "build_acquisition",
    "build_model",
    "enable_compilation_cache",
    "fit_map_score_model",
    "fit_score_model",
    "load_fused_kernel",
    "map_hyperparameters",
    "optimize_acquisition",
    "pareto_neighbour_starts",
]
