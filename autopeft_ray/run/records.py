"""Trial records: what a run folder keeps of each ended trial, and the Pareto set of them.

A record is one JSON object: the trial id, its status (one of
:data:`autopeft_ray.objectives.STATUSES`), its configuration, the metrics
kept (``KEPT_RESULT_KEYS``, ``metric_*``, ``test_*``), an error file for a
failed trial, and when it ended. :class:`.folder.RunFolder` stores them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from autopeft_ray.config import TRIAL_SETTINGS_KEY
from autopeft_ray.exceptions import RunFolderError, shorten
from autopeft_ray.objectives import (
    BEST_SCORE,
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    FIDELITY,
    PARAM_FRACTION,
    PEAK_MEMORY,
    SCORE,
    TARGET_FIDELITY,
    stopped_early,
)
from autopeft_ray.validation import finite_number

#: Result keys kept in a trial record besides the task metrics (``metric_*``, ``test_*``).
KEPT_RESULT_KEYS = (
    SCORE,
    BEST_SCORE,
    PARAM_FRACTION,
    FIDELITY,
    TARGET_FIDELITY,
    "train_loss",
    "train_samples_per_second",
    "time_total_s",
    "node_ip",
    "node_id",
    "training_iteration",
    "seconds_to_first_step",
    "device",
    "precision",
    "gpu_memory_fraction",
    PEAK_MEMORY,
)
#: Statuses written by earlier versions, read as today's.
_OLD_STATUSES = {"stopped_early": EARLY_STOPPED, "error": FAILED}


def ended_status(result: Mapping[str, Any] | None, max_t: float | None = None) -> str:
    """``completed`` if a result reached its target fidelity, else ``early_stopped``.

    The searchers' rule (:func:`autopeft_ray.objectives.stopped_early`): the target
    is the result's ``target_fidelity``, else ``max_t``.
    """
    result = result or {}
    early = stopped_early(
        finite_number(result.get(FIDELITY)),
        finite_number(result.get(TARGET_FIDELITY)),
        max_t=max_t,
    )
    return EARLY_STOPPED if early else COMPLETED


def trial_record(
    trial_id: str,
    config: Mapping[str, Any],
    result: Mapping[str, Any] | None,
    status: str,
    error: str | None = None,
) -> dict[str, Any]:
    """One line of ``trials.jsonl``: configuration, metrics, fidelity and status."""
    configuration = {k: v for k, v in config.items() if k != TRIAL_SETTINGS_KEY}
    metrics = {
        key: value
        for key, value in (result or {}).items()
        if key in KEPT_RESULT_KEYS or key.startswith(("metric_", "test_"))
    }
    return {
        "trial_id": trial_id,
        "status": status,
        "configuration": configuration,
        "metrics": metrics,
        "error": error,
        "finished_at": time.time(),
    }


def missing_records(
    known: set[str], trials: Any, max_t: float | None = None
) -> list[dict[str, Any]]:
    """Records of the trials Ray Tune's saved state says ended that ``known`` lacks.

    A record can be missing after a crash cut the last line of ``trials.jsonl``
    short, or after a damaged line was deleted. Tune's saved state holds each
    ended trial's configuration and last reported result, which is all a record
    keeps, so the record is rebuilt from it rather than lost.

    Args:
        known: the trial ids the run folder has records of.
        trials: Ray Tune ``Trial`` objects (``ExperimentAnalysis(...).trials``).
        max_t: the target fidelity of results that report none (:func:`ended_status`).
    """
    rebuilt = []
    for trial in trials:
        if trial.trial_id in known:
            continue
        result = trial.last_result or {}
        if trial.status == "ERROR":
            status, error = FAILED, "the trial raised (its record was rebuilt from Tune's state)"
        elif trial.status == "TERMINATED" and result:
            status, error = ended_status(result, max_t), None
        else:
            continue  # never ran, or still to resume: Tune trains it
        record = trial_record(trial.trial_id, dict(trial.config), result, status, error)
        if isinstance(result.get("timestamp"), (int, float)):
            record["finished_at"] = float(result["timestamp"])
        rebuilt.append(record)
    return rebuilt


def objective_point(record: Mapping[str, Any]) -> tuple[float, float]:
    """``(score, param_fraction)`` of a trial record."""
    return float(record["metrics"][SCORE]), float(record["metrics"][PARAM_FRACTION])


def completed_points(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of trials that reached their target fidelity and have both objectives."""
    return [
        r
        for r in records
        if r["status"] == COMPLETED and SCORE in r["metrics"] and PARAM_FRACTION in r["metrics"]
    ]


def pareto_records(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The completed records on the Pareto front, by increasing parameter fraction."""
    from autopeft_ray.objectives.pareto import pareto_mask

    if not done:
        return []
    mask = pareto_mask([objective_point(r) for r in done])
    front = [r for r, keep in zip(done, mask, strict=True) if keep]
    return sorted(front, key=lambda r: r["metrics"][PARAM_FRACTION])


def baseline_point(baseline: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(score, param_fraction)`` of a ``baselines.json`` row (means over seeds); ``None``
    when its training failed."""
    metrics = baseline.get("metrics") or {}
    try:
        return float(metrics[SCORE]["mean"]), float(metrics[PARAM_FRACTION]["mean"])
    except (KeyError, TypeError):
        return None


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` is at least as good as ``b`` in both objectives and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def mark_dominated(
    front: list[dict[str, Any]], baselines: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each record of ``front`` with ``dominated_by``: the baselines that dominate it.

    A baseline dominates a found configuration when it scores at least as well
    with at most its parameter fraction (and is better in one of the two).
    """
    points = [(b["name"], baseline_point(b)) for b in baselines]
    return [
        {
            **r,
            "dominated_by": [
                name for name, p in points if p is not None and _dominates(p, objective_point(r))
            ],
        }
        for r in front
    ]


def preset_comparison(
    done: list[dict[str, Any]], baselines: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The best trained preset against the best found configuration at no more than its fraction.

    The best preset is the highest-scoring baseline other than head-only;
    ``None`` when no preset was trained. ``found`` is the highest-scoring
    completed record with at most the preset's parameter fraction (``None``
    when the search found none that cheap).
    """
    from autopeft_ray.builder import HEAD_ONLY_BASELINE

    presets = [
        (b["name"], p)
        for b in baselines
        if b["name"] != HEAD_ONLY_BASELINE and (p := baseline_point(b)) is not None
    ]
    if not presets:
        return None
    name, (score, fraction) = max(presets, key=lambda item: item[1][0])
    cheaper = [r for r in done if objective_point(r)[1] <= fraction]
    found = max(cheaper, key=lambda r: objective_point(r)[0]) if cheaper else None
    return {"preset": name, "score": score, "param_fraction": fraction, "found": found}


def comparison_line(comparison: dict[str, Any] | None) -> str:
    """One sentence: the best found score at no more than the best preset's fraction, against it."""
    if comparison is None:
        return "No preset was trained beside the search (see --baseline)."
    name, score = comparison["preset"], comparison["score"]
    budget = f"no more than {name}'s fraction ({100 * comparison['param_fraction']:.4f}%)"
    found = comparison["found"]
    if found is None:
        return f"The search found no configuration with {budget}; {name} scores {score:.4f}."
    found_score, found_fraction = objective_point(found)
    verdict = (
        "ahead of" if found_score > score else "tied with" if found_score == score else "behind"
    )
    return (
        f"Best found with {budget}: {found_score:.4f} at {100 * found_fraction:.4f}% "
        f"(trial {found['trial_id']}), {verdict} {name} ({score:.4f}, best preset trained)."
    )


def parse_record(raw: bytes, where: str) -> dict[str, Any]:
    try:
        record = json.loads(raw)
        record["status"] = _OLD_STATUSES.get(record["status"], record["status"])
        record["trial_id"]  # noqa: B018 (required)
    except (ValueError, TypeError, KeyError) as exc:
        raise RunFolderError(
            f"{where} is not a trial record ({type(exc).__name__}: {shorten(str(exc))}). "
            f"Restore it from a copy, or delete it and run `autopeft-ray search --output "
            f"<run folder> --resume`, which rebuilds the record of every trial that ended "
            f"from Ray Tune's saved state."
        ) from None
    return dict(record)


def keep_latest(latest: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    """Keep ``record`` unless its trial already has one that ended later."""
    old = latest.get(record["trial_id"])
    if old is None or record.get("finished_at", 0) >= old.get("finished_at", 0):
        latest[record["trial_id"]] = record
