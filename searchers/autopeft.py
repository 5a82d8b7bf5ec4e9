"""The AutoPEFT searcher: multi-objective Bayesian optimisation over PEFT configurations.

Following the paper (arXiv 2301.12132, section 3): ``num_initial`` random
configurations (by default scaled to the space and the budget:
:func:`autopeft_ray.config.initial_design_size`), then one configuration per
suggestion maximising qLogNEHVI
over (score, parameter fraction). The score is modelled by a SAAS fully
Bayesian GP fitted with NUTS; the fraction is known (``cost_fn``) and is not
learned. Running trials are pending points, so concurrent suggestions differ.
The acquisition is optimised by local search on the lattice of encodings,
started from random neighbours of the current Pareto set and never returning
an evaluated or pending configuration. A small space (a narrowed
``param_space``, or ``candidates=``) is enumerated instead: every unseen
configuration is scored by the acquisition and the best one is taken, so a
nearly used-up space needs no local-search starts.

Failures: a trial that raised, or reported no finite score, is fitted by the
score model just below the worst score (``model_failures``), and once one
has failed a feasibility model of failed against ran becomes qLogNEHVI's
outcome constraint (``model_feasibility``, :mod:`searchers.surrogate.feasibility`),
so suggestions avoid regions that fail.

Fidelity policy: only results that reached their target fidelity (or
``min_fidelity``) are fitted; with ``multi_fidelity=True`` early-stopped ones
(ASHA) too, and every trial's earlier rungs (:mod:`searchers.rungs`), the
fidelity being one more model input, and the acquisition is taken at the
target (:mod:`searchers.surrogate.fidelity`). An early-stopped
configuration counts as evaluated and is never proposed again.

Waiting: after the initial design, while fewer than 2 fitted results exist
and trials are running, :meth:`suggest` returns ``None`` (Tune asks
again later); with nothing running it samples at random. A model step that
raises (numerical trouble) is logged, recorded in :attr:`timings` and replaced
by a random configuration, so a long search does not stop.

Reproducibility: the NUTS seed is derived from ``seed`` and the number of
fitted observations, the acquisition's from ``seed`` and the number of
suggestions, so the same seed and the same results give the same suggestions,
also after :meth:`restore`. A fitted model is cached until new results arrive:
a batch of suggestions costs one fit.

Off the event loop: with ``background=True``, fitting and acquisition run in
a background thread that keeps a small queue of candidates ready, so
``suggest`` and ``on_trial_complete`` return at once (see
:mod:`searchers.background`, which also says what stays reproducible).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from botorch.models.model import Model

from autopeft_ray.config import PAPER_NUTS, check_searcher_flags
from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives import FAILED, SCORE, to_maximization
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import canonical_encoding
from autopeft_ray.validation import check_int

from .background import BackgroundProposals
from .base import PeftSearcherBase
from .fit_warnings import count_harmless_warnings
from .model_based import (
    DEFAULT_JAX_CACHE_DIR,
    MIN_OBSERVATIONS,
    ModelBasedSearcher,
    check_cost_fn,
    derive_seed,
)
from .records import (
    Observation,
    feasibility_observations,
    observations,
    one_per_configuration,
)
from .rungs import RungMemory
from .score_model import ScoreModelCache
from .surrogate import (
    DTYPE,
    FeasibilityInputs,
    KnownCost,
    OnInputs,
    build_acquisition,
    build_model,
    model_inputs,
    on_encodings,
    optimize_acquisition,
    pareto_neighbour_starts,
)

logger = logging.getLogger(__name__)
#: Candidates scored by one acquisition call (``candidates=``): bounds its memory.
CANDIDATE_BATCH = 512
#: A space of at most this many lattice points is enumerated: every unseen
#: configuration is scored (a few calls of ``CANDIDATE_BATCH``) instead of a local
#: search, which needs ``num_restarts`` unseen starting points that a nearly
#: used-up small space does not have.
ENUMERATE_SPACE = 2048


class AutoPEFTSearcher(
    BackgroundProposals, RungMemory, ScoreModelCache, ModelBasedSearcher, PeftSearcherBase
):
    """AutoPEFT: SAAS-GP + qLogNEHVI search for Pareto-optimal PEFT configurations.

    Args:
        space: the search space.
        cost_fn: ``configuration -> parameter fraction``, the known objective
            (e.g. :class:`autopeft_ray.objectives.cost.ParamCost`). Its value is
            the fraction recorded and optimised, not a ``param_fraction`` the
            trainable reports (a disagreement is logged once, naming both).
        metric: result key of the score (Tune's ``TuneConfig(metric="score",
            mode="max")`` may set it; see the base class on multi-objective runs).
        mode: ``"max"`` or ``"min"`` for ``metric``.
        num_initial: random configurations before the model is used (paper: 100;
            0 with results added through ``add_evaluated_point``). ``None`` (the
            default): twice the searched dimensions, at most a fifth of the
            trials once the searcher knows how many (``search_callbacks`` or a
            ``param_space`` tell it; else of 50), at least 5
            (:func:`autopeft_ray.config.initial_design_size`). A search that
            ends without a model-based suggestion says so, with the fix.
        nuts_warmup: NUTS warmup steps (paper: 128).
        nuts_samples: NUTS samples (paper: 64).
        nuts_thinning: keep every ``nuts_thinning``-th sample (paper: 4).
        surrogate: ``"saas-nuts"`` (default, the paper's fully Bayesian SAAS
            GP) or ``"saas-map"`` (BoTorch's MAP SAAS GP: one model fitted by
            L-BFGS; the NUTS settings are then unused). ``saas-map`` is what
            keeps a suggestion cheap at hundreds of observations;
            BENCHMARKS.md gives its time and its cost in search quality.
        num_restarts: local-search starts (paper: 10), taken from random
            neighbours of Pareto-set members and topped up from ``raw_samples``.
        raw_samples: random lattice points scored to top up the starts.
        mc_samples: Monte Carlo samples of qLogNEHVI per NUTS sample (16 NUTS
            samples x 32 = 512 posterior draws). The acquisition dominates a
            suggestion's time and grows linearly with it: at 40 observations on
            a 12-layer space, 13 s with 32 and 48 s with BoTorch's usual 128, for
            the same log-NEHVI values within noise.
        max_baseline: keep at most this many observed configurations, the
            likeliest to be Pareto-optimal, as qLogNEHVI's baseline (``None``:
            all BoTorch keeps; 71 of 500 on the synthetic benchmark). Each
            acquisition call is a joint posterior over them, so this bounds a
            suggestion's cost at hundreds of observations (BENCHMARKS.md).
        reference_point: ``(score, param_fraction)`` in natural units. Default:
            score 0.0 and the fraction of the space's largest configuration
            (the role of the paper's (0.7, 26%) on RTE, for any model);
            required when ``mode="min"``. ``"auto"``: inferred at each step from
            the observed front, as Ax infers one (its nadir, 10% of its range
            further out: :func:`~.model_based.inferred_reference`), so that gains at
            the cheap end of the front count as much as a better best score.
        seed: seeds sampling, NUTS and the acquisition (``None``: drawn once).
        min_fidelity: also fit early-stopped results at or above this fidelity.
        max_t: target fidelity of results that do not report ``target_fidelity``
            (see :class:`~autopeft_ray.searchers.PeftSearcherBase`).
        fixed_config: settings merged into every trial config.
        max_concurrent: ``suggest`` returns ``None`` while this many trials run.
        points_to_evaluate: configurations to try first (count towards ``num_initial``).
        pad_multiple: NUTS sees data padded to a multiple of this many rows, so
            JAX recompiles once per ``pad_multiple`` observations (1: no padding).
        model_failures: fit failed trials (raised, or no finite score) with a
            score just below the worst fitted one, so that suggestions avoid
            regions that fail (:func:`~.records.observations`); ``False`` fits
            results only.
        model_feasibility: once a trial has failed, also fit a feasibility
            model (a GP of failed against ran, on the module sizes and the
            share of layers with modules) and give it to qLogNEHVI as an outcome constraint, as
            BoTorch's constrained acquisitions do: a configuration's
            improvement counts as much as it is likely to run
            (:mod:`searchers.surrogate.feasibility`; BENCHMARKS.md, "Failed
            trials when large configurations fail"). Nothing is fitted while
            no trial has failed.
        multi_fidelity: also fit early-stopped results and each trial's
            earlier rungs, with their fidelity as a model input, and take the
            acquisition at the target fidelity (for ASHA or Hyperband, where
            most trials stop at a low rung; best with ``cost_input=True``);
            needs ``surrogate="saas-map"`` (:mod:`searchers.surrogate.fidelity`).
        cost_input: give the score model each configuration's parameter
            fraction (log scale) as one more input, so that it can learn how
            the score grows with capacity from few observations
            (:mod:`searchers.surrogate.inputs`; BENCHMARKS.md measures it).
        jax_cache_dir: JAX's persistent compilation cache, set on the first fit
            unless JAX already has one (compiled NUTS programs are reused across
            fits and runs: ~1-2 s per fit instead of ~6 s); ``None`` leaves JAX alone.
        background: fit and optimise in a background thread, so that
            ``suggest`` and ``on_trial_complete`` return at once instead of
            holding Tune's event loop for the length of a fit (see
            :mod:`searchers.background`, which also says what stays reproducible).
        queue_size: candidates the background thread computes from one fit
            (the running trials and those before it pending); results that
            arrive meanwhile are fitted for the next queue.
        fill_with_random: with ``background``, a free slot that finds no
            candidate ready gets a random configuration instead of waiting
            (``suggest`` never returns ``None``): no trial slot idles while
            the model fits, at the price of fewer model-based trials
            (BENCHMARKS.md, "Driver idle time").
        candidates: search only among these configurations (see
            :class:`~autopeft_ray.searchers.PeftSearcherBase`); the acquisition is
            then evaluated on every candidate not yet suggested, instead of a local
            search over the space.

    Examples:
        The space and the cost come from a model name (a hub name, a local
        path, or the offline default), as in the README's Python API::

            from ray import tune

            from autopeft_ray.config import TrainingSettings
            from autopeft_ray.experiment import MultiObjectiveASHA
            from autopeft_ray.objectives import ParamCost
            from autopeft_ray.run import search_callbacks
            from autopeft_ray.searchers import AutoPEFTSearcher
            from autopeft_ray.space import SearchSpace
            from autopeft_ray.trainables import with_resources

            model = "bert-base-uncased"
            space = SearchSpace.from_model_config(model)  # 12 layers: 15 dimensions
            searcher = AutoPEFTSearcher(space, cost_fn=ParamCost.from_model(model), seed=0)
            scheduler = MultiObjectiveASHA(max_t=400, grace_period=100)
            tuner = tune.Tuner(
                with_resources(cpus=2, settings=TrainingSettings(model=model, task="rte")),
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=scheduler,
                    metric="score", mode="max", num_samples=40,
                ),
                run_config=tune.RunConfig(
                    callbacks=search_callbacks(searcher, "runs/rte", scheduler=scheduler)
                ),
            )
            results = tuner.fit()

        With ``num_samples=40`` and ``search_callbacks`` telling it the budget,
        8 configurations are random and 32 come from the model. Searching a
        narrower space only needs a ``param_space``, e.g.
        ``{"pt_length": 0, "sa_size": tune.choice([0, 8, 16])}``.
    """

    _background_caches = ("_model_cache", "_feasibility_cache", "_known_cost", "_map_fit")

    def __init__(
        self,
        space: SearchSpace,
        cost_fn: Callable[[PeftConfiguration], float],
        metric: str = SCORE,
        mode: str = "max",
        num_initial: int | None = None,
        nuts_warmup: int = PAPER_NUTS[0],
        nuts_samples: int = PAPER_NUTS[1],
        nuts_thinning: int = PAPER_NUTS[2],
        surrogate: str = "saas-nuts",
        num_restarts: int = 10,
        raw_samples: int = 512,
        mc_samples: int = 32,
        max_baseline: int | None = None,
        reference_point: Sequence[float] | str | None = None,
        seed: int | None = None,
        min_fidelity: float | None = None,
        max_t: float | None = None,
        fixed_config: Mapping[str, Any] | None = None,
        max_concurrent: int | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any] | PeftConfiguration] | None = None,
        pad_multiple: int = 32,
        jax_cache_dir: str | None = DEFAULT_JAX_CACHE_DIR,
        model_failures: bool = True,
        model_feasibility: bool = True,
        background: bool = False,
        queue_size: int = 2,
        fill_with_random: bool = False,
        multi_fidelity: bool = False,
        cost_input: bool = False,
        candidates: Sequence[Mapping[str, Any] | PeftConfiguration] | None = None,
    ) -> None:
        super().__init__(
            space,
            cost_fn=check_cost_fn(cost_fn),
            metric=metric,
            mode=mode,
            seed=seed,
            fixed_config=fixed_config,
            max_concurrent=max_concurrent,
            points_to_evaluate=points_to_evaluate,
            min_fidelity=min_fidelity,
            max_t=max_t,
            candidates=candidates,
        )
        self._init_model_based(
            space,
            cost_fn,
            num_initial=num_initial,
            surrogate=surrogate,
            nuts=(nuts_warmup, nuts_samples, nuts_thinning),
            jax_cache_dir=jax_cache_dir,
            reference_point=reference_point,
        )
        self.num_restarts = check_int("num_restarts", num_restarts)
        self.raw_samples = check_int("raw_samples", raw_samples)
        self.mc_samples = check_int("mc_samples", mc_samples)
        self.max_baseline = (
            None if max_baseline is None else check_int("max_baseline", max_baseline)
        )
        self.pad_multiple = check_int("pad_multiple", pad_multiple)
        flags = dict(model_failures=model_failures, multi_fidelity=multi_fidelity)
        flags.update(model_feasibility=model_feasibility)
        flags.update(
            cost_input=cost_input, background=background, fill_with_random=fill_with_random
        )
        for name, flag in flags.items():
            if not isinstance(flag, bool):
                raise invalid_value(name, flag, valid=[True, False])
        self.model_failures, self.multi_fidelity = model_failures, multi_fidelity
        self.model_feasibility = model_feasibility
        self.cost_input, self.background = cost_input, background
        check_searcher_flags(
            surrogate=surrogate,
            background=background,
            fill_with_random=fill_with_random,
            multi_fidelity=multi_fidelity,
        )
        self.fill_with_random = fill_with_random
        self._model_cache: tuple[int, Model] | None = None
        self._feasibility_cache: tuple[tuple[int, int], Model] | None = None
        #: The last MAP fit: its observations, where it started, its hyperparameters
        #: (the next fit starts from them). Part of the saved state.
        self._map_fit: dict[str, Any] | None = None
        self._known_cost: KnownCost | None = None
        #: Known-harmless numerical warnings while fitting: "Category: message" -> count.
        self.numerical_warnings: dict[str, int] = {}
        self.queue_size = check_int("queue_size", queue_size)
        self._background = None
        self._data_version = 0

    @property
    def reference_max(self) -> tuple[float, float]:
        """The reference point in the "maximise both" convention of the model outputs."""
        score, fraction = self.reference
        return to_maximization(self.utility(score), fraction)

    # -- proposals -----------------------------------------------------------
    def _propose(self) -> PeftConfiguration | None:
        if self.num_suggested < self.num_initial:
            return self._random_unseen()
        if len(self._observations()) < MIN_OBSERVATIONS:
            # Wait for results while trials run; sample when nothing would arrive.
            waits = bool(self._pending) and not self.fill_with_random
            return None if waits else self._random_unseen()
        if self.background:
            return self._background_proposal()
        return self._model_based_or_random()

    def _model_based_or_random(self) -> PeftConfiguration | None:
        """One model-based configuration, or a random one if the model step fails."""
        try:
            config = self._model_based()
        except (RuntimeError, ValueError):
            logger.exception("Model-based step failed; sampling at random instead.")
            self.timings.append({"n_observations": len(self.completed), "fallback": "error"})
            return self._random_unseen()
        return config if config is not None else self._random_unseen()

    def _observations(self, failures: bool = False) -> list[Observation]:
        """What the model fits (:func:`~.records.observations`); ``failures``: imputed too."""
        return observations(
            self.records,
            self.utility,
            model_failures=failures,
            multi_fidelity=self.multi_fidelity,
            default_target=self.max_t if self.max_t is not None else self.max_fidelity_seen,
        )

    def _model_based(self) -> PeftConfiguration | None:
        start = time.perf_counter()
        results = self._observations()
        data = self._observations(self.model_failures)
        cost_input = self._cost_input()
        X = model_inputs(self.space, data, self.multi_fidelity, cost_input)
        Y = torch.tensor([[utility] for _, utility, _ in data], dtype=DTYPE)
        step_seed = derive_seed(self.seed, "acquisition", self.num_suggested)
        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng(), count_harmless_warnings(self.numerical_warnings):
                torch.manual_seed(step_seed)
                np.random.seed(step_seed)
                model = self._fitted_model(X, Y)
                fitted = time.perf_counter()
                model = on_encodings(model, self.multi_fidelity, cost_input)
                feasibility = self._feasibility()
                feasible = time.perf_counter()
                baseline = model_inputs(self.space, one_per_configuration(data), False)
                config, value = self._optimize(model, baseline, results, step_seed, feasibility)
        finally:
            np.random.set_state(numpy_state)
        done = time.perf_counter()
        self.timings.append(
            {
                "n_observations": len(data),
                "n_failed_imputed": len(data) - len(results),
                "n_pending": len(self._pending),
                "fit_s": round(fitted - start, 4),
                "feasibility_fit_s": (None if feasibility is None else round(feasible - fitted, 4)),
                "acquisition_s": round(done - feasible, 4),
                "total_s": round(done - start, 4),
                "log_nehvi": value,
                "fallback": None if config is not None else "no unseen candidate",
            }
        )
        return config

    def _feasibility(self) -> Model | None:
        """The feasibility model on encodings, once a trial has failed (``None`` before,
        or with ``model_feasibility=False``): :mod:`.surrogate.feasibility`."""
        if not self.model_feasibility or not any(r.status == FAILED for r in self.records):
            return None
        data = feasibility_observations(self.records)
        inputs = FeasibilityInputs(self.space)
        X = inputs(model_inputs(self.space, data, False))
        Y = torch.tensor([[value] for _, value, _ in data], dtype=DTYPE)
        return OnInputs(self._fitted_feasibility(X, Y), inputs)

    def _optimize(
        self,
        score_model: Model,
        X: torch.Tensor,
        data: list[Observation],
        seed: int,
        feasibility: Model | None = None,
    ) -> tuple[PeftConfiguration | None, float | None]:
        model = build_model(self.space, score_model, self._known(), feasibility)
        pending = [canonical_encoding(self.space, c) for c in self._pending.values()]
        X_pending = torch.tensor(pending, dtype=DTYPE).reshape(-1, X.shape[-1])
        acquisition = build_acquisition(
            model, self.reference_max, X, X_pending, self.mc_samples, seed, self.max_baseline
        )
        if self._candidates is not None:
            return self._best_candidate(acquisition, self._unseen_candidates())
        if self.space.cardinality <= ENUMERATE_SPACE:
            return self._best_candidate(acquisition, self._unseen_configurations())
        seen = [canonical_encoding(self.space, r.config) for r in self.records] + pending
        X_avoid = torch.tensor(seen, dtype=DTYPE).reshape(-1, X.shape[-1])
        initial = pareto_neighbour_starts(
            self.space, data, self._cost, self._seen, self.num_restarts, random.Random(seed)
        )
        for _ in range(3):
            candidate, value = optimize_acquisition(
                acquisition,
                self.space,
                X_avoid,
                initial,
                self.num_restarts,
                self.raw_samples,
            )
            config = self.space.decode(candidate.tolist())
            if config.canonical() not in self._seen:
                return config, value
            # Another encoding of a model already seen (degenerate): exclude, retry.
            X_avoid = torch.cat([X_avoid, candidate.reshape(1, -1)])
        return None, None

    def _best_candidate(
        self, acquisition: Any, left: list[PeftConfiguration]
    ) -> tuple[PeftConfiguration | None, float | None]:
        """The configuration of ``left`` (unseen) with the largest acquisition value."""
        if not left:
            return None, None
        X = torch.tensor([canonical_encoding(self.space, c) for c in left], dtype=DTYPE)
        with torch.no_grad():
            values = torch.cat(
                [acquisition(chunk.unsqueeze(1)) for chunk in X.split(CANDIDATE_BATCH)]
            )
        best = int(values.argmax())
        return left[best], float(values[best])

    # -- state ---------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        settings = super()._settings()
        settings.update(
            num_initial=self.num_initial,
            nuts_warmup=self.nuts.warmup_steps,
            nuts_samples=self.nuts.num_samples,
            nuts_thinning=self.nuts.thinning,
            surrogate=self.surrogate,
            num_restarts=self.num_restarts,
            raw_samples=self.raw_samples,
            mc_samples=self.mc_samples,
            max_baseline=self.max_baseline,
            reference_point="auto" if self.auto_reference else self.reference_point,
            pad_multiple=self.pad_multiple,
            jax_cache_dir=self.jax_cache_dir,
            model_failures=self.model_failures,
            model_feasibility=self.model_feasibility,
            background=self.background,
            queue_size=self.queue_size,
            fill_with_random=self.fill_with_random,
            multi_fidelity=self.multi_fidelity,
            cost_input=self.cost_input,
        )
        return settings

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "map_fit": self._map_fit}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self._map_fit = state.get("map_fit")
        self._model_cache = self._feasibility_cache = None
        self._stop_background()  # its snapshot predates the restored state
        self._data_version = len(self.records)

    def _space_changed(self) -> None:
        self._model_cache, self._known_cost, self._map_fit = None, None, None
        self._feasibility_cache = None
        self._stop_background()

    def _transient_attributes(self) -> tuple[str, ...]:
        return ("_model_cache", "_feasibility_cache", "_known_cost", "_background")

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A searcher pickled before the feasibility model (Tune's tuner.pkl of a
        # search being resumed) gets the default.
        state = dict(state)
        state.setdefault("model_feasibility", True)
        state.setdefault("_feasibility_cache", None)
        super().__setstate__(state)
