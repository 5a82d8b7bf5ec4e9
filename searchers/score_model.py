"""The AutoPEFT searcher's score model: its fit, cached until new results arrive, and its inputs.

A mixin of :class:`~.autopeft.AutoPEFTSearcher`: one fit per number of
observations (a batch of suggestions, or a background queue, costs one fit),
and so for the feasibility model once a trial has failed;
MAP fits start from the prior's defaults and from the last one's mode, the
better kept; the known cost of encodings is cached; with ``cost_input=True``
the model sees each configuration's parameter fraction too
(:mod:`.surrogate.inputs`).
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
    NutsSettings,
    enable_compilation_cache,
    fit_feasibility_model,
    fit_score_model,
    warm_map_fit,
)


class ScoreModelCache:
    """The fitted score model of the host searcher, and what it needs to be fitted."""

    # What the host searcher has (PeftSearcherBase, ModelBasedSearcher, AutoPEFTSearcher).
    space: SearchSpace
    seed: int
    surrogate: str
    nuts: NutsSettings
    pad_multiple: int
    jax_cache_dir: str | None
    multi_fidelity: bool
    cost_input: bool
    _cost: Callable[[PeftConfiguration], float]
    _default_fraction: float
    _model_cache: tuple[int, Model] | None
    _feasibility_cache: tuple[tuple[int, int], Model] | None
    _known_cost: KnownCost | None
    _map_fit: dict[str, Any] | None

    def _fitted_model(self, X: torch.Tensor, Y: torch.Tensor) -> Model:
        n = len(X)
        if self._model_cache is not None and self._model_cache[0] == n:
            return self._model_cache[1]
        seed = derive_seed(self.seed, "nuts", n)
        model: Model
        if self.surrogate == "saas-map":
            # Cold and warm (from the last fit's mode), the better kept; refitting the
            # same data (after a restore) starts where that fit started: the same model.
            model, self._map_fit = warm_map_fit(X, Y, seed, self._map_fit, self.multi_fidelity)
        else:
            enable_compilation_cache(self.jax_cache_dir)
            model = fit_score_model(X, Y, self.nuts, seed=seed, pad_multiple=self.pad_multiple)
        self._model_cache = (n, model)
        return model

    def _fitted_feasibility(self, X: torch.Tensor, Y: torch.Tensor) -> Model:
        """The feasibility model of ``X`` and +-1 values ``Y`` (:mod:`.surrogate.feasibility`),
        cached like the score model until new outcomes arrive (or a failed trial, rerun,
        ran: the same number of rows, one failure less)."""
        key = (len(X), int((Y > 0).sum()))
        if self._feasibility_cache is not None and self._feasibility_cache[0] == key:
            return self._feasibility_cache[1]
        model = fit_feasibility_model(X, Y, derive_seed(self.seed, "feasibility", len(X)))
        self._feasibility_cache = (key, model)
        return model

    def _known(self) -> KnownCost:
        """The known cost of encodings, with its cache (built on first use)."""
        if self._known_cost is None:
            self._known_cost = KnownCost(self.space, self._cost)
        return self._known_cost

    def relevance(self) -> dict[str, Any] | None:
        """Each dimension's relevance under the last fitted score model (``None`` before one).

        See :mod:`searchers.relevance`; with NUTS, the spread is over its samples.
        """
        if self._model_cache is None:
            return None
        n, model = self._model_cache
        extra = [PARAM_FRACTION] if self.cost_input else []
        return model_relevance(
            self.space, model, source=self.surrogate, n_observations=n, extra_inputs=extra
        )

    def _cost_input(self) -> CostInput | None:
        """The parameter fraction as a model input (``None`` unless ``cost_input``)."""
        return CostInput(self._known(), self._default_fraction) if self.cost_input else None
