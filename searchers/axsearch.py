"""A searcher backed by Ax: AutoPEFT's loop, Ax's ``Client`` and generation strategy.

For users of the Ax ecosystem: every suggestion comes from
``ax.api.client.Client.get_next_trials`` on an Ax experiment that holds the
search's trials, so the run is an Ax experiment all along (``client``), with
Ax's own model, transforms, acquisition optimiser and bookkeeping. Ray's
``AxSearch`` fails with Ax 1.3.1 (``'Objective' object has no attribute
'objectives'``) and is single-objective.

What differs from :class:`~.autopeft.AutoPEFTSearcher` (same arguments where
they mean the same):

* Ax models **both** objectives (one SAAS GP each). It has no notion of a
  known objective, so the parameter fraction, exact before training, is
  learned like the score.
* The generation strategy is one Ax node: ``BOTORCH_MODULAR`` with
  BoTorch's ``SaasFullyBayesianSingleTaskGP`` (NUTS with the given settings)
  or its MAP SAAS ensemble (``surrogate="saas-map"``), and
  ``qLogNoisyExpectedHypervolumeImprovement``, the objective thresholds at the
  reference point. Ax chooses the acquisition optimiser (it enumerates small
  discrete spaces and alternates discrete and continuous steps on large ones).
* The initial design is this searcher's own (``num_initial`` uniform draws
  with ``seed``, as in AutoPEFT), attached to Ax as trials; Ax's Sobol step is
  not used.
* ``candidates=`` (search only among these configurations): Ax has no way to
  restrict its acquisition to a set of configurations, so each of its
  proposals that is not an unseen candidate is replaced by the nearest unseen
  one (L1 distance between encodings), and Ax's trial for the proposal is
  abandoned; the experiment holds the candidate that runs, so Ax's model
  learns what was measured. :class:`~.autopeft.AutoPEFTSearcher` instead
  scores every unseen candidate by its acquisition.
* Running trials are Ax trials in state RUNNING: Ax treats them as pending.
  Failed trials are marked failed (Ax does not fit them); early-stopped ones
  are marked abandoned, because the fidelity policy fits only results at the
  target fidelity (``min_fidelity`` reclassifies those above it as complete).

State: the Ax experiment is rebuilt from the searcher's JSON state (records
and running trials) after :meth:`restore`, or when a record changes status
(a retried failure, a trial reclassified when a larger fidelity appears).
A proposal that builds the same model as one already seen
(:meth:`PeftConfiguration.model_key`) is marked abandoned in Ax and asked
again, then replaced by a random configuration.

Cost: slower than :class:`~.autopeft.AutoPEFTSearcher` per suggestion (two
GPs, Ax's larger optimiser settings, which ``num_restarts`` and ``raw_samples``
reduce, and its bookkeeping); each model-based
step's ``timings`` entry splits it into ``fit_s`` and ``acquisition_s`` as Ax
timed them on its generator run. BENCHMARKS.md gives seconds per suggestion,
that split and hypervolume side by side.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from autopeft_ray.config import PAPER_NUTS
from autopeft_ray.objectives import COMPLETED, FAILED, PARAM_FRACTION, SCORE
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.validation import check_int

from .ledger import Snapshot
from .model_based import DEFAULT_JAX_CACHE_DIR, ModelBasedSearcher, derive_seed
from .proposers import RandomProposer, Step
from .records import TrialRecord
from .surrogate import SurrogateSettings, load_fused_kernel

logger = logging.getLogger(__name__)

#: Attempts at an Ax proposal not seen before, then a random configuration.
_ATTEMPTS = 3


@contextmanager
def _quiet_ax() -> Iterator[None]:
    """Ax logs every attach and completion at INFO; keep that out unless debugging."""
    if logging.getLogger("autopeft_ray").isEnabledFor(logging.DEBUG):
        yield
        return
    import ax.api.client  # noqa: F401  (creates Ax's loggers, so that they can be quietened)

    names = [n for n in logging.root.manager.loggerDict if n == "ax" or n.startswith("ax.")]
    loggers = [logging.getLogger(n) for n in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _model_errors() -> tuple[type[BaseException], ...]:
    from ax.exceptions.core import AxError
    from botorch.exceptions.errors import BotorchError

    return (AxError, BotorchError, RuntimeError, ValueError)


class AxPEFTSearcher(ModelBasedSearcher):
    """AutoPEFT's search through Ax's ``Client`` (see the module docstring).

    Args:
        space: the search space.
        cost_fn: ``configuration -> parameter fraction``, reported to Ax as the
            second objective.
        metric: result key of the score.
        mode: ``"max"`` or ``"min"`` for ``metric``.
        num_initial: random configurations before Ax's model is used; ``None`` (the
            default) sizes the initial design as AutoPEFTSearcher does
            (:func:`autopeft_ray.config.initial_design_size`).
        surrogate: ``"saas-nuts"`` (fully Bayesian SAAS GP per objective, NUTS)
            or ``"saas-map"`` (BoTorch's ``EnsembleMapSaasSingleTaskGP``).
        nuts_warmup: NUTS warmup steps (paper: 128).
        nuts_samples: NUTS samples (paper: 64).
        nuts_thinning: keep every ``nuts_thinning``-th sample (paper: 4).
        reference_point: ``(score, param_fraction)`` in natural units, the Ax
            objective thresholds. Default: score 0.0 and the fraction of the
            space's largest configuration; required when ``mode="min"``.
            ``"auto"``: inferred from the observed front at each step (as
            :class:`~.autopeft.AutoPEFTSearcher`).
        seed: seeds the initial design, Ax's client and each step's torch RNG.
        min_fidelity: also fit early-stopped results at or above this fidelity.
        max_t: target fidelity of results that do not report ``target_fidelity``.
        fixed_config: settings merged into every trial config.
        max_concurrent: ``suggest`` returns ``None`` while this many trials run.
        points_to_evaluate: configurations to try first (count towards ``num_initial``).
        jax_cache_dir: JAX's persistent compilation cache for NUTS (see
            :class:`~.autopeft.AutoPEFTSearcher`); ``None`` leaves JAX alone.
        num_restarts: starts of Ax's acquisition optimiser (its discrete local
            search on large spaces); ``None``: Ax's default (20).
        raw_samples: random points Ax scores to choose the starts; ``None``:
            Ax's default (1024).
        candidates: search only among these configurations (see
            :class:`~autopeft_ray.searchers.PeftSearcherBase`); a proposal of Ax's
            that is not an unseen candidate is replaced by the nearest one.

    Example:
        >>> searcher = AxPEFTSearcher(space, ParamCost.from_model(name), num_initial=20)
        >>> tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher))
        >>> searcher.client.get_pareto_frontier()  # Ax's own analyses, on the live search
    """

    def __init__(
        self,
        space: SearchSpace,
        cost_fn: Callable[[PeftConfiguration], float],
        metric: str = SCORE,
        mode: str = "max",
        num_initial: int | None = None,
        surrogate: str = "saas-nuts",
        nuts_warmup: int = PAPER_NUTS[0],
        nuts_samples: int = PAPER_NUTS[1],
        nuts_thinning: int = PAPER_NUTS[2],
        reference_point: Sequence[float] | str | None = None,
        seed: int | None = None,
        min_fidelity: float | None = None,
        max_t: float | None = None,
        fixed_config: Mapping[str, Any] | None = None,
        max_concurrent: int | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any] | PeftConfiguration] | None = None,
        jax_cache_dir: str | None = DEFAULT_JAX_CACHE_DIR,
        num_restarts: int | None = None,
        raw_samples: int | None = None,
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
        self.num_restarts = check_int("num_restarts", num_restarts, allow_none=True)
        self.raw_samples = check_int("raw_samples", raw_samples, allow_none=True)
        self._rebuild()

    def _rebuild(self) -> None:
        """A new Ax proposer: its client is rebuilt from the records on first use."""
        optimizer = {"num_restarts": self.num_restarts, "raw_samples": self.raw_samples}
        self._ax = AxProposer(
            self.space,
            self._cost,
            self._random,
            seed=self.seed,
            settings=self.surrogate_settings,
            optimizer={k: v for k, v in optimizer.items() if v is not None},
        )

    @property
    def client(self) -> Any:
        """The Ax ``Client`` holding this search, up to date (built on first use)."""
        return self._ax.client(self._snapshot())

    def _model_step(self, snapshot: Snapshot) -> PeftConfiguration | None:
        step = self._ax.propose(snapshot, self._rng)
        self.timings.extend(step.timings)
        return step.config

    # -- state ---------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        settings = super()._settings()
        settings.update(num_restarts=self.num_restarts, raw_samples=self.raw_samples)
        return settings

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickled before the optimiser's options were arguments: Ax's defaults.
        super().__setstate__({"num_restarts": None, "raw_samples": None, **state})
        # The Ax proposer holds only caches of the records: a new one (which also
        # brings one pickled by an older version up to date).
        self._rebuild()

    def __repr__(self) -> str:
        return (
            f"AxPEFTSearcher(surrogate={self.surrogate!r}, num_initial={self.num_initial}, "
            f"seed={self.seed})"
        )


class AxProposer:
    """One step of Ax's generation strategy on an Ax experiment that mirrors the snapshot.

    The experiment is built from the snapshot's records and running trials, and
    rebuilt when a record changed status (a retried failure, a trial
    reclassified when a larger fidelity appears); it is a cache, not state.
    When Ax proposes only configurations seen, or its step raises, ``random``
    draws one instead, as :class:`~.saas.SaasProposer` does.
    """

    def __init__(
        self,
        space: SearchSpace,
        cost: Callable[[PeftConfiguration], float],
        random_proposer: RandomProposer,
        *,
        seed: int,
        settings: SurrogateSettings,
        optimizer: Mapping[str, Any] | None = None,
    ) -> None:
        self.space = space
        self.cost = cost
        self.random = random_proposer
        self.seed = seed
        self.settings = settings
        #: Options of Ax's acquisition optimiser (``num_restarts``, ``raw_samples``).
        self.optimizer = dict(optimizer or {})
        self._reset_client()

    def __repr__(self) -> str:
        return f"AxPEFTSearcher(surrogate={self.settings.surrogate!r}, seed={self.seed})"

    def __getstate__(self) -> dict[str, Any]:
        # The Ax client is a cache of the records: a restored searcher rebuilds it.
        return {
            **self.__dict__,
            "_client": None,
            "_ax_index": {},
            "_ax_reported": [],
            "_generated": {},
        }

    def _reset_client(self) -> None:
        self._client: Any = None
        #: Ray trial id -> Ax trial index, for trials attached while running.
        self._ax_index: dict[str, int] = {}
        #: (trial id, status) of the records already reported to Ax, in order.
        self._ax_reported: list[tuple[str, str]] = []
        #: Canonical configuration -> Ax trial index of the last accepted proposal.
        self._generated: dict[PeftConfiguration, int] = {}

    def client(self, snapshot: Snapshot) -> Any:
        """The Ax ``Client`` holding ``snapshot``'s trials (built on first use)."""
        with _quiet_ax():
            return self._synced_client(snapshot)

    def _new_client(self, snapshot: Snapshot) -> Any:
        from ax.api.client import Client

        client = Client(random_seed=derive_seed(self.seed, "ax"))
        client.configure_experiment(
            parameters=self.space.to_ax_parameters(), name="autopeft", description=repr(self)
        )
        score, fraction = snapshot.reference
        better = ">=" if snapshot.mode == "max" else "<="
        client.configure_optimization(
            objective=f"{'' if snapshot.mode == 'max' else '-'}{SCORE}, -{PARAM_FRACTION}",
            outcome_constraints=[f"{SCORE} {better} {score}", f"{PARAM_FRACTION} <= {fraction}"],
        )
        client.set_generation_strategy(self._generation_strategy())
        return client

    def _generation_strategy(self) -> Any:
        from ax.adapter.registry import Generators
        from ax.generation_strategy.generation_node import GenerationNode
        from ax.generation_strategy.generation_strategy import GenerationStrategy
        from ax.generation_strategy.generator_spec import GeneratorSpec
        from ax.generators.torch.botorch_modular.surrogate import SurrogateSpec
        from ax.generators.torch.botorch_modular.utils import ModelConfig
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )
        from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP
        from botorch.models.map_saas import EnsembleMapSaasSingleTaskGP

        nuts = self.settings.nuts
        if self.settings.surrogate == "saas-map":
            config = ModelConfig(botorch_model_class=EnsembleMapSaasSingleTaskGP, name="MAP-SAAS")
        else:
            config = ModelConfig(
                botorch_model_class=SaasFullyBayesianSingleTaskGP,
                mll_options={
                    "warmup_steps": nuts.warmup_steps,
                    "num_samples": nuts.num_samples,
                    "thinning": nuts.thinning,
                    "max_tree_depth": nuts.max_tree_depth,
                    "disable_progbar": True,
                },
                name="SAAS-NUTS",
            )
        spec = GeneratorSpec(
            generator_enum=Generators.BOTORCH_MODULAR,
            generator_kwargs={
                "surrogate_spec": SurrogateSpec(model_configs=[config]),
                "botorch_acqf_class": qLogNoisyExpectedHypervolumeImprovement,
            },
            generator_gen_kwargs=(
                {"model_gen_options": {"optimizer_kwargs": dict(self.optimizer)}}
                if self.optimizer
                else {}
            ),
        )
        node = GenerationNode(name="SAAS+qLogNEHVI", generator_specs=[spec])
        return GenerationStrategy(name=f"autopeft-ax:{self.settings.surrogate}", nodes=[node])

    def _synced_client(self, snapshot: Snapshot) -> Any:
        """Bring the Ax experiment up to date with the snapshot's records and running trials."""
        records = snapshot.records
        reported = [(r.trial_id, r.status) for r in records[: len(self._ax_reported)]]
        if self._client is None or reported != self._ax_reported:
            self._reset_client()
            self._client = self._new_client(snapshot)
        for record in records[len(self._ax_reported) :]:
            self._report(self._trial_index(record.trial_id, record.config), record)
            self._ax_reported.append((record.trial_id, record.status))
        for trial_id, config in snapshot.pending:
            self._ax_index[trial_id] = self._trial_index(trial_id, config)
        return self._client

    def _trial_index(self, trial_id: str, config: PeftConfiguration) -> int:
        """The Ax trial of a Ray trial: proposed by Ax, or attached now."""
        index = self._ax_index.pop(trial_id, None)
        if index is None:
            index = self._generated.pop(config.model_key(), None)
        if index is None:
            flat = config.to_dict()  # Ax knows the searched keys only, not the fixed ones
            parameters = {d.name: int(flat[d.name]) for d in self.space.dimensions}
            index = int(self._client.attach_trial(parameters, arm_name=trial_id))
        return index

    def _report(self, index: int, record: TrialRecord) -> None:
        client = self._client
        if record.status == COMPLETED and record.score is not None:
            fraction = record.param_fraction
            if fraction is None:
                fraction = float(self.cost(record.config))
            client.complete_trial(index, raw_data={SCORE: record.score, PARAM_FRACTION: fraction})
        elif record.status == FAILED:
            client.mark_trial_failed(index, failed_reason=record.reason)
        else:  # stopped early: not fitted (the fidelity policy), never proposed again
            client.mark_trial_abandoned(index)

    def propose(self, snapshot: Snapshot, rng: random.Random) -> Step:
        """Ax's next trial, or a random configuration when Ax proposed only configurations
        seen or its step raised (logged)."""
        step = Step(None)
        try:
            step.config = self._ax_step(snapshot, step)
        except _model_errors():
            logger.exception("Ax step failed; sampling at random instead.")
            n = len(snapshot.with_status(COMPLETED))
            step.timings.append({"n_observations": n, "fallback": "error"})
        if step.config is None:
            step.config = self.random.draw(snapshot.seen, rng)
        return step

    def _ax_step(self, snapshot: Snapshot, step: Step) -> PeftConfiguration | None:
        start = time.perf_counter()
        self.settings.prepare()
        # Ax builds qLogNEHVI itself: load BoTorch's fused kernel first, as the autopeft
        # searcher does, or Ax's first acquisition JIT-builds it with the first ninja on
        # PATH, and a process running both searchers rebuilt it for each.
        load_fused_kernel()
        step_seed = derive_seed(self.seed, "ax-step", snapshot.num_suggested)
        numpy_state = np.random.get_state()
        config = None
        mapped = False  # Ax's proposal replaced by the nearest unseen candidate
        fit_s = acquisition_s = 0.0
        try:
            with _quiet_ax(), torch.random.fork_rng():
                torch.manual_seed(step_seed)
                np.random.seed(step_seed)
                # A client built afresh from the records and pending trials: a restored
                # searcher rebuilds its client, so the original must propose from the same
                # experiment (no proposals it abandoned, no Ax-generated arms) to continue
                # identically.
                self._reset_client()
                client = self._synced_client(snapshot)
                for _ in range(_ATTEMPTS):
                    ((index, parameters),) = client.get_next_trials(max_trials=1).items()
                    # Ax times its own steps on the generator run: the model fit and
                    # the acquisition (its optimisation included).
                    generator_run = client._experiment.trials[index].generator_runs[0]  # noqa: SLF001
                    fit_s += generator_run.fit_time or 0.0
                    acquisition_s += generator_run.gen_time or 0.0
                    proposal = self.space.from_trial_config(parameters)
                    if self.random.candidates is not None:
                        config = self.random.nearest_unseen_candidate(proposal, snapshot.seen)
                        if config is not None and config.model_key() == proposal.model_key():
                            self._generated[proposal.model_key()] = int(index)
                        else:  # the candidate that runs is attached when the client syncs
                            client.mark_trial_abandoned(index)
                            mapped = config is not None
                        break
                    if proposal.model_key() not in snapshot.seen:
                        self._generated[proposal.model_key()] = int(index)
                        config = proposal
                        break
                    # The same model as one seen (a degenerate encoding): ask again.
                    client.mark_trial_abandoned(index)
        finally:
            np.random.set_state(numpy_state)
        step.timings.append(
            {
                "n_observations": len(snapshot.with_status(COMPLETED)),
                "n_pending": len(snapshot.pending),
                "fit_s": round(fit_s, 4),
                "acquisition_s": round(acquisition_s, 4),
                "total_s": round(time.perf_counter() - start, 4),
                "fallback": None if config is not None else "no unseen candidate",
                **({"mapped": mapped} if self.random.candidates is not None else {}),
            }
        )
        return config
