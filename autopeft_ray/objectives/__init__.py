"""The two objectives: names and sign convention, the parameter cost, Pareto fronts.

* :mod:`.names`: metric names, trial statuses, ``to_maximization``;
* :mod:`.cost`: :class:`ParamCost`, the known cost objective;
* :mod:`.pareto`: fronts and hypervolumes (imports BoTorch: import it by name).
"""

from .cost import ParamCost, analytic_param_count
from .names import (
    BEST_SCORE,
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    FIDELITY,
    METRIC_PREFIX,
    MODES,
    OBJECTIVES,
    PARAM_FRACTION,
    SCORE,
    STATUSES,
    TARGET_FIDELITY,
    TRAINABLE_PARAMS,
    from_maximization,
    to_maximization,
)

__all__ = [
    "BEST_SCORE",
    "COMPLETED",
    "EARLY_STOPPED",
    "FAILED",
    "FIDELITY",
    "METRIC_PREFIX",
    "MODES",
    "OBJECTIVES",
    "PARAM_FRACTION",
    "SCORE",
    "STATUSES",
    "TARGET_FIDELITY",
    "TRAINABLE_PARAMS",
    "ParamCost",
    "analytic_param_count",
    "from_maximization",
    "to_maximization",
]
