"""The AutoPEFT score model: its fit, cached until new results arrive, and its inputs.

One fit per number of observations (a batch of suggestions, or a background
queue, costs one fit), and so for the feasibility model once a trial has
failed; MAP fits start from the prior's defaults and from the last one's
mode, the better kept (the last fit is part of the searcher's state); the
known cost of encodings is cached; with ``cost_input=True`` the model sees
each configuration's parameter fraction too (:mod:`.surrogate.inputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from botorch.models.model import Model

from autopeft_ray.objectives import PARAM_FRACTION
from autopeft_ray.space import PeftConfiguration, SearchSpace

from .model_based import derive_seed
from .relevance import model_relevance
from .surrogate import (
    CostInput,
    KnownCost,
    SurrogateSettings,
    fit_feasibility_model,
    fit_score_model,
    warm_map_fit,
)


class ScoreModel:
    """Fits the score model (NUTS or MAP SAAS GP) and the feasibility model, with caches.

    Args:
        space: the search space.
        cost: ``configuration -> parameter fraction``.
        seed: the searcher's seed; each fit's seed derives from it and the data size.
        settings: the surrogate (NUTS or MAP), its NUTS budget and JAX's cache.
        pad_multiple: NUTS sees data padded to a multiple of this many rows.
        multi_fidelity: the inputs end with a fidelity column.
        cost_input: the inputs include the parameter fraction (log scale).
        default_fraction: the fraction that scales the cost input.
    """

    def __init__(
        self,
        space: SearchSpace,
        cost: Callable[[PeftConfiguration], float],
        *,
        seed: int,
        settings: SurrogateSettings,
        pad_multiple: int,
        multi_fidelity: bool,
        cost_input: bool,
        default_fraction: float,
    ) -> None:
        self.space = space
        self.cost = cost
        self.seed = seed
        self.settings = settings
        self.pad_multiple = pad_multiple
        self.multi_fidelity = multi_fidelity
        self.cost_input = cost_input
        self.default_fraction = default_fraction
        #: The last MAP fit: its observations, where it started, its hyperparameters
        #: (the next fit starts from them). Part of the searcher's state.
        self.map_fit: dict[str, Any] | None = None
        self._fitted: tuple[int, Model] | None = None
        self._feasibility: tuple[tuple[int, int], Model] | None = None
        self._known: KnownCost | None = None

    def fit(self, X: torch.Tensor, Y: torch.Tensor) -> Model:
        """The score model of inputs ``X`` and utilities ``Y`` (cached per data size)."""
        n = len(X)
        if self._fitted is not None and self._fitted[0] == n:
            return self._fitted[1]
        seed = derive_seed(self.seed, "nuts", n)
        model: Model
        if self.settings.surrogate == "saas-map":
            # Cold and warm (from the last fit's mode), the better kept; refitting the
            # same data (after a restore) starts where that fit started: the same model.
            model, self.map_fit = warm_map_fit(X, Y, seed, self.map_fit, self.multi_fidelity)
        else:
            self.settings.prepare()
            model = fit_score_model(
                X, Y, self.settings.nuts, seed=seed, pad_multiple=self.pad_multiple
            )
        self._fitted = (n, model)
        return model

    def fit_feasibility(self, X: torch.Tensor, Y: torch.Tensor) -> Model:
        """The feasibility model of ``X`` and +-1 values ``Y`` (:mod:`.surrogate.feasibility`),
        cached until new outcomes arrive (or a failed trial, rerun, ran: the same number
        of rows, one failure less)."""
        key = (len(X), int((Y > 0).sum()))
        if self._feasibility is not None and self._feasibility[0] == key:
            return self._feasibility[1]
        model = fit_feasibility_model(X, Y, derive_seed(self.seed, "feasibility", len(X)))
        self._feasibility = (key, model)
        return model

    @property
    def fitted(self) -> tuple[int, Model] | None:
        """``(observations, model)`` of the last score-model fit (``None`` before one)."""
        return self._fitted

    @property
    def feasibility(self) -> tuple[tuple[int, int], Model] | None:
        """``((rows, failures), model)`` of the last feasibility fit (``None`` before one)."""
        return self._feasibility

    def known(self) -> KnownCost:
        """The known cost of encodings, with its cache (built on first use)."""
        if self._known is None:
            self._known = KnownCost(self.space, self.cost)
        return self._known

    def cost_inputs(self) -> CostInput | None:
        """The parameter fraction as a model input (``None`` unless ``cost_input``)."""
        return CostInput(self.known(), self.default_fraction) if self.cost_input else None

    def relevance(self) -> dict[str, Any] | None:
        """Each dimension's relevance under the last fitted score model (``None`` before one).

        See :mod:`searchers.relevance`; with NUTS, the spread is over its samples.
        """
        if self._fitted is None:
            return None
        n, model = self._fitted
        extra = [PARAM_FRACTION] if self.cost_input else []
        return model_relevance(
            self.space, model, source=self.settings.surrogate, n_observations=n, extra_inputs=extra
        )

    def __getstate__(self) -> dict[str, Any]:
        # Fitted models are caches, not state (the last MAP fit is: it is JSON).
        return {**self.__dict__, "_fitted": None, "_feasibility": None, "_known": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "settings" not in state:  # pickled before the settings were one object
            state["settings"] = SurrogateSettings(
                state.pop("surrogate"), state.pop("nuts"), state.pop("jax_cache_dir")
            )
        self.__dict__.update(state)
