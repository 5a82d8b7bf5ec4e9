"""Bookkeeping shared by the AutoPEFT searchers (Ray Tune ``Searcher`` contract).

Tune never tells a searcher which trials are running, so the base class tracks
``trial_id -> configuration`` itself, classifies every finished trial (see
:mod:`.records`), guarantees that no configuration (compared by
:meth:`PeftConfiguration.canonical`) is suggested twice, merges
``fixed_config`` into every trial config, and saves its whole state as JSON
(:class:`.state.JsonState`).
Subclasses implement :meth:`PeftSearcherBase._propose`.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ray.tune.search import Searcher

from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.objectives import (
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    FIDELITY,
    PARAM_FRACTION,
    SCORE,
    TARGET_FIDELITY,
)
from autopeft_ray.objectives.pareto import ParetoFront
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.validation import check_int, check_number, finite_number

from .records import (
    TrialRecord,
    below_largest_fidelity,
    classify,
    config_in_result,
    keep_fields,
)
from .search_properties import check_param_space, parse_metric
from .state import JsonState
from .validation import check_candidates, check_fixed_config, check_points

logger = logging.getLogger(__name__)

#: Below this many configurations, an exhausted random sampler enumerates the rest.
_ENUMERATE_LIMIT = 1 << 18
#: A reported ``param_fraction`` within this relative distance of ``cost_fn``'s agrees
#: with it: a fraction rounded to three significant digits still does.
FRACTION_TOLERANCE = 1e-2


class PeftSearcherBase(JsonState, Searcher):
    """Common arguments, trial tracking and JSON state of the AutoPEFT searchers.

    Args:
        space: the search space.
        cost_fn: ``configuration -> parameter fraction`` (e.g.
            :class:`autopeft_ray.objectives.cost.ParamCost`); the known second objective.
            Its value is the fraction the searcher records and optimises, also when
            the trainable reports its own ``param_fraction`` (a disagreement beyond
            rounding is logged once, naming both values); without ``cost_fn`` the
            reported one is used.
        metric: the result key of the score (Tune's ``TuneConfig(metric=...)``
            overrides it). The searcher's own constructor also takes the pair
            ``["score", "param_fraction"]`` with ``mode=["max", "min"]``; Tune's
            ``TuneConfig`` does not (it takes one metric).
        mode: ``"max"`` or ``"min"`` for ``metric``.
        seed: seeds every random choice; ``None`` draws one (saved in the state).
        fixed_config: settings merged into every trial config (model, task,
            epochs, ...); must not contain the searched keys.
        max_concurrent: ``suggest`` returns ``None`` while this many trials run.
        points_to_evaluate: configurations (dicts or ``PeftConfiguration``)
            suggested first; they count towards the initial design.
        min_fidelity: results of early-stopped trials at or above this fidelity
            are fitted too; ``None`` fits only trials that reached their target.
        max_t: the target fidelity of trials whose results report ``fidelity``
            but not ``target_fidelity`` (the ``max_t`` of Ray's ``ASHAScheduler``
            with ``time_attr="fidelity"``). Without it, such trials are measured
            against the largest fidelity seen so far, with a warning, and a trial
            that ended below it counts as stopped early, not as a full result.
        candidates: search only among these configurations (dicts or
            ``PeftConfiguration``; Syne Tune's ``restrict_configurations``): random
            draws and model-based proposals are taken from them, and the search
            finishes when every one was suggested. ``points_to_evaluate`` must be
            among them. ``None`` searches the whole space.

    Multi-objective, the Ray way: Tune's ``TuneConfig`` and its schedulers take
    one metric, so pass ``metric="score", mode="max"`` there (it is also what
    ``results.get_best_result(metric="score", mode="max")`` ranks by). The
    searcher treats ``param_fraction`` as the second, known objective; the
    Pareto set of a ``ResultGrid`` is
    :func:`autopeft_ray.objectives.pareto.pareto_frame`.
    """

    #: Whether a reported ``param_fraction`` was found to disagree with ``cost_fn``'s
    #: (a class default too, for searchers pickled before it existed).
    _warned_fraction = False

    def __init__(
        self,
        space: SearchSpace,
        cost_fn: Callable[[PeftConfiguration], float] | None = None,
        metric: str = SCORE,
        mode: str = "max",
        seed: int | None = None,
        fixed_config: Mapping[str, Any] | None = None,
        max_concurrent: int | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any] | PeftConfiguration] | None = None,
        min_fidelity: float | None = None,
        max_t: float | None = None,
        candidates: Sequence[Mapping[str, Any] | PeftConfiguration] | None = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise invalid_value(
                "space",
                type(space).__name__,
                expected="an autopeft_ray.SearchSpace",
                fix="Build one with SearchSpace.from_model_config(model_name).",
            )
        if cost_fn is not None and not callable(cost_fn):
            raise invalid_value(
                "cost_fn", cost_fn, expected="a callable configuration -> parameter fraction"
            )
        self.space = space
        self.cost_fn = cost_fn
        metric_name, metric_mode = parse_metric(metric, mode)
        super().__init__(metric=None, mode=None)
        self._metric: str = metric_name
        self._mode: str = metric_mode
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        self.seed = check_int("seed", seed, minimum=0)
        self.fixed_config = check_fixed_config(fixed_config, self._peft_keys())
        self.max_concurrent = (
            None if max_concurrent is None else check_int("max_concurrent", max_concurrent)
        )
        if min_fidelity is not None and finite_number(min_fidelity) is None:
            raise invalid_value("min_fidelity", min_fidelity, expected="a finite number or None")
        self.min_fidelity = None if min_fidelity is None else float(min_fidelity)
        self.max_t = None if max_t is None else check_number("max_t", max_t, low=0)
        #: The largest fidelity any result reported (the target when none is known).
        self.max_fidelity_seen: float | None = None
        self._warned_target = False
        self._warned_fraction = False
        self._points_to_evaluate = check_points(points_to_evaluate, self.space)
        self._candidates = check_candidates(candidates, self.space)
        self._check_points_are_candidates()
        self._rng = random.Random(self.seed)
        self._pending: dict[str, PeftConfiguration] = {}
        self._last_results: dict[str, dict[str, float | None]] = {}
        self.records: list[TrialRecord] = []
        self._seen: set[PeftConfiguration] = set()
        self.num_suggested = 0
        self.timings: list[dict[str, Any]] = []

    def _peft_keys(self) -> list[str]:
        return self.space.keys()

    @property
    def candidates(self) -> list[PeftConfiguration] | None:
        """The configurations this search is restricted to (``None``: the whole space)."""
        return None if self._candidates is None else list(self._candidates)

    @property
    def num_distinct(self) -> int:
        """Distinct models this searcher may suggest: its candidates, or the space's."""
        return self.space.num_distinct if self._candidates is None else len(self._candidates)

    def _check_points_are_candidates(self) -> None:
        if self._candidates is None:
            return
        allowed = {c.canonical() for c in self._candidates}
        for i, config in enumerate(self._points_to_evaluate):
            if config.canonical() not in allowed:
                raise invalid_value(
                    f"points_to_evaluate[{i}]",
                    config.describe(),
                    expected="one of `candidates`",
                    fix="Add it to candidates, or leave it out of points_to_evaluate.",
                )

    # -- Ray Tune contract ---------------------------------------------------
    def set_search_properties(
        self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any
    ) -> bool:
        """Accept Tune's metric/mode (``None``, a name, or a list with ``param_fraction``)."""
        if metric is not None or mode is not None:
            if mode is None and not isinstance(metric, list):
                mode = self._mode  # a new metric name keeps the current direction
            name, direction = parse_metric(self._metric if metric is None else metric, mode)
            if self.records and (name, direction) != (self._metric, self._mode):
                raise ConfigurationError(
                    f"The searcher already holds results for metric {self._metric!r} "
                    f"({self._mode}); it cannot switch to {name!r} ({direction})."
                )
            self._metric, self._mode = name, direction
        if config:
            narrowing = check_param_space(config, self.space, self.fixed_config)
            if narrowing:
                self._narrow(narrowing)
        return True

    def _narrow(self, narrowing: Mapping[str, Sequence[int]]) -> None:
        """Restrict the space to what Tune's ``param_space`` allows (before any trial)."""
        if self.records or self._pending:
            raise ConfigurationError(
                f"`param_space` narrows {sorted(narrowing)}, but this searcher has already "
                f"suggested configurations. Narrow the space before the search starts."
            )
        narrowed = self.space.narrow(narrowing)
        points = check_points(self._points_to_evaluate, narrowed)  # must lie inside
        if self._candidates is not None:
            inside = [c for c in self._candidates if _member(narrowed, c)]
            if not inside:
                raise invalid_value(
                    "param_space",
                    dict(narrowed.narrowed),
                    expected="a narrowing that keeps some of `candidates`",
                    fix="None of the candidates lies in the narrowed space.",
                )
            self._candidates = inside
        logger.info("Search space narrowed by param_space: %s", dict(narrowed.narrowed))
        self.space, self._points_to_evaluate = narrowed, points
        self._space_changed()

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = check_int("max_concurrent", max_concurrent)
        return True

    # Ray annotates ``Optional[Dict]`` but documents ``Searcher.FINISHED`` (a str).
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        """A flat trial config, ``None`` (try later) or ``Searcher.FINISHED``."""
        if trial_id in self._pending:
            return self._trial_config(self._pending[trial_id])
        if self.max_concurrent is not None and len(self._pending) >= self.max_concurrent:
            return None
        if len(self._seen) >= self.num_distinct:
            return Searcher.FINISHED
        config = self._next_point_to_evaluate() or self._propose()
        if config is None:
            return None
        if config.canonical() in self._seen:
            # Subclasses must not re-propose; guard the contract anyway.
            logger.warning("Proposal %s was seen before; sampling instead.", config.describe())
            config = self._random_unseen()
            if config is None:
                return Searcher.FINISHED
        self._pending[trial_id] = config
        self._seen.add(config.canonical())
        self.num_suggested += 1
        return self._trial_config(config)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if result and (trial_id in self._pending or self._failed_record(trial_id)):
            self._last_results[trial_id] = keep_fields(result, self._metric)
            self._see_fidelity(result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        config = self._pending.pop(trial_id, None)
        last = self._last_results.pop(trial_id, None)
        if config is None:
            # Tune restarts errored trials (Tuner.restore(restart_errored=True))
            # under their old id without asking for a suggestion.
            config = self._retried_config(trial_id, result)
            if config is None:
                logger.warning("on_trial_complete for unknown trial %r ignored.", trial_id)
                return
        fraction = None if self.cost_fn is None else float(self.cost_fn(config))
        if error:
            fidelity = None if last is None else last.get(FIDELITY)
            record = TrialRecord(trial_id, config, FAILED, None, fraction, fidelity, None, "error")
        else:
            final = result if result else last
            self._see_fidelity(final)
            status, score, fidelity, target, reason = classify(
                final, self._metric, self.min_fidelity, self._default_target(final)
            )
            reported = None if final is None else finite_number(final.get(PARAM_FRACTION))
            if fraction is None:
                fraction = reported
            elif reported is not None:
                self._check_reported_fraction(trial_id, config, reported, fraction)
            record = TrialRecord(
                trial_id, config, status, score, fraction, fidelity, target, reason
            )
        self.records.append(record)
        self._reclassify()
        if record.status == EARLY_STOPPED:
            self.note_early_stopping()

    def note_early_stopping(self) -> None:
        """Say what is fitted of trials a scheduler stops early (model-based searchers do,
        once); called at the start of a search whose scheduler stops trials."""

    def _check_reported_fraction(
        self, trial_id: str, config: PeftConfiguration, reported: float, computed: float
    ) -> None:
        """Log once when a trainable's own ``param_fraction`` disagrees with ``cost_fn``'s."""
        if self._warned_fraction or math.isclose(
            reported, computed, rel_tol=FRACTION_TOLERANCE, abs_tol=1e-12
        ):
            return
        self._warned_fraction = True
        logger.warning(
            "Trial %s reported %s=%.6g, but cost_fn gives %.6g for its configuration (%s). "
            "The searcher records and optimises cost_fn's value and ignores the reported one "
            "(said once). Make the two agree: pass the cost_fn that computes what your "
            "trainable reports, or report the fraction of the base model's parameters "
            "that train (autopeft_ray.objectives.ParamCost.from_model(model)).",
            trial_id,
            PARAM_FRACTION,
            reported,
            computed,
            config.describe(),
        )

    # -- fidelity ----------------------------------------------------------------
    def _see_fidelity(self, result: Mapping[str, Any] | None) -> None:
        fidelity = finite_number((result or {}).get(FIDELITY))
        if fidelity is not None and (self.max_fidelity_seen or -math.inf) < fidelity:
            self.max_fidelity_seen = fidelity

    def _default_target(self, result: Mapping[str, Any] | None) -> float | None:
        """The target of a result that reports a fidelity but no target (warned once)."""
        result = result or {}
        if FIDELITY not in result or finite_number(result.get(TARGET_FIDELITY)) is not None:
            return None
        target = self.max_t if self.max_t is not None else self.max_fidelity_seen
        if not self._warned_target:
            self._warned_target = True
            source = (
                f"max_t={self.max_t:g}"
                if self.max_t is not None
                else f"the largest fidelity seen so far ({target:g}), rising as trials go further"
            )
            logger.warning(
                "Results report %r but not %r: the searcher takes the target fidelity to "
                "be %s, and fits a trial that ended below it as stopped early, not as a full "
                "result. Pass max_t= to the searcher (your scheduler's max_t), or report %r.",
                FIDELITY,
                TARGET_FIDELITY,
                source,
                TARGET_FIDELITY,
            )
        return target

    def _reclassify(self) -> None:
        if self.max_t is None and self.max_fidelity_seen is not None:
            self.records = below_largest_fidelity(
                self.records, self.max_fidelity_seen, self.min_fidelity
            )

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Record a configuration evaluated outside this searcher (Tune's API)."""
        config = self.space.from_trial_config(parameters)
        if config.canonical() in self._seen:
            raise invalid_value(
                "parameters", config.describe(), expected="a configuration not yet evaluated"
            )
        trial_id = f"external-{len(self.records)}"
        self._pending[trial_id] = config
        self._seen.add(config.canonical())
        if error:
            self.on_trial_complete(trial_id, None, error=True)
        else:
            result: dict[str, Any] = {self._metric: value}
            if pruned:  # below its target fidelity, whatever the scale
                result.update(fidelity=0.0, target_fidelity=1.0)
            self.on_trial_complete(trial_id, result)

    def _failed_record(self, trial_id: str) -> TrialRecord | None:
        return next(
            (r for r in self.records if r.trial_id == trial_id and r.status == FAILED), None
        )

    def _retried_config(
        self, trial_id: str, result: dict[str, Any] | None
    ) -> PeftConfiguration | None:
        """The configuration of a trial that ``Tuner.restore(restart_errored=True)`` reran
        without a suggestion, under a new id (Tune's result carries the config, flattened):
        the retry replaces the failure; a configuration never seen is recorded too."""
        retried = self._failed_record(trial_id)
        trial_config = config_in_result(result)
        if retried is None and trial_config:
            try:
                config = self.space.from_trial_config(trial_config)
            except ConfigurationError:
                return None
            key = config.canonical()
            retried = next((r for r in self.failed if r.config.canonical() == key), None)
            if retried is None:
                if key in self._seen:
                    return None
                self._seen.add(key)
                return config
        if retried is None:
            return None
        self.records.remove(retried)
        return retried.config

    # -- queries -------------------------------------------------------------
    @property
    def pending(self) -> dict[str, PeftConfiguration]:
        """Running trials: trial id -> configuration."""
        return dict(self._pending)

    def records_with(self, status: str) -> list[TrialRecord]:
        return [r for r in self.records if r.status == status]

    @property
    def completed(self) -> list[TrialRecord]:
        """Full-budget results: what model-based searchers fit."""
        return self.records_with(COMPLETED)

    @property
    def early_stopped(self) -> list[TrialRecord]:
        return self.records_with(EARLY_STOPPED)

    @property
    def failed(self) -> list[TrialRecord]:
        return self.records_with(FAILED)

    def utility(self, score: float) -> float:
        """The score with the sign that makes larger better."""
        return score if self._mode == "max" else -score

    def pareto_front(self, reference_point: Sequence[float] | None = None) -> ParetoFront:
        """Front of the completed trials in ``(utility, param_fraction)``, configs as payload."""
        front = ParetoFront() if reference_point is None else ParetoFront(reference_point)
        front.extend(
            (self.utility(r.score), r.param_fraction, r.config)
            for r in self.completed
            if r.score is not None and r.param_fraction is not None
        )
        return front

    # -- proposals -----------------------------------------------------------
    def _propose(self) -> PeftConfiguration | None:
        """The next configuration (never seen before), or ``None`` to wait."""
        raise NotImplementedError

    def _next_point_to_evaluate(self) -> PeftConfiguration | None:
        while self._points_to_evaluate:
            config = self._points_to_evaluate.pop(0)
            if config.canonical() not in self._seen:
                return config
        return None

    def _unseen_candidates(self) -> list[PeftConfiguration]:
        """The candidates not suggested yet, in their given order (needs ``candidates``)."""
        return [c for c in self._candidates or () if c.canonical() not in self._seen]

    def _random_unseen(self) -> PeftConfiguration | None:
        """A uniformly drawn configuration not seen before; ``None`` if none is left."""
        if self._candidates is not None:
            left = self._unseen_candidates()
            return self._rng.choice(left) if left else None
        for _ in range(256):
            config = self.space.sample(self._rng)
            if config.canonical() not in self._seen:
                return config
        if self.space.cardinality > _ENUMERATE_LIMIT:
            while True:  # nearly all of a huge space seen: keep drawing
                config = self.space.sample(self._rng)
                if config.canonical() not in self._seen:
                    return config
        left = self._unseen_configurations()
        return self._rng.choice(left) if left else None

    def _unseen_configurations(self) -> list[PeftConfiguration]:
        """Every model of the space not suggested yet, one configuration each, in
        lattice order (enumerates ``space.cardinality`` points: small spaces only)."""
        fixed = self.space.fixed()
        dims = self.space.dimensions
        left: dict[PeftConfiguration, PeftConfiguration] = {}
        for values in itertools.product(*(d.choices for d in dims)):
            flat = dict(fixed, **{d.name: v for d, v in zip(dims, values, strict=True)})
            config = PeftConfiguration.from_dict(flat)
            key = config.canonical()
            if key not in self._seen and key not in left:
                left[key] = config
        return list(left.values())

    def _trial_config(self, config: PeftConfiguration) -> dict[str, Any]:
        return {**self.fixed_config, **config.to_dict()}


def _member(space: SearchSpace, config: PeftConfiguration) -> bool:
    try:
        space.validate(config)
    except ConfigurationError:
        return False
    return True
