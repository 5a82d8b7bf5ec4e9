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
(ASHA) too, and every trial's earlier rungs (kept by the trial ledger,
:mod:`searchers.ledger`), the fidelity being one more model input, and the
acquisition is taken at the target (:mod:`searchers.surrogate.fidelity`). An early-stopped
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

Parts: the trials are the trial ledger's (:mod:`searchers.ledger`); the
schedule (:mod:`searchers.schedule`) says when the model is asked; the model
step is :class:`~searchers.saas.SaasProposer`, on a snapshot of the ledger,
with the score model of :mod:`searchers.score_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autopeft_ray.config import PAPER_NUTS, check_searcher_flags
from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives import SCORE, to_maximization
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.validation import check_int

from .background import BackgroundProposer
from .ledger import Snapshot
from .model_based import DEFAULT_JAX_CACHE_DIR, ModelBasedSearcher
from .records import Observation
from .saas import SaasProposer
from .score_model import ScoreModel


class AutoPEFTSearcher(ModelBasedSearcher):
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
            suggestion's time and grows linearly with it; 32 gives the same
            log-NEHVI values as BoTorch's usual 128 within noise, at a quarter
            of the time (BENCHMARKS.md).
        max_baseline: keep at most this many observed configurations, the
            likeliest to be Pareto-optimal, as qLogNEHVI's baseline (``None``:
            all that BoTorch keeps after its own pruning). Each
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
            fits and runs, BENCHMARKS.md gives the saving); ``None`` leaves JAX alone.
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
            cost_fn,
            num_initial=num_initial,
            surrogate=surrogate,
            nuts=(nuts_warmup, nuts_samples, nuts_thinning),
            jax_cache_dir=jax_cache_dir,
            reference_point=reference_point,
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
        check_searcher_flags(
            surrogate=surrogate,
            background=background,
            fill_with_random=fill_with_random,
            multi_fidelity=multi_fidelity,
        )
        self.model_failures, self.multi_fidelity = model_failures, multi_fidelity
        self.model_feasibility = model_feasibility
        self.cost_input, self.background = cost_input, background
        self.fill_with_random = fill_with_random
        self.queue_size = check_int("queue_size", queue_size)
        self.ledger.keep_rungs = multi_fidelity  # the multi-fidelity model fits every rung
        #: Known-harmless numerical warnings while fitting: "Category: message" -> count.
        self.numerical_warnings: dict[str, int] = {}
        self._background: BackgroundProposer | None = None
        self._rebuild()

    def _rebuild(self) -> None:
        """The score model and the proposers, new (a narrowed space, a restored state)."""
        if self._background is not None:
            self._background.close()  # its snapshot predates the change
        #: The score model: its fits, caches and the last MAP fit.
        self.score_model = ScoreModel(
            self.space,
            self._cost,
            seed=self.seed,
            settings=self.surrogate_settings,
            pad_multiple=self.pad_multiple,
            multi_fidelity=self.multi_fidelity,
            cost_input=self.cost_input,
            default_fraction=self._default_fraction,
        )
        self._saas = SaasProposer(
            self.score_model,
            self._random,
            seed=self.seed,
            num_restarts=self.num_restarts,
            raw_samples=self.raw_samples,
            mc_samples=self.mc_samples,
            max_baseline=self.max_baseline,
            model_failures=self.model_failures,
            model_feasibility=self.model_feasibility,
        )
        self._background = (
            BackgroundProposer(
                self._saas,
                self._random,
                seed=self.seed,
                queue_size=self.queue_size,
                fill_with_random=self.fill_with_random,
                name=f"{type(self).__name__}-suggestions",
            )
            if self.background
            else None
        )

    @property
    def reference_max(self) -> tuple[float, float]:
        """The reference point in the "maximise both" convention of the model outputs."""
        score, fraction = self.reference
        return to_maximization(self.utility(score), fraction)

    # -- proposals -----------------------------------------------------------
    def _fitted(self, snapshot: Snapshot) -> int:
        return len(self._saas.observations(snapshot))

    def _waits(self) -> bool:
        return not self.fill_with_random

    def _model_step(self, snapshot: Snapshot) -> PeftConfiguration | None:
        if self._background is not None:
            step = self._background.propose(snapshot, self._rng)
            if step is None:
                return None
        else:
            step = self._saas.propose(snapshot, self._rng)
        self.timings.extend(step.timings)
        for key, count in step.warnings.items():
            self.numerical_warnings[key] = self.numerical_warnings.get(key, 0) + count
        return step.config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        super().on_trial_complete(trial_id, result, error)
        if self._background is not None:
            self._background.results_changed(self._snapshot())

    def _observations(self, failures: bool = False) -> list[Observation]:
        """What the score model fits now (:func:`~.records.observations`)."""
        return self._saas.observations(self._snapshot(), failures)

    def relevance(self) -> dict[str, Any] | None:
        """Each dimension's relevance under the last fitted score model (``None`` before one).

        See :mod:`searchers.relevance`; with NUTS, the spread is over its samples.
        """
        return self.score_model.relevance()

    def _fits_early_stopped(self) -> bool:
        return self.multi_fidelity or super()._fits_early_stopped()

    # -- state ---------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        settings = super()._settings()
        settings.update(
            num_restarts=self.num_restarts,
            raw_samples=self.raw_samples,
            mc_samples=self.mc_samples,
            max_baseline=self.max_baseline,
            pad_multiple=self.pad_multiple,
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
        return {**super().get_state(), "map_fit": self.score_model.map_fit}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.score_model.map_fit = state.get("map_fit")

    def _revived(self, old: dict[str, Any]) -> None:
        super()._revived(old)
        self.score_model.map_fit = old.get("_map_fit")
        self.numerical_warnings = dict(old.get("numerical_warnings") or {})
