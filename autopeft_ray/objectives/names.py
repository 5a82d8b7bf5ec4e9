"""Metric names, trial statuses, and the one sign convention for the two objectives.

Searchers, trainables and run folders meet only through the configuration dict
and the names defined here. Objectives are reported in their natural units: the task score
(higher is better) and the fraction of trainable parameters (lower is better).
Code that needs "maximise everything" (BoTorch, hypervolume) converts at one
boundary, :func:`to_maximization`, and back with :func:`from_maximization`.
"""

from __future__ import annotations

import math
from typing import Final

#: The task score on the dev split at the latest evaluation (maximise).
SCORE: Final = "score"
#: The best ``SCORE`` over the evaluations of a trial so far.
BEST_SCORE: Final = "best_score"
#: Parameters trained and kept for deployment / base-model parameters (minimise).
PARAM_FRACTION: Final = "param_fraction"
#: How much training the result reflects, in optimiser steps.
FIDELITY: Final = "fidelity"
#: The fidelity (steps) a trial was asked to reach.
TARGET_FIDELITY: Final = "target_fidelity"
#: Trained and kept parameters, an integer count.
TRAINABLE_PARAMS: Final = "trainable_params"
#: Peak memory of a trial in GiB: on a GPU, ``torch.cuda.max_memory_allocated`` since the
#: trial started; on a CPU, the trial process's peak resident set (``ru_maxrss``).
#: Reported and kept, not an objective: see the README, "Memory".
PEAK_MEMORY: Final = "peak_memory_gib"
#: Prefix added to every task metric in a result (``metric_accuracy``, ...).
METRIC_PREFIX: Final = "metric_"

#: How a trial ended, one vocabulary for searchers, run folders and metrics:
#: it reached its target fidelity; a scheduler stopped it below that; it raised
#: or reported no finite score.
COMPLETED: Final = "completed"
EARLY_STOPPED: Final = "early_stopped"
FAILED: Final = "failed"
STATUSES: Final = (COMPLETED, EARLY_STOPPED, FAILED)

#: The two objectives and their Ray Tune modes, in one place.
OBJECTIVES: Final = (SCORE, PARAM_FRACTION)
MODES: Final = ("max", "min")


def to_maximization(score: float, param_fraction: float) -> tuple[float, float]:
    """Map the natural objectives to a "maximise both" pair: ``(score, -fraction)``."""
    return float(score), -float(param_fraction)


def from_maximization(values: tuple[float, float]) -> tuple[float, float]:
    """Inverse of :func:`to_maximization`."""
    return float(values[0]), -float(values[1])


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def stopped_early(
    fidelity: float | None,
    target_fidelity: float | None = None,
    *,
    max_t: float | None = None,
    largest_fidelity: float | None = None,
    min_fidelity: float | None = None,
) -> bool:
    """Whether a result ended below its target fidelity: the one rule for every status.

    The target is the result's own ``target_fidelity``; else ``max_t`` (the
    scheduler's, given to the searcher or to ``pareto_frame``); else
    ``largest_fidelity``, the largest fidelity any trial of the run reached.
    The searchers, ``pareto_frame`` and the run folder's records all classify
    with it, so a trial stopped at fidelity 1 while others reached 4 counts as
    stopped early everywhere, whether or not it reported a target.

    Args:
        fidelity: the fidelity the result reflects (``None``: not reported).
        target_fidelity: the target the result reported, if any.
        max_t: the target of results that report none.
        largest_fidelity: the target when neither of the above is known.
        min_fidelity: a result at or above this fidelity counts as a full one.

    Returns:
        ``True`` when the result is below its target (and below ``min_fidelity``);
        ``False`` when it reached it, or when no fidelity or no target is known.

    Example:
        >>> stopped_early(1, largest_fidelity=4)
        True
        >>> stopped_early(1, max_t=4, min_fidelity=1)
        False
    """
    fidelity = _finite(fidelity)
    target = next(
        (t for t in map(_finite, (target_fidelity, max_t, largest_fidelity)) if t is not None),
        None,
    )
    if fidelity is None or target is None or fidelity >= target:
        return False
    floor = _finite(min_fidelity)
    return floor is None or fidelity < floor
