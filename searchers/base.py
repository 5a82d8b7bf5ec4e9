"""The Ray Tune side of the AutoPEFT searchers: Tune's ``Searcher`` contract, delegated.

:class:`PeftSearcherBase` is what Tune talks to. It checks the arguments and
hands each call to the parts that do the work:

* the :class:`~.ledger.TrialLedger` tracks running and finished trials (Tune
  never tells a searcher which trials run), classifies every finished trial
  (see :mod:`.records`) and remembers every configuration suggested, compared
  by :meth:`PeftConfiguration.model_key`, so none is suggested twice;
* the :class:`~.schedule.Schedule` says where the next configuration comes
  from (given points, the initial design, the model, random);
* the proposers (:mod:`.proposers`) compute it from an immutable
  :class:`~.ledger.Snapshot`.

It merges ``fixed_config`` into every trial config and saves the whole
search as versioned JSON (:mod:`.state`). Subclasses implement
:meth:`PeftSearcherBase._propose`.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ray.tune.search import Searcher

from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.objectives import (
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

from .ledger import Snapshot, TrialLedger
from .proposers import RandomProposer
from .records import TrialRecord, classify, config_in_result
from .schedule import Schedule
from .search_properties import check_param_space, parse_metric
from .state import check_header, header, read_json, rng_from_json, rng_to_json, write_json
from .validation import check_candidates, check_fixed_config, check_points

logger = logging.getLogger(__name__)

#: A reported ``param_fraction`` within this relative distance of ``cost_fn``'s agrees
#: with it: a fraction rounded to three significant digits still does.
FRACTION_TOLERANCE = 1e-2


class PeftSearcherBase(Searcher):
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
        self._warned_target = False
        self._warned_fraction = False
        points = check_points(points_to_evaluate, self.space)
        kept = check_candidates(candidates, self.space)
        _check_points_are_candidates(points, kept)
        #: Running and finished trials, and every configuration suggested.
        self.ledger = TrialLedger()
        #: Given points, then (model-based searchers) the initial design and the model.
        self.schedule = Schedule(points)
        self._random = RandomProposer(self.space, kept)
        self._rng = random.Random(self.seed)
        #: One entry per model step: its inputs, seconds, and ``fallback`` (``None``:
        #: the model's configuration was taken).
        self.timings: list[dict[str, Any]] = []

    def _peft_keys(self) -> list[str]:
        return self.space.keys()

    @property
    def candidates(self) -> list[PeftConfiguration] | None:
        """The configurations this search is restricted to (``None``: the whole space)."""
        kept = self._random.candidates
        return None if kept is None else list(kept)

    @property
    def num_distinct(self) -> int:
        """Distinct models this searcher may suggest: its candidates, or the space's."""
        kept = self._random.candidates
        return self.space.num_distinct if kept is None else len(kept)

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
        if self.records or self.ledger.pending:
            raise ConfigurationError(
                f"`param_space` narrows {sorted(narrowing)}, but this searcher has already "
                f"suggested configurations. Narrow the space before the search starts."
            )
        narrowed = self.space.narrow(narrowing)
        points = check_points(self.schedule.points, narrowed)  # must lie inside
        kept = self._random.candidates
        if kept is not None:
            kept = [c for c in kept if _member(narrowed, c)]
            if not kept:
                raise invalid_value(
                    "param_space",
                    dict(narrowed.narrowed),
                    expected="a narrowing that keeps some of `candidates`",
                    fix="None of the candidates lies in the narrowed space.",
                )
        logger.info("Search space narrowed by param_space: %s", dict(narrowed.narrowed))
        self.space, self.schedule.points = narrowed, points
        self._random = RandomProposer(narrowed, kept)
        self._rebuild()

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = check_int("max_concurrent", max_concurrent)
        return True

    # Ray annotates ``Optional[Dict]`` but documents ``Searcher.FINISHED`` (a str).
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        """A flat trial config, ``None`` (try later) or ``Searcher.FINISHED``."""
        ledger = self.ledger
        if trial_id in ledger.pending:
            return self._trial_config(ledger.pending[trial_id])
        if self.max_concurrent is not None and len(ledger.pending) >= self.max_concurrent:
            return None
        if len(ledger.seen) >= self.num_distinct:
            return Searcher.FINISHED
        config = self.schedule.next_point(ledger.seen) or self._propose()
        if config is None:
            return None
        if config.model_key() in ledger.seen:
            # Proposers must not re-propose; guard the contract anyway.
            logger.warning("Proposal %s was seen before; sampling instead.", config.describe())
            config = self._random.draw(ledger.seen, self._rng)
            if config is None:
                return Searcher.FINISHED
        ledger.start(trial_id, config)
        ledger.num_suggested += 1
        return self._trial_config(config)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.ledger.observe(trial_id, result, self._metric)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        config, last, rungs = self.ledger.end(trial_id)
        if config is None:
            # Tune restarts errored trials (Tuner.restore(restart_errored=True))
            # under their old id without asking for a suggestion.
            config = self._retried_config(trial_id, result)
            if config is None:
                logger.warning("on_trial_complete for unknown trial %r ignored.", trial_id)
                return
        record = self.ledger.add(self._record(trial_id, config, result, last, error), rungs)
        self.ledger.reclassify(self.max_t, self.min_fidelity)
        if record.status == EARLY_STOPPED:
            self.note_early_stopping()

    def _record(
        self,
        trial_id: str,
        config: PeftConfiguration,
        result: dict[str, Any] | None,
        last: dict[str, float | None] | None,
        error: bool,
    ) -> TrialRecord:
        """The record of a finished trial: its status (:func:`~.records.classify`) and fraction."""
        fraction = None if self.cost_fn is None else float(self.cost_fn(config))
        if error:
            fidelity = None if last is None else last.get(FIDELITY)
            return TrialRecord(trial_id, config, FAILED, None, fraction, fidelity, None, "error")
        final = result if result else last
        self.ledger.see_fidelity(final)
        status, score, fidelity, target, reason = classify(
            final, self._metric, self.min_fidelity, self._default_target(final)
        )
        reported = None if final is None else finite_number(final.get(PARAM_FRACTION))
        if fraction is None:
            fraction = reported
        elif reported is not None:
            self._check_reported_fraction(trial_id, config, reported, fraction)
        return TrialRecord(trial_id, config, status, score, fraction, fidelity, target, reason)

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

    def _default_target(self, result: Mapping[str, Any] | None) -> float | None:
        """The target of a result that reports a fidelity but no target (warned once)."""
        result = result or {}
        if FIDELITY not in result or finite_number(result.get(TARGET_FIDELITY)) is not None:
            return None
        target = self.ledger.default_target(self.max_t)
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
        if config.model_key() in self.ledger.seen:
            raise invalid_value(
                "parameters", config.describe(), expected="a configuration not yet evaluated"
            )
        trial_id = f"external-{len(self.records)}"
        self.ledger.start(trial_id, config)
        if error:
            self.on_trial_complete(trial_id, None, error=True)
        else:
            result: dict[str, Any] = {self._metric: value}
            if pruned:  # below its target fidelity, whatever the scale
                result.update(fidelity=0.0, target_fidelity=1.0)
            self.on_trial_complete(trial_id, result)

    def _retried_config(
        self, trial_id: str, result: dict[str, Any] | None
    ) -> PeftConfiguration | None:
        """The configuration of a trial that ``Tuner.restore(restart_errored=True)`` reran
        without a suggestion, under a new id (Tune's result carries the config, flattened):
        the retry replaces the failure; a configuration never seen is recorded too."""
        retried = self.ledger.failed_record(trial_id)
        trial_config = config_in_result(result)
        if retried is None and trial_config:
            try:
                config = self.space.from_trial_config(trial_config)
            except ConfigurationError:
                return None
            key = config.model_key()
            retried = next((r for r in self.failed if r.config.model_key() == key), None)
            if retried is None:
                if key in self.ledger.seen:
                    return None
                self.ledger.seen.add(key)
                return config
        if retried is None:
            return None
        self.ledger.remove(retried)
        return retried.config

    # -- queries -------------------------------------------------------------
    @property
    def records(self) -> list[TrialRecord]:
        """Finished trials, in the order they ended."""
        return self.ledger.records

    @property
    def pending(self) -> dict[str, PeftConfiguration]:
        """Running trials: trial id -> configuration."""
        return dict(self.ledger.pending)

    @property
    def num_suggested(self) -> int:
        """Suggestions made so far (given points included)."""
        return self.ledger.num_suggested

    @property
    def max_fidelity_seen(self) -> float | None:
        """The largest fidelity any result reported (the target when none is known)."""
        return self.ledger.max_fidelity_seen

    def records_with(self, status: str) -> list[TrialRecord]:
        return self.ledger.with_status(status)

    @property
    def completed(self) -> list[TrialRecord]:
        """Full-budget results: what model-based searchers fit."""
        return self.ledger.completed

    @property
    def early_stopped(self) -> list[TrialRecord]:
        return self.ledger.early_stopped

    @property
    def failed(self) -> list[TrialRecord]:
        return self.ledger.failed

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
        """The next configuration after the given points (never seen before), or ``None``
        to wait."""
        raise NotImplementedError

    def _draw(self) -> PeftConfiguration | None:
        """A uniformly drawn configuration not seen before; ``None`` if none is left."""
        return self._random.draw(self.ledger.seen, self._rng)

    def _snapshot(self) -> Snapshot:
        """The trials as a proposer sees them (the reference is the model-based searchers')."""
        return self.ledger.snapshot(max_t=self.max_t, mode=self._mode, reference=(0.0, 1.0))

    def _trial_config(self, config: PeftConfiguration) -> dict[str, Any]:
        return {**self.fixed_config, **config.to_dict()}

    # -- state ---------------------------------------------------------------
    def _rebuild(self) -> None:
        """Rebuild what depends on the space and the saved state: proposers and their
        caches (after a narrowing ``param_space`` and in :meth:`set_state`)."""

    def _settings(self) -> dict[str, Any]:
        return {
            "space": self.space.to_dict(),
            "metric": self._metric,
            "mode": self._mode,
            "seed": self.seed,
            "fixed_config": self.fixed_config,
            "max_concurrent": self.max_concurrent,
            "min_fidelity": self.min_fidelity,
            "max_t": self.max_t,
        }

    def get_state(self) -> dict[str, Any]:
        """The whole search state as JSON-ready data (no pickled objects)."""
        kept = self._random.candidates
        return {
            **header(type(self).__name__),
            "settings": self._settings(),
            "rng_state": rng_to_json(self._rng),
            **self.ledger.to_json(),
            "points_to_evaluate": [c.to_dict() for c in self.schedule.points],
            "candidates": None if kept is None else [c.to_dict() for c in kept],
            "timings": self.timings,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state`'s output; the space must be the same."""
        check_header(state, type(self).__name__, self.space)
        settings = state["settings"]
        self.space = SearchSpace.from_dict(settings["space"])  # narrowed when it was saved
        self._metric, self._mode = settings["metric"], settings["mode"]
        self.seed = int(settings["seed"])
        rng_from_json(self._rng, state["rng_state"])
        self.ledger.load_json(state)
        self.schedule.points = [PeftConfiguration.from_dict(c) for c in state["points_to_evaluate"]]
        candidates = state.get("candidates")  # absent from states saved before candidates
        self._random = RandomProposer(
            self.space,
            None if candidates is None else [PeftConfiguration.from_dict(c) for c in candidates],
        )
        self.timings = list(state.get("timings", []))
        self._rebuild()

    def save(self, checkpoint_path: str) -> None:
        """Write :meth:`get_state` as JSON (Tune calls this with a ``.pkl`` name)."""
        write_json(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        """Load a state written by :meth:`save`."""
        self.set_state(read_json(checkpoint_path))

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "ledger" not in state:  # pickled before the searcher was composed (Tune's tuner.pkl)
            self._revive(state)
            return
        self.__dict__.update(state)

    def _revive(self, old: dict[str, Any]) -> None:
        """Rebuild a searcher pickled with the attributes of the mixin-based searchers
        (autopeft-ray before the ledger): its arguments, then its trials."""
        named = {
            "metric": old.get("_metric"),
            "mode": old.get("_mode"),
            "num_initial": old.get("initial_given", old.get("num_initial")),
            "reference_point": "auto" if old.get("auto_reference") else old.get("reference_point"),
        }
        nuts = old.get("nuts")
        if nuts is not None:
            named.update(
                nuts_warmup=nuts.warmup_steps,
                nuts_samples=nuts.num_samples,
                nuts_thinning=nuts.thinning,
            )
        kwargs: dict[str, Any] = {}
        for name in list(inspect.signature(type(self).__init__).parameters)[1:]:
            if name in named:
                kwargs[name] = named[name]
            elif name in old or f"_{name}" in old:
                kwargs[name] = old[name] if name in old else old[f"_{name}"]
        type(self).__init__(self, **kwargs)
        ledger = self.ledger
        ledger.pending = dict(old.get("_pending", {}))
        ledger.last_results = dict(old.get("_last_results", {}))
        ledger.rungs = dict(old.get("_reported") or {})
        ledger.records = list(old.get("records", []))
        ledger.seen = set(old.get("_seen", ()))
        ledger.num_suggested = int(old.get("num_suggested", 0))
        ledger.max_fidelity_seen = old.get("max_fidelity_seen")
        self.timings = list(old.get("timings", []))
        if "_rng" in old:
            self._rng = old["_rng"]
        self._revived(old)

    def _revived(self, old: dict[str, Any]) -> None:
        """Take over what a subclass kept of an old pickle (see :meth:`_revive`)."""


def _check_points_are_candidates(
    points: list[PeftConfiguration], candidates: list[PeftConfiguration] | None
) -> None:
    if candidates is None:
        return
    allowed = {c.model_key() for c in candidates}
    for i, config in enumerate(points):
        if config.model_key() not in allowed:
            raise invalid_value(
                f"points_to_evaluate[{i}]",
                config.describe(),
                expected="one of `candidates`",
                fix="Add it to candidates, or leave it out of points_to_evaluate.",
            )


def _member(space: SearchSpace, config: PeftConfiguration) -> bool:
    try:
        space.validate(config)
    except ConfigurationError:
        return False
    return True
