"""What the model-based searchers share: their settings, schedule and hypervolume reference.

Both :class:`~.autopeft.AutoPEFTSearcher` and :class:`~.axsearch.AxPEFTSearcher`
take a cost function, a number of random initial configurations (``None``:
:func:`autopeft_ray.config.initial_design_size`, scaled to the space and, once
Tune tells it, to the budget), a SAAS surrogate (NUTS or MAP) with its NUTS
settings, and JAX's compilation cache. They say what a user should know and
would not see otherwise: at the start of a search whose scheduler stops trials,
that those trials are not fitted (:meth:`ModelBasedSearcher.note_early_stopping`);
at its end, why no suggestion came from the model, if none did
(:meth:`ModelBasedSearcher.search_summary`).
They measure improvement against a reference ``(score, param_fraction)`` in
natural units: by default score 0.0 and the fraction of the space's largest
configuration (the role of the paper's (0.7, 26%) on RTE, for any model).
A minimised score has no natural default bound, so it needs one given.
"""

from __future__ import annotations

import functools
import logging
import os
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from autopeft_ray.config import SURROGATES
from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.objectives import COMPLETED, EARLY_STOPPED, FAILED
from autopeft_ray.objectives.pareto import pareto_mask, reference_point_for
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.validation import check_reference_point

from .base import PeftSearcherBase
from .ledger import Snapshot
from .schedule import MIN_OBSERVATIONS, Schedule
from .surrogate import NutsSettings, SurrogateSettings

#: The statuses a summary counts, in the order it shows them.
STATUSES_SHOWN = (COMPLETED, EARLY_STOPPED, FAILED)
#: JAX's persistent compilation cache unless JAX is configured otherwise.
DEFAULT_JAX_CACHE_DIR = os.path.join("~", ".cache", "autopeft_ray", "jax")

logger = logging.getLogger(__name__)


#: ``reference_point="auto"``: the reference is inferred from the observed front.
AUTO = "auto"
#: The margin of an inferred reference beyond the front's nadir, as a share of its range.
REFERENCE_MARGIN = 0.1


def inferred_reference(
    points: Sequence[tuple[float, float]], mode: str = "max"
) -> tuple[float, float] | None:
    """A reference point from observed ``(score, param_fraction)`` points, as Ax infers one.

    The nadir of the points' Pareto front (its worst score and its largest
    fraction), moved ``REFERENCE_MARGIN`` of the front's range further out, so
    that every front point adds hypervolume and improving the cheap end counts as
    much as improving the best score. ``None`` with fewer than two front points.
    """
    if len(points) < 2:
        return None
    sign = 1.0 if mode == "max" else -1.0
    utility = [(sign * score, fraction) for score, fraction in points]
    front = [p for p, on in zip(utility, pareto_mask(utility), strict=True) if on]
    if len(front) < 2:
        return None
    scores, fractions = [p[0] for p in front], [p[1] for p in front]
    score_margin = REFERENCE_MARGIN * (max(scores) - min(scores))
    fraction_margin = REFERENCE_MARGIN * (max(fractions) - min(fractions))
    score = sign * (min(scores) - score_margin)
    return score, min(1.0, max(fractions) + fraction_margin)


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed from the searcher seed and a purpose."""
    return zlib.crc32(repr((seed, *parts)).encode()) & 0x7FFFFFFF


def check_cost_fn(cost_fn: Any) -> Callable[[PeftConfiguration], float]:
    """``cost_fn`` if it is callable; otherwise the error that says what to pass."""
    if not callable(cost_fn):
        raise invalid_value(
            "cost_fn",
            cost_fn,
            expected="a callable configuration -> parameter fraction",
            fix="Pass autopeft_ray.objectives.ParamCost.from_model(model_name).",
        )
    return cost_fn


class ModelBasedSearcher(PeftSearcherBase):
    """A searcher whose configurations come from a model after an initial design.

    Subclasses give :meth:`_fitted` (results their model would fit now) and
    :meth:`_model_step` (the model's configuration); :class:`~.schedule.Schedule`
    decides when each is asked. Arguments as in :class:`~.autopeft.AutoPEFTSearcher`;
    the rest go to :class:`~.base.PeftSearcherBase`.
    """

    def __init__(
        self,
        space: SearchSpace,
        cost_fn: Callable[[PeftConfiguration], float],
        *,
        num_initial: int | None,
        surrogate: str,
        nuts: tuple[int, int, int],
        jax_cache_dir: str | os.PathLike[str] | None,
        reference_point: Sequence[float] | str | None,
        **base: Any,
    ) -> None:
        super().__init__(space, cost_fn=check_cost_fn(cost_fn), **base)
        self.schedule = Schedule(self.schedule.points, num_initial)
        self._noted_early_stopping = False
        if surrogate not in SURROGATES:
            raise invalid_value("surrogate", surrogate, valid=SURROGATES)
        self.surrogate = surrogate
        self.nuts = NutsSettings(*nuts)
        if jax_cache_dir is not None and not isinstance(jax_cache_dir, (str, os.PathLike)):
            raise invalid_value("jax_cache_dir", jax_cache_dir, expected="a folder path or None")
        self.jax_cache_dir = None if jax_cache_dir is None else os.path.expanduser(jax_cache_dir)
        self._cost: Callable[[PeftConfiguration], float] = cost_fn
        self._default_fraction = reference_point_for(space, cost_fn)[1]
        #: ``"auto"``: inferred from the observed front at each step (:attr:`reference`).
        self.auto_reference = isinstance(reference_point, str) and reference_point == AUTO
        if isinstance(reference_point, str) and not self.auto_reference:
            raise invalid_value(
                "reference_point",
                reference_point,
                expected=f"(score, param_fraction), {AUTO!r} or None",
            )
        self.reference_point = (
            None
            if reference_point is None or self.auto_reference
            else check_reference_point(reference_point)
        )
        self._check_mode_has_reference()

    def _check_mode_has_reference(self) -> None:
        if self._mode == "min" and self.reference_point is None and not self.auto_reference:
            raise ConfigurationError(
                f"`reference_point` is required when mode='min' (metric {self._metric!r}): "
                "the default score bound 0.0 suits maximised scores only. Pass "
                "reference_point=(worst acceptable value, largest acceptable fraction)."
            )

    def set_search_properties(
        self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any
    ) -> bool:
        accepted = super().set_search_properties(metric, mode, config, **spec)
        self._check_mode_has_reference()
        # Tune passes num_samples here only when the Tuner has a param_space.
        if isinstance(spec.get("num_samples"), int) and spec["num_samples"] > 0:
            self.set_budget(spec["num_samples"])
        return accepted

    # -- the schedule ----------------------------------------------------------
    def _propose(self) -> PeftConfiguration | None:
        # The snapshot, taken once and only if the schedule gets past the initial design.
        snapshot = functools.cache(self._snapshot)
        return self.schedule.next(
            space=self.space,
            num_suggested=self.ledger.num_suggested,
            fitted=lambda: self._fitted(snapshot()),
            running=bool(self.ledger.pending),
            wait=self._waits(),
            draw=self._draw,
            model=lambda: self._model_step(snapshot()),
        )

    def _fitted(self, snapshot: Snapshot) -> int:
        """How many results the model would fit now."""
        return len(snapshot.with_status(COMPLETED))

    def _waits(self) -> bool:
        """Whether to wait for results (rather than draw) before the model can fit."""
        return True

    def _model_step(self, snapshot: Snapshot) -> PeftConfiguration | None:
        """The model's configuration for ``snapshot`` (``None``: wait)."""
        raise NotImplementedError

    @property
    def surrogate_settings(self) -> SurrogateSettings:
        """The surrogate, its NUTS budget and JAX's cache, as the score model gets them."""
        return SurrogateSettings(self.surrogate, self.nuts, self.jax_cache_dir)

    def _snapshot(self) -> Snapshot:
        return self.ledger.snapshot(max_t=self.max_t, mode=self._mode, reference=self.reference)

    @property
    def initial_given(self) -> int | None:
        """``num_initial`` as given (``None``: :func:`~autopeft_ray.config.initial_design_size`)."""
        return self.schedule.initial_given

    @property
    def num_trials(self) -> int | None:
        """The search's budget of trials, once Tune or ``search_callbacks`` tells it."""
        return self.schedule.num_trials

    @property
    def num_initial(self) -> int:
        """Random configurations before the model: as given, else
        :func:`~autopeft_ray.config.initial_design_size` of the space and the budget."""
        return self.schedule.num_initial(self.space)

    def set_budget(self, num_trials: int | None) -> None:
        """Tell the searcher how many trials the search runs (Tune's ``num_samples``),
        so that the default initial design leaves most of them to the model.

        ``search_callbacks`` calls this as the search starts; ``None`` (or Tune's
        "unlimited") keeps the budget unknown.
        """
        self.schedule.set_budget(num_trials)

    # -- what a user is told ---------------------------------------------------
    def _fits_early_stopped(self) -> bool:
        """Whether trials a scheduler stops early are fitted (``min_fidelity`` here)."""
        return self.min_fidelity is not None

    def note_early_stopping(self) -> None:
        """Say once that trials a scheduler stops early are not fitted, and how to fit them.

        ``search_callbacks`` (and ``autopeft-ray search``) call this at the start of a
        search whose scheduler stops trials; otherwise the first trial stopped early
        does. Silent when such trials are fitted (``multi_fidelity`` or ``min_fidelity``).
        """
        if self._noted_early_stopping:
            return
        self._noted_early_stopping = True
        if self._fits_early_stopped():
            return
        logger.warning(
            "The scheduler stops trials early; %s fits only the trials that reach their "
            "target fidelity, so it learns nothing from the others (under ASHA, most of "
            "them). To fit them too, with their fidelity as a model input, use "
            "AutoPEFTSearcher(multi_fidelity=True, surrogate='saas-map', cost_input=True) "
            "(CLI: --multi-fidelity --surrogate saas-map --cost-input, its default under "
            "--scheduler asha and hyperband; on real trainings this model ranks unseen "
            "configurations at full fidelity far better: BENCHMARKS.md), or min_fidelity= to "
            "fit those stopped at or above a fidelity.",
            type(self).__name__,
        )

    @property
    def num_model_based(self) -> int:
        """Model-based suggestions made so far (timed steps that did not fall back)."""
        return sum(1 for t in self.timings if "fallback" in t and t["fallback"] is None)

    def search_summary(self) -> str | None:
        """Why the search made no model-based suggestion, with the fix; ``None`` if it made one.

        ``search_callbacks`` logs it when the search ends.
        """
        if self.num_model_based or not self.num_suggested:
            return None
        n, k = self.num_suggested, self.num_initial
        head = f"The search ended without a model-based suggestion: all {n} trials were random"
        if n <= k:
            given = "given" if self.initial_given is not None else "the default, scaled to "
            if self.initial_given is None:
                given += f"the space's {len(self.space.dimensions)} searched dimensions"
                given += "" if self.num_trials is None else f" and {self.num_trials} trials"
            fix = max(MIN_OBSERVATIONS, n // 2)
            if fix < n:
                how = (
                    f"Pass num_initial below the number of trials (e.g. num_initial={fix} "
                    f"for num_samples={n}; CLI: --initial {fix}), or run more trials."
                )
            else:  # too few trials for any initial design to leave one to the model
                how = (
                    f"Run more trials: the model needs {MIN_OBSERVATIONS} results first "
                    f"(e.g. num_samples={MIN_OBSERVATIONS + 2} with num_initial="
                    f"{MIN_OBSERVATIONS}; CLI: --initial {MIN_OBSERVATIONS} --model-based 2)."
                )
            return (
                f"{head}, because the initial design, num_initial={k} ({given}), took them "
                f"all. {how}"
            )
        counts = {s: sum(r.status == s for r in self.records) for s in STATUSES_SHOWN}
        if counts[COMPLETED] < MIN_OBSERVATIONS:
            shown = ", ".join(f"{v} {s.replace('_', ' ')}" for s, v in counts.items())
            return (
                f"{head}: the model needs {MIN_OBSERVATIONS} trials that reached their target "
                f"fidelity and got {counts[COMPLETED]} ({shown}). With a scheduler that stops "
                "trials, fit them too: AutoPEFTSearcher(multi_fidelity=True, "
                "surrogate='saas-map') (CLI: --multi-fidelity --surrogate saas-map); if trials "
                "failed, see their errors."
            )
        return (
            f"{head}: every model-based step failed and fell back to a random configuration "
            "(the errors are logged above). Check them, or try surrogate='saas-map' "
            "(CLI: --surrogate saas-map)."
        )

    # -- state -------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        settings = super()._settings()
        settings.update(
            num_initial=self.num_initial,
            num_initial_given=self.initial_given,
            num_trials=self.num_trials,
            surrogate=self.surrogate,
            nuts_warmup=self.nuts.warmup_steps,
            nuts_samples=self.nuts.num_samples,
            nuts_thinning=self.nuts.thinning,
            reference_point=AUTO if self.auto_reference else self.reference_point,
            jax_cache_dir=self.jax_cache_dir,
        )
        return settings

    def set_state(self, state: Any) -> None:
        super().set_state(state)
        settings = state["settings"]
        if "num_trials" in settings:  # absent from states saved before the budget was kept
            self.schedule.num_trials = settings["num_trials"]

    def _revived(self, old: dict[str, Any]) -> None:
        super()._revived(old)
        self.schedule.num_trials = old.get("num_trials")
        self._noted_early_stopping = bool(old.get("_noted_early_stopping", False))

    @property
    def reference(self) -> tuple[float, float]:
        """The reference ``(score, param_fraction)`` in natural units: given, inferred
        (``"auto"``), or the default (score 0, the largest configuration's fraction)."""
        if self.auto_reference:
            inferred = inferred_reference(
                [
                    (r.score, r.param_fraction)
                    for r in self.records
                    if r.status == COMPLETED
                    and r.score is not None
                    and r.param_fraction is not None
                ],
                self._mode,
            )
            if inferred is not None:
                return inferred
        return self.reference_point or (0.0, self._default_fraction)
