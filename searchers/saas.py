"""The AutoPEFT model step: a SAAS GP of the score, qLogNEHVI, and local search on the lattice.

:class:`SaasProposer` is the proposer of :class:`~.autopeft.AutoPEFTSearcher`
(:mod:`.proposers`): from a snapshot of the search it fits the score model
(:class:`~.score_model.ScoreModel`), and once a trial has failed the
feasibility model, builds qLogNEHVI over (score, known parameter fraction)
with the running trials as pending points, and optimises it by local search
started from neighbours of the Pareto set, or by scoring every unseen
configuration of a small space or of the given ``candidates``. A step that
raises (numerical trouble) is logged, recorded in the step's timings and
replaced by a random configuration, so a long search does not stop.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import numpy as np
import torch
from botorch.models.model import Model

from autopeft_ray.objectives import COMPLETED, FAILED, to_maximization
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import canonical_encoding

from .fit_warnings import count_harmless_warnings
from .ledger import Snapshot
from .model_based import derive_seed
from .proposers import RandomProposer, Step
from .records import (
    Observation,
    feasibility_observations,
    observations,
    one_per_configuration,
)
from .score_model import ScoreModel
from .surrogate import (
    DTYPE,
    FeasibilityInputs,
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


class SaasProposer:
    """The model-based step of :class:`~.autopeft.AutoPEFTSearcher` (see its arguments)."""

    def __init__(
        self,
        model: ScoreModel,
        random_proposer: RandomProposer,
        *,
        seed: int,
        num_restarts: int,
        raw_samples: int,
        mc_samples: int,
        max_baseline: int | None,
        model_failures: bool,
        model_feasibility: bool,
    ) -> None:
        self.model = model
        self.random = random_proposer
        self.space = model.space
        self.seed = seed
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.mc_samples = mc_samples
        self.max_baseline = max_baseline
        self.model_failures = model_failures
        self.model_feasibility = model_feasibility

    def observations(self, snapshot: Snapshot, failures: bool = False) -> list[Observation]:
        """What the score model fits (:func:`~.records.observations`); ``failures``: imputed too."""
        return observations(
            list(snapshot.records),
            snapshot.utility,
            model_failures=failures,
            multi_fidelity=self.model.multi_fidelity,
            default_target=snapshot.default_target,
        )

    def propose(self, snapshot: Snapshot, rng: random.Random) -> Step:
        """One model-based configuration, or a random one if the model step fails."""
        step = Step(None)
        try:
            step.config = self._model_based(snapshot, step)
        except (RuntimeError, ValueError):
            logger.exception("Model-based step failed; sampling at random instead.")
            n = len(snapshot.with_status(COMPLETED))
            step.timings.append({"n_observations": n, "fallback": "error"})
        if step.config is None:
            step.config = self.random.draw(snapshot.seen, rng)
        return step

    def _model_based(self, snapshot: Snapshot, step: Step) -> PeftConfiguration | None:
        start = time.perf_counter()
        results = self.observations(snapshot)
        data = self.observations(snapshot, self.model_failures)
        multi_fidelity, cost_input = self.model.multi_fidelity, self.model.cost_inputs()
        X = model_inputs(self.space, data, multi_fidelity, cost_input)
        Y = torch.tensor([[utility] for _, utility, _ in data], dtype=DTYPE)
        step_seed = derive_seed(self.seed, "acquisition", snapshot.num_suggested)
        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng(), count_harmless_warnings(step.warnings):
                torch.manual_seed(step_seed)
                np.random.seed(step_seed)
                model = self.model.fit(X, Y)
                fitted = time.perf_counter()
                model = on_encodings(model, multi_fidelity, cost_input)
                feasibility = self._feasibility(snapshot)
                feasible = time.perf_counter()
                baseline = model_inputs(self.space, one_per_configuration(data), False)
                config, value = self._optimize(
                    snapshot, model, baseline, results, step_seed, feasibility
                )
        finally:
            np.random.set_state(numpy_state)
        done = time.perf_counter()
        step.timings.append(
            {
                "n_observations": len(data),
                "n_failed_imputed": len(data) - len(results),
                "n_pending": len(snapshot.pending),
                "fit_s": round(fitted - start, 4),
                "feasibility_fit_s": (None if feasibility is None else round(feasible - fitted, 4)),
                "acquisition_s": round(done - feasible, 4),
                "total_s": round(done - start, 4),
                "log_nehvi": value,
                "fallback": None if config is not None else "no unseen candidate",
            }
        )
        return config

    def _feasibility(self, snapshot: Snapshot) -> Model | None:
        """The feasibility model on encodings, once a trial has failed (``None`` before,
        or with ``model_feasibility=False``): :mod:`.surrogate.feasibility`."""
        if not self.model_feasibility or not snapshot.with_status(FAILED):
            return None
        data = feasibility_observations(list(snapshot.records))
        inputs = FeasibilityInputs(self.space)
        X = inputs(model_inputs(self.space, data, False))
        Y = torch.tensor([[value] for _, value, _ in data], dtype=DTYPE)
        return OnInputs(self.model.fit_feasibility(X, Y), inputs)

    def _optimize(
        self,
        snapshot: Snapshot,
        score_model: Model,
        X: torch.Tensor,
        data: list[Observation],
        seed: int,
        feasibility: Model | None = None,
    ) -> tuple[PeftConfiguration | None, float | None]:
        model = build_model(self.space, score_model, self.model.known(), feasibility)
        score, fraction = snapshot.reference
        reference = to_maximization(snapshot.utility(score), fraction)
        pending = [canonical_encoding(self.space, c) for _, c in snapshot.pending]
        X_pending = torch.tensor(pending, dtype=DTYPE).reshape(-1, X.shape[-1])
        acquisition = build_acquisition(
            model, reference, X, X_pending, self.mc_samples, seed, self.max_baseline
        )
        if self.random.candidates is not None:
            return _best_of(self.space, acquisition, self.random.unseen_candidates(snapshot.seen))
        if self.space.cardinality <= ENUMERATE_SPACE:
            left = self.random.unseen_configurations(snapshot.seen)
            return _best_of(self.space, acquisition, left)
        seen = [canonical_encoding(self.space, r.config) for r in snapshot.records] + pending
        X_avoid = torch.tensor(seen, dtype=DTYPE).reshape(-1, X.shape[-1])
        initial = pareto_neighbour_starts(
            self.space,
            data,
            self.model.cost,
            snapshot.seen,
            self.num_restarts,
            random.Random(seed),
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
            if config.model_key() not in snapshot.seen:
                return config, value
            # Another encoding of a model already seen (degenerate): exclude, retry.
            X_avoid = torch.cat([X_avoid, candidate.reshape(1, -1)])
        return None, None


def _best_of(
    space: SearchSpace, acquisition: Any, left: list[PeftConfiguration]
) -> tuple[PeftConfiguration | None, float | None]:
    """The configuration of ``left`` (unseen) with the largest acquisition value."""
    if not left:
        return None, None
    X = torch.tensor([canonical_encoding(space, c) for c in left], dtype=DTYPE)
    with torch.no_grad():
        values = torch.cat([acquisition(chunk.unsqueeze(1)) for chunk in X.split(CANDIDATE_BATCH)])
    best = int(values.argmax())
    return left[best], float(values[best])
