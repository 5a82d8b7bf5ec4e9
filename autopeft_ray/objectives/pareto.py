"""Pareto fronts and hypervolumes of (score, parameter fraction) points.

The API works in the objectives' natural units: a point is
``(score, param_fraction)`` with the score maximised and the fraction of
trainable parameters minimised. BoTorch's multi-objective utilities assume
"maximise everything"; the conversion happens in one place,
:func:`_to_max_tensor`, through :func:`autopeft_ray.objectives.to_maximization`.

Reference point. The hypervolume is measured against a reference point that
every useful configuration should beat. :data:`DEFAULT_REFERENCE_POINT` is
``(score=0.0, param_fraction=1.0)``: a score of 0 is the floor of accuracy and
F1 and the chance level of MCC and correlations, and a fraction of 1.0 is the
cost of full fine-tuning, so the default is task- and model-independent. For
searching, the fraction bound of the paper (26% of BERT-base's parameters for
RTE) is about the most expensive configuration of its space;
:func:`reference_point_for` computes that bound for any space and cost, and the
searchers use it by default. Points that do not strictly beat the reference in
both objectives contribute nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives.names import (
    FIDELITY,
    PARAM_FRACTION,
    SCORE,
    TARGET_FIDELITY,
    stopped_early,
    to_maximization,
)
from autopeft_ray.space import SIZE_KEYS, PeftConfiguration, SearchSpace

#: ``(score, param_fraction)``: score 0.0 (floor / chance level), fraction 1.0
#: (full fine-tuning). See the module docstring.
DEFAULT_REFERENCE_POINT: tuple[float, float] = (0.0, 1.0)

Points = Sequence[Sequence[float]] | np.ndarray


def _as_points(points: Points, name: str = "points") -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise invalid_value(
            name, array.shape, expected="an n x 2 array of (score, param_fraction) pairs"
        )
    if not np.isfinite(array).all():
        raise invalid_value(
            name,
            array[~np.isfinite(array).all(axis=1)][0].tolist(),
            expected="finite (score, param_fraction) pairs",
            fix="Drop failed trials (NaN scores) before computing fronts.",
        )
    return array


def _as_reference(reference_point: Sequence[float]) -> tuple[float, float]:
    values = tuple(float(v) for v in reference_point)
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise invalid_value(
            "reference_point",
            reference_point,
            expected="a finite (score, param_fraction) pair, e.g. (0.0, 1.0)",
        )
    return values[0], values[1]


def _to_max_tensor(points: np.ndarray) -> torch.Tensor:
    """The one conversion to BoTorch's "maximise both" convention."""
    rows = [to_maximization(score, fraction) for score, fraction in points]
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 2)


def pareto_mask(points: Points) -> np.ndarray:
    """Which points are Pareto-optimal (no other point is at least as good in both).

    Args:
        points: ``n x 2`` array of ``(score, param_fraction)``.

    Returns:
        A boolean array of length ``n``. Duplicated optimal points are all marked.
    """
    array = _as_points(points)
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    mask = is_non_dominated(_to_max_tensor(array), deduplicate=False)
    return mask.numpy().astype(bool)


def hypervolume(
    points: Points, reference_point: Sequence[float] = DEFAULT_REFERENCE_POINT
) -> float:
    """Area dominated by ``points`` and bounded by ``reference_point``.

    Args:
        points: ``n x 2`` array of ``(score, param_fraction)``.
        reference_point: ``(score, param_fraction)``; see the module docstring.

    Returns:
        The hypervolume (0.0 when no point beats the reference in both objectives).
    """
    array = _as_points(points)
    ref = _as_reference(reference_point)
    if len(array) == 0:
        return 0.0
    ref_max = torch.tensor(to_maximization(*ref), dtype=torch.float64)
    partitioning = DominatedPartitioning(ref_point=ref_max, Y=_to_max_tensor(array))
    return float(partitioning.compute_hypervolume().item())


def hypervolume_trace(
    points_in_order: Points, reference_point: Sequence[float] = DEFAULT_REFERENCE_POINT
) -> list[float]:
    """Hypervolume of the first ``k`` points, for ``k = 1 .. n`` (non-decreasing)."""
    array = _as_points(points_in_order, "points_in_order")
    ref = _as_reference(reference_point)
    trace: list[float] = []
    front = np.zeros((0, 2))
    current = 0.0
    for point in array:
        candidate = np.vstack([front, point])
        mask = pareto_mask(candidate)
        # Only a point that enters the front can change the hypervolume.
        if mask[-1]:
            front = candidate[mask]
            current = hypervolume(front, ref)
        trace.append(current)
    return trace


@dataclass(frozen=True)
class FrontMember:
    """One point of a :class:`ParetoFront` and what it came from."""

    score: float
    param_fraction: float
    payload: Any = None


class ParetoFront:
    """An incrementally built set of (score, param_fraction) points and their front.

    Args:
        reference_point: ``(score, param_fraction)`` used by :meth:`hypervolume`.

    Example:
        >>> front = ParetoFront()
        >>> front.add(0.80, 0.02, payload=config)
        >>> front.points  # n x 2, Pareto-optimal points sorted by fraction
    """

    def __init__(self, reference_point: Sequence[float] = DEFAULT_REFERENCE_POINT) -> None:
        self.reference_point = _as_reference(reference_point)
        self._all: list[FrontMember] = []
        self._mask = np.zeros(0, dtype=bool)

    def add(self, score: float, param_fraction: float, payload: Any = None) -> bool:
        """Add one point; returns True when it is on the front after adding."""
        _as_points([[score, param_fraction]], "point")
        self._all.append(FrontMember(float(score), float(param_fraction), payload))
        self._mask = pareto_mask(self.all_points)
        return bool(self._mask[-1])

    def extend(self, items: Iterable[tuple[float, float, Any]]) -> None:
        """Add several ``(score, param_fraction, payload)`` triples."""
        for score, fraction, payload in items:
            _as_points([[score, fraction]], "point")
            self._all.append(FrontMember(float(score), float(fraction), payload))
        self._mask = pareto_mask(self.all_points)

    @property
    def all_points(self) -> np.ndarray:
        """Every point added, ``n x 2``, in insertion order."""
        return np.array([[m.score, m.param_fraction] for m in self._all]).reshape(-1, 2)

    @property
    def members(self) -> list[FrontMember]:
        """The Pareto-optimal members, cheapest first."""
        chosen = [m for m, keep in zip(self._all, self._mask, strict=True) if keep]
        return sorted(chosen, key=lambda m: (m.param_fraction, -m.score))

    @property
    def points(self) -> np.ndarray:
        """The Pareto-optimal points, ``k x 2``, cheapest first."""
        return np.array([[m.score, m.param_fraction] for m in self.members]).reshape(-1, 2)

    def hypervolume(self) -> float:
        return hypervolume(self.points, self.reference_point)

    def __len__(self) -> int:
        return len(self._all)


def largest_configuration(space: SearchSpace) -> PeftConfiguration:
    """Every searched size at its maximum and every layer on."""
    return space.configuration(**{SIZE_KEYS[m]: max(space.choices_of(m)) for m in space.modules})


def reference_point_for(
    space: SearchSpace,
    cost_fn: Callable[[PeftConfiguration], float],
    score: float = DEFAULT_REFERENCE_POINT[0],
) -> tuple[float, float]:
    """``(score, cost of the space's largest configuration)``.

    Assumes the cost grows with module sizes and active layers (true of
    :class:`autopeft_ray.objectives.cost.ParamCost`), so every configuration but the
    largest one can add hypervolume. This plays the role of the paper's 26%
    bound for any model.
    """
    fraction = float(cost_fn(largest_configuration(space)))
    if not math.isfinite(fraction) or fraction <= 0:
        raise invalid_value(
            "cost_fn(largest configuration)",
            fraction,
            expected="a positive finite parameter fraction",
            fix="Pass a cost function such as autopeft_ray.objectives.cost.ParamCost.",
        )
    return float(score), fraction


def pareto_frame(
    results: Any,
    *,
    metric: str = SCORE,
    mode: str = "max",
    cost: str = PARAM_FRACTION,
    completed_only: bool = True,
    max_t: float | None = None,
) -> Any:
    """The Pareto set of a Ray Tune run as a pandas DataFrame, cheapest first.

    Tune takes one metric (``TuneConfig(metric="score", mode="max")``); the
    second objective is the parameter fraction every trial reports. This
    returns the trials no other trial beats on both, with their
    configurations (``config/...`` columns), from any searcher's run:
    :class:`~autopeft_ray.searchers.AutoPEFTSearcher`, random search or Ray's
    ``OptunaSearch``.

    Args:
        results: a ``ResultGrid`` (``Tuner.fit()``), an ``ExperimentAnalysis``
            (``tune.run()``), or a DataFrame with one row per trial.
        metric, mode: the score column and its direction.
        cost: the cost column (minimised).
        completed_only: drop trials that stopped below their target fidelity,
            whose scores reflect less training. The rule is the searchers'
            (:func:`autopeft_ray.objectives.stopped_early`): the target is a row's
            ``target_fidelity``, else ``max_t``, else the largest ``fidelity`` of
            the frame.
        max_t: the target fidelity of rows without ``target_fidelity`` (your
            scheduler's ``max_t``, as given to the searcher).

    Example:
        >>> results = tuner.fit()
        >>> pareto_frame(results)[["score", "param_fraction", "config/sa_size"]]
        >>> results.get_best_result(metric="score", mode="max")  # the single best
    """
    import pandas as pd

    if isinstance(results, pd.DataFrame):
        frame = results
    elif hasattr(results, "get_dataframe"):  # ResultGrid
        frame = results.get_dataframe()
    elif hasattr(results, "dataframe"):  # ExperimentAnalysis
        frame = results.dataframe()
    else:
        raise invalid_value(
            "results",
            type(results).__name__,
            expected="a ResultGrid, an ExperimentAnalysis or a pandas DataFrame",
        )
    if mode not in ("max", "min"):
        raise invalid_value("mode", mode, valid=("max", "min"))
    if max_t is not None and not (
        isinstance(max_t, (int, float)) and not isinstance(max_t, bool) and max_t > 0
    ):
        raise invalid_value(
            "max_t", max_t, expected="a positive fidelity (your scheduler's max_t) or None"
        )
    missing = [c for c in (metric, cost) if c not in frame.columns]
    if missing:
        raise invalid_value(
            "results",
            sorted(frame.columns)[:20],
            expected=f"columns {metric!r} and {cost!r} (did every trial report both?)",
        )
    rows = frame[
        pd.to_numeric(frame[metric], errors="coerce").notna()
        & pd.to_numeric(frame[cost], errors="coerce").notna()
    ]
    rows = rows[np.isfinite(rows[metric].astype(float)) & np.isfinite(rows[cost].astype(float))]
    if completed_only and FIDELITY in frame.columns:
        fidelity = pd.to_numeric(frame[FIDELITY], errors="coerce")
        largest = fidelity.max() if fidelity.notna().any() else None
        reported = (
            pd.to_numeric(frame[TARGET_FIDELITY], errors="coerce")
            if TARGET_FIDELITY in frame.columns
            else pd.Series(np.nan, index=frame.index)
        )
        early = [
            stopped_early(
                None if pd.isna(f) else float(f),
                None if pd.isna(t) else float(t),
                max_t=max_t,
                largest_fidelity=None if largest is None else float(largest),
            )
            for f, t in zip(fidelity.loc[rows.index], reported.loc[rows.index], strict=True)
        ]
        rows = rows[~np.asarray(early, dtype=bool)]
    if rows.empty:
        return rows
    sign = 1.0 if mode == "max" else -1.0
    points = np.column_stack([sign * rows[metric].astype(float), rows[cost].astype(float)])
    return rows[pareto_mask(points)].sort_values([cost, metric], ascending=[True, mode != "max"])
