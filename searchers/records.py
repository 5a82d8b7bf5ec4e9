"""What a searcher remembers about a trial, and how it becomes JSON.

Results from a trial are classified once, when the trial completes, into the
statuses of :mod:`autopeft_ray.objectives` (one vocabulary with the run folder):

* ``completed``: the trial reached its target fidelity (or reported none, or
  reached ``min_fidelity``); its score is fitted by model-based searchers.
* ``early_stopped``: a scheduler (ASHA) stopped it below its target fidelity.
  Its score reflects less training, so it is kept apart and never fitted as if
  it were a full-budget result; the configuration still counts as evaluated and
  is never proposed again.
* ``failed``: the trial raised, or ended without a finite value of the metric.
  The configuration is not pending any more and is not proposed again.

:func:`observations` turns records into what a score model is fitted on,
with early-stopped results, and the earlier rungs of every trial, included at
their fidelity when asked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from autopeft_ray.objectives import (
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    FIDELITY,
    PARAM_FRACTION,
    TARGET_FIDELITY,
    stopped_early,
)
from autopeft_ray.space import PeftConfiguration
from autopeft_ray.validation import finite_number

#: Decades below the target that the model's fidelity input spans: a result at
#: 1/1000 of its target fidelity (or less) has input 0, one at the target 1.
FIDELITY_DECADES = 3.0


def fidelity_input(fidelity: float | None, target: float | None) -> float:
    """A result's fidelity as a model input: ``1 + log10(fidelity / target) / 3`` in [0, 1].

    ASHA's rungs are geometric (grace period times powers of the reduction
    factor), so on this scale they are evenly spaced; the target is 1. A
    result without a fidelity or a target counts as a full one.
    """
    if fidelity is None or target is None or target <= 0:
        return 1.0
    if fidelity <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 + math.log10(fidelity / target) / FIDELITY_DECADES))


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial.

    Attributes:
        trial_id: Ray Tune's trial id (or any unique string).
        config: the configuration as suggested (not its model key).
        status: ``completed``, ``early_stopped`` or ``failed``.
        score: the metric's value in its natural units (``None`` when failed).
        param_fraction: the known cost of ``config`` (``None`` without a cost).
        fidelity: the fidelity the result reflects, if reported.
        target_fidelity: the fidelity the trial was asked to reach, if reported.
        reason: why a trial failed.
        earlier: ``(fidelity, score)`` of results the trial reported before
            its last one, at fidelities a factor :data:`RUNG_SPACING` apart
            (kept by multi-fidelity searchers only, see :func:`thin_rungs`).
    """

    trial_id: str
    config: PeftConfiguration
    status: str
    score: float | None = None
    param_fraction: float | None = None
    fidelity: float | None = None
    target_fidelity: float | None = None
    reason: str | None = None
    earlier: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_reports(
        cls,
        trial_id: str,
        config: PeftConfiguration,
        reported: list[tuple[float, float]],
        target_fidelity: float,
    ) -> TrialRecord:
        """A trial that ended after reporting ``(fidelity, score)`` results in order:
        completed if its last reached ``target_fidelity``, else stopped early, with
        its earlier rungs (:func:`thin_rungs`)."""
        fidelity, score = reported[-1]
        status = EARLY_STOPPED if stopped_early(fidelity, target_fidelity) else COMPLETED
        earlier = thin_rungs(reported, fidelity)
        return cls(trial_id, config, status, score, None, fidelity, target_fidelity, None, earlier)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "config": self.config.to_dict(),
            "status": self.status,
            "score": self.score,
            "param_fraction": self.param_fraction,
            "fidelity": self.fidelity,
            "target_fidelity": self.target_fidelity,
            "reason": self.reason,
            "earlier": [list(pair) for pair in self.earlier],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(
            trial_id=str(data["trial_id"]),
            config=PeftConfiguration.from_dict(data["config"]),
            status=str(data["status"]),
            score=data.get("score"),
            param_fraction=data.get("param_fraction"),
            fidelity=data.get("fidelity"),
            target_fidelity=data.get("target_fidelity"),
            reason=data.get("reason"),
            earlier=tuple((float(f), float(v)) for f, v in data.get("earlier") or ()),
        )


def with_status(records: Iterable[TrialRecord], status: str) -> list[TrialRecord]:
    """The records of ``status`` (``COMPLETED``, ``EARLY_STOPPED`` or ``FAILED``), in order."""
    return [r for r in records if r.status == status]


def keep_fields(result: Mapping[str, Any], metric: str) -> dict[str, float | None]:
    """The numeric fields of a result that a searcher needs (JSON-ready)."""
    kept: dict[str, float | None] = {}
    for key in (metric, FIDELITY, TARGET_FIDELITY, PARAM_FRACTION, "training_iteration"):
        number = finite_number(result.get(key))
        if number is not None:
            kept[key] = number
    if metric in result and metric not in kept:
        kept[metric] = None  # reported but not finite: the trial counts as failed
    return kept


def classify(
    result: Mapping[str, Any] | None,
    metric: str,
    min_fidelity: float | None,
    default_target: float | None = None,
) -> tuple[str, float | None, float | None, float | None, str | None]:
    """``(status, score, fidelity, target_fidelity, reason)`` of a final result.

    ``default_target`` is the target fidelity of a result that reports its
    ``fidelity`` but not its ``target_fidelity`` (the searcher's ``max_t``, or
    the largest fidelity seen); the returned target stays what was reported.
    The rule is :func:`autopeft_ray.objectives.stopped_early`, which
    ``pareto_frame`` and the run folder's records apply too.
    """
    if result is None:
        return FAILED, None, None, None, "no result reported"
    score = finite_number(result.get(metric))
    fidelity = finite_number(result.get(FIDELITY))
    target = finite_number(result.get(TARGET_FIDELITY))
    if score is None:
        reason = f"metric {metric!r} missing or not finite (got {result.get(metric)!r})"
        return FAILED, None, fidelity, target, reason
    early = stopped_early(fidelity, target, max_t=default_target, min_fidelity=min_fidelity)
    return (EARLY_STOPPED if early else COMPLETED), score, fidelity, target, None


def config_in_result(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The trial config Tune puts in results, nested or flattened (``config/<key>``)."""
    if not result:
        return {}
    if isinstance(result.get("config"), Mapping):
        return dict(result["config"])
    return {k.split("/", 1)[1]: v for k, v in result.items() if k.startswith("config/")}


def below_largest_fidelity(
    records: list[TrialRecord], largest: float, min_fidelity: float | None = None
) -> list[TrialRecord]:
    """``records`` with each completed one that reported no target and ended below
    ``largest`` (the largest fidelity seen, the target when none is known) and
    below ``min_fidelity`` marked as stopped early (:func:`stopped_early`)."""
    return [
        dataclasses.replace(r, status=EARLY_STOPPED)
        if r.status == COMPLETED
        and stopped_early(
            r.fidelity, r.target_fidelity, largest_fidelity=largest, min_fidelity=min_fidelity
        )
        else r
        for r in records
    ]


#: What a score model is fitted on: ``(configuration, utility, fidelity input)``.
Observation = tuple[PeftConfiguration, float, float]

#: The factor between the fidelities of the earlier results a trial keeps: ASHA's
#: default reduction factor, so a trial that reports every step keeps its rungs.
RUNG_SPACING = 3.0


def thin_rungs(
    reported: list[tuple[float, float]], final: float
) -> tuple[tuple[float, float], ...]:
    """The ``(fidelity, score)`` results below ``final`` worth fitting, lowest first.

    Going down from the final fidelity, a result is kept if its fidelity is
    at most the last kept one's divided by :data:`RUNG_SPACING` (the last
    score reported at a fidelity counts): a trial that reports every step
    adds a handful of results, not hundreds, and each is far enough from the
    next to tell the model something new.
    """
    latest = dict(reported)
    kept: list[tuple[float, float]] = []
    bound = final / RUNG_SPACING
    for fidelity in sorted(latest, reverse=True):
        if fidelity <= bound:
            kept.append((fidelity, latest[fidelity]))
            bound = fidelity / RUNG_SPACING
    return tuple(reversed(kept))


def one_per_configuration(data: list[Observation]) -> list[Observation]:
    """``data`` with only the last observation of each configuration (its highest rung)."""
    last = {config.model_key(): (config, value, level) for config, value, level in data}
    return list(last.values())


def observations(
    records: list[TrialRecord],
    utility: Callable[[float], float],
    *,
    model_failures: bool = True,
    multi_fidelity: bool = False,
    default_target: float | None = None,
) -> list[Observation]:
    """What the score model is fitted on: ``(configuration, utility, fidelity input)``.

    Completed results always; with ``multi_fidelity`` early-stopped ones too,
    and every trial's :attr:`~TrialRecord.earlier` results before its last,
    each at its :func:`fidelity_input` (its reported target, else
    ``default_target``). Without ``multi_fidelity`` every input is 1.

    With ``model_failures``, a trial that raised (out of memory for a large
    configuration, say) or reported no finite score teaches the model that its
    region is poor: it is fitted at the worst fitted utility minus a tenth of
    their range, at input 1, so the acquisition steers away from regions that
    fail. Failures come last, after the results in the order they ended.
    """
    data: list[Observation] = []
    for r in records:
        fitted = r.status == COMPLETED or (multi_fidelity and r.status == EARLY_STOPPED)
        if not fitted or r.score is None:
            continue
        target = r.target_fidelity if r.target_fidelity is not None else default_target
        if multi_fidelity:
            data.extend(
                (r.config, utility(score), fidelity_input(fidelity, target))
                for fidelity, score in r.earlier
            )
        level = fidelity_input(r.fidelity, target) if multi_fidelity else 1.0
        data.append((r.config, utility(r.score), level))
    if not model_failures or not data:
        return data
    values = [value for _, value, _ in data]
    floor = min(values) - 0.1 * ((max(values) - min(values)) or 1.0)
    return data + [(r.config, floor, 1.0) for r in records if r.status == FAILED]


#: The feasibility model's value of a trial that failed, and of one that ran (its
#: constraint is feasible where the model's value is at most 0, halfway).
FAILED_VALUE, RAN_VALUE = 1.0, -1.0


def feasibility_observations(records: list[TrialRecord]) -> list[Observation]:
    """What the feasibility model is fitted on: ``(configuration, value, 1.0)``, one per
    configuration, the value :data:`FAILED_VALUE` if its trial failed, else :data:`RAN_VALUE`.

    A trial that ran counts whatever its fidelity (stopped early, it still did not
    fail); the last record of a configuration wins.
    """
    last = {
        r.config.model_key(): (r.config, FAILED_VALUE if r.status == FAILED else RAN_VALUE, 1.0)
        for r in records
    }
    return list(last.values())
