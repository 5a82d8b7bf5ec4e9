"""The two objectives: names and sign convention, the parameter cost, Pareto fronts.

* :mod:`.names`: metric names, trial statuses and the rule that sets them
  (:func:`stopped_early`), ``to_maximization``;
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
    PEAK_MEMORY,
    SCORE,
    STATUSES,
    TARGET_FIDELITY,
    TRAINABLE_PARAMS,
    from_maximization,
    stopped_early,
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
    "PEAK_MEMORY",
    "SCORE",
    "STATUSES",
    "TARGET_FIDELITY",
    "TRAINABLE_PARAMS",
    "ParamCost",
    "analytic_param_count",
    "from_maximization",
    "stopped_early",
    "to_maximization",
]
