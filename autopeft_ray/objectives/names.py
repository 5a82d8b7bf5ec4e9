"""Metric names, trial statuses, and the one sign convention for the two objectives.

Searchers, trainables and run folders meet only through the configuration dict
and the names defined here. Objectives are reported in their natural units: the task score
(higher is better) and the fraction of trainable parameters (lower is better).
Code that needs "maximise everything" (BoTorch, hypervolume) converts at one
boundary, :func:`to_maximization`, and back with :func:`from_maximization`.
"""

from __future__ import annotations

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
