"""Multi-objective ASHA: early stopping that does not kill every cheap configuration.

Ray's ASHA promotes the top ``1 / reduction_factor`` of trials at each rung by
one metric. For AutoPEFT that rule would stop every small configuration,
whose score is lower by design. ``MultiObjectiveASHA`` keeps Ray's
asynchronous rungs and brackets and replaces the rung decision by
non-dominated sorting of ``(score, param_fraction)`` (as in MO-ASHA,
Schmucker et al. 2021): a trial reaching a rung continues when it is among
the best ``ceil(n / reduction_factor)`` of the ``n`` trials recorded at that
rung, ranked by Pareto front (NSGA-II sorting) and, within the front that
straddles the cut, by crowding distance (MO-ASHA uses an epsilon-net there;
crowding distance serves the same purpose: keep the front spread out).

``hyperband`` here means several asynchronous brackets (Ray's ASHA with
``brackets > 1``), each with the same multi-objective rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Pareto front index of each row of ``points`` (``n x m``, all maximised), 0 = best."""
    import torch
    from botorch.utils.multi_objective.pareto import is_non_dominated

    ranks = np.full(len(points), -1)
    remaining = np.arange(len(points))
    front = 0
    while remaining.size:
        mask = is_non_dominated(torch.as_tensor(points[remaining], dtype=torch.double)).numpy()
        ranks[remaining[mask]] = front
        remaining = remaining[~mask]
        front += 1
    return ranks


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row (``n x m``); boundary points get ``inf``."""
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for j in range(m):
        order = np.argsort(points[:, j])
        span = points[order[-1], j] - points[order[0], j]
        distance[order[0]] = distance[order[-1]] = math.inf
        if span > 0:
            distance[order[1:-1]] += (points[order[2:], j] - points[order[:-2], j]) / span
    return distance


def survives(
    candidate: tuple[float, float], recorded: list[tuple[float, float]], rf: float
) -> bool:
    """Whether ``candidate`` is in the top ``ceil(n / rf)`` of ``recorded + [candidate]``."""
    if not recorded:
        return True
    points = np.array([*recorded, candidate], dtype=float)
    keep = math.ceil(len(points) / rf)
    ranks = nondominated_ranks(points)
    crowd = np.zeros(len(points))
    for front in np.unique(ranks):
        members = np.flatnonzero(ranks == front)
        crowd[members] = crowding_distance(points[members])
    candidate_index = len(points) - 1
    # Ties go to the candidate, as in Ray's ASHA (stopped only when strictly below the cut).
    order = sorted(range(len(points)), key=lambda i: (ranks[i], -crowd[i], i != candidate_index))
    return candidate_index in order[:keep]


class _ParetoBracket(_Bracket):
    """One ASHA bracket whose rungs record ``(score, -fraction)`` pairs."""

    def on_result(self, trial: Any, cur_iter: int, cur_rew: Any) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self._rungs:
            if cur_iter >= milestone and trial.trial_id in recorded and not self._stop_last_trials:
                break
            if cur_iter < milestone or trial.trial_id in recorded:
                continue
            if not survives(cur_rew, list(recorded.values()), self.rf):
                action = TrialScheduler.STOP
            recorded[trial.trial_id] = cur_rew
            break
        return action

    def debug_str(self) -> str:
        rungs = ", ".join(f"{len(r)} trials at {m:g}" for m, r in self._rungs)
        return f"Pareto bracket: {rungs}"


class MultiObjectiveASHA(AsyncHyperBandScheduler):
    """ASHA whose rungs promote by non-dominated sorting of score and parameter fraction.

    Args:
        time_attr: the fidelity attribute; defaults to the optimiser steps reported
            by the trainables (``autopeft_ray.objectives.FIDELITY``).
        metric, mode: the score metric and its mode. Leave them ``None`` when
            ``TuneConfig(metric="score", mode="max")`` sets them (Ray refuses both).
        cost_metric: the second objective, always minimised.
        max_t, grace_period, reduction_factor, brackets: as in Ray's ASHA.
    """

    def __init__(
        self,
        time_attr: str = FIDELITY,
        metric: str | None = None,
        mode: str | None = None,
        cost_metric: str = PARAM_FRACTION,
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 3,
        brackets: int = 1,
        stop_last_trials: bool = True,
    ) -> None:
        # Validate here: Ray's own checks are bare asserts.
        if not max_t > 0:
            raise invalid_value("max_t", max_t, expected="a positive number of fidelity units")
        if not 0 < grace_period <= max_t:
            raise invalid_value("grace_period", grace_period, expected=f"in (0, max_t={max_t}]")
        if not reduction_factor > 1:
            raise invalid_value("reduction_factor", reduction_factor, expected="a number > 1")
        if not (isinstance(brackets, int) and brackets > 0):
            raise invalid_value("brackets", brackets, expected="a positive integer")
        if mode not in (None, "max", "min"):
            raise invalid_value("mode", mode, valid=["max", "min"])
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            brackets=brackets,
            stop_last_trials=stop_last_trials,
        )
        self._cost_metric = cost_metric
        self._brackets = [
            _ParetoBracket(grace_period, max_t, reduction_factor, s, stop_last_trials)
            for s in range(brackets)
        ]

    def _point(self, result: dict[str, Any]) -> tuple[float, float] | None:
        if self._metric not in result or self._cost_metric not in result:
            return None
        return float(self._metric_op * result[self._metric]), -float(result[self._cost_metric])

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        point = self._point(result)
        if self._time_attr not in result or point is None:
            return TrialScheduler.CONTINUE
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            bracket = self._trial_info[trial.trial_id]
            action = bracket.on_result(trial, result[self._time_attr], point)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        point = self._point(result or {})
        bracket = self._trial_info.pop(trial.trial_id, None)
        if bracket is not None and point is not None and self._time_attr in result:
            bracket.on_result(trial, result[self._time_attr], point)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        lines = [f"Using multi-objective ASHA: num_stopped={self._num_stopped}"]
        return "\n".join(lines + [b.debug_str() for b in self._brackets])
