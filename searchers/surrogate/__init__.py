"""BoTorch pieces of the AutoPEFT searcher, one concept per module.

* :mod:`.model`: the padded SAAS GP of the score, the known cost, their model list;
* :mod:`.fit`: fitting the score model (NUTS or MAP);
* :mod:`.inputs`: the model's inputs (encoding, known cost, fidelity) and their wrapper;
* :mod:`.fidelity`: the multi-fidelity model, and the model at the target fidelity;
* :mod:`.feasibility`: where trials fail, the constraint of the acquisition;
* :mod:`.acquisition`: qLogNEHVI;
* :mod:`.optimize`: discrete local search over encodings.
"""

from .acquisition import build_acquisition, load_fused_kernel
from .feasibility import (
    FeasibilityInputs,
    failure_constraint,
    fit_feasibility_model,
)
from .fidelity import AtTargetFidelity, multi_fidelity_map_model, on_encodings
from .fit import (
    NutsSettings,
    SurrogateSettings,
    enable_compilation_cache,
    fit_map_score_model,
    fit_score_model,
    map_hyperparameters,
    warm_map_fit,
)
from .inputs import (
    AppendInputs,
    CostInput,
    OnInputs,
    model_inputs,
)
from .model import DTYPE, CanonicalModelList, KnownCost, PaddedSaasGP, build_model
from .optimize import optimize_acquisition, pareto_neighbour_starts

__all__ = [
    "DTYPE",
    "AppendInputs",
    "AtTargetFidelity",
    "CanonicalModelList",
    "CostInput",
    "FeasibilityInputs",
    "KnownCost",
    "NutsSettings",
    "OnInputs",
    "PaddedSaasGP",
    "SurrogateSettings",
    "build_acquisition",
    "build_model",
    "enable_compilation_cache",
    "failure_constraint",
    "fit_feasibility_model",
    "fit_map_score_model",
    "fit_score_model",
    "load_fused_kernel",
    "map_hyperparameters",
    "model_inputs",
    "multi_fidelity_map_model",
    "on_encodings",
    "optimize_acquisition",
    "pareto_neighbour_starts",
    "warm_map_fit",
]
