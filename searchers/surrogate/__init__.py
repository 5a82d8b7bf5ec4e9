"""BoTorch pieces of the AutoPEFT searcher, one concept per module.

* :mod:`.model`: the padded SAAS GP of the score, the known cost, their model list;
* :mod:`.fit`: fitting the score model (NUTS or MAP);
* :mod:`.fidelity`: the fidelity as a model input, and the model at the target;
* :mod:`.acquisition`: qLogNEHVI;
* :mod:`.optimize`: discrete local search over encodings.
"""

from .acquisition import build_acquisition, load_fused_kernel
from .fidelity import AtTargetFidelity, model_inputs, multi_fidelity_map_model
from .fit import (
    NutsSettings,
    enable_compilation_cache,
    fit_map_score_model,
    fit_score_model,
    map_hyperparameters,
    warm_map_fit,
)
from .model import DTYPE, CanonicalModelList, KnownCost, PaddedSaasGP, build_model
from .optimize import optimize_acquisition, pareto_neighbour_starts

__all__ = [
    "DTYPE",
    "AtTargetFidelity",
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
    "model_inputs",
    "multi_fidelity_map_model",
    "optimize_acquisition",
    "pareto_neighbour_starts",
    "warm_map_fit",
]
