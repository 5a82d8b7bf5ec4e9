"""What the score model sees of a configuration: its encoding, and what is known of it.

The score model's inputs are a configuration's encoding (one column per
dimension), then optionally:

* its parameter fraction, on a log scale (``cost_input=True``,
  :class:`CostInput`). The fraction is known for every configuration, and
  the score usually grows with capacity; a SAAS GP over the encoding alone
  must find that trend spread over 15 dimensions (each layer bit adds a
  little), which it cannot from tens of observations: without it the model
  believes that one-layer configurations score like eight-layer ones, and
  qLogNEHVI proposes the cheapest (rank correlations with and without it:
  BENCHMARKS.md, "The fraction as a model input"). The SAAS prior shrinks
  this input like any other where the data do not need it.
* its fidelity (``multi_fidelity=True``, :mod:`.fidelity`), always last, as
  :func:`~..records.fidelity_input` maps it to [0, 1]. It is defined with
  the records, which the random searcher imports without this package.

The acquisition works on encodings only: :class:`AppendInputs` wraps the
fitted model and computes the extra columns of any ``X`` it is asked about,
so the known cost, canonicalisation, pending points and the local search are
unchanged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from botorch.models.model import Model
from botorch.posteriors import Posterior
from torch import Tensor

from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import canonical_encoding

from .model import DTYPE, KnownCost

#: Decades of parameter fraction below the largest configuration's that the
#: cost input spans: [largest / 10^5, largest] -> [0, 1]. The smallest
#: non-empty configuration of BERT-base (a size-1 module on one layer) is
#: 10^-4.1 to 10^-4.3 of the largest.
COST_DECADES = 5.0


class CostInput:
    """A configuration's parameter fraction as a model input: its log, scaled to [0, 1].

    ``1 + log10(fraction / largest) / COST_DECADES``, clipped, where
    ``largest`` is the fraction of the space's largest configuration; a
    configuration without modules is 0. :meth:`of` takes a configuration,
    calling it takes encodings (``... x d`` -> ``... x 1``, through the
    cached :class:`~.model.KnownCost`).
    """

    def __init__(self, known_cost: KnownCost, largest_fraction: float) -> None:
        self.known_cost = known_cost
        self.largest = float(largest_fraction)

    def scaled(self, fraction: float) -> float:
        if fraction <= 0 or self.largest <= 0:
            return 0.0
        return min(1.0, max(0.0, 1.0 + math.log10(fraction / self.largest) / COST_DECADES))

    def of(self, config: PeftConfiguration) -> float:
        return self.scaled(float(self.known_cost.cost_fn(config.model_key())))

    def __call__(self, X: Tensor) -> Tensor:
        fractions = -self.known_cost(X)
        if self.largest <= 0:
            return torch.zeros_like(fractions)
        logs = torch.log10(fractions.clamp_min(1e-300) / self.largest)
        scaled = (1.0 + logs / COST_DECADES).clamp(0.0, 1.0)
        return torch.where(fractions > 0, scaled, torch.zeros_like(scaled))


def model_inputs(
    space: SearchSpace,
    data: Sequence[tuple[PeftConfiguration, float, float]],
    multi_fidelity: bool,
    cost_input: CostInput | None = None,
) -> Tensor:
    """``n x width`` inputs of ``(configuration, utility, fidelity input)`` data.

    Columns: the encoding, then the :class:`CostInput` if given, then the
    fidelity input if ``multi_fidelity``.
    """
    rows = [
        canonical_encoding(space, config)
        + ([cost_input.of(config)] if cost_input is not None else [])
        + ([level] if multi_fidelity else [])
        for config, _, level in data
    ]
    width = len(space.dimensions) + int(cost_input is not None) + int(multi_fidelity)
    return torch.tensor(rows, dtype=DTYPE).reshape(-1, width)


class OnInputs(Model):
    """A fitted model asked about encodings: ``posterior(X)`` is ``model``'s at ``inputs(X)``.

    The one wrapper between what the acquisition optimises (encodings) and what
    a model was fitted on (extra columns, :class:`AppendInputs`; the
    feasibility model's own inputs, :class:`~.feasibility.FeasibilityInputs`).
    BoTorch's ensemble flags are the wrapped model's, so a NUTS model stays a
    fully Bayesian one to qLogNEHVI and its samplers.
    """

    def __init__(self, model: Model, inputs: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.inputs = inputs
        self._is_fully_bayesian = bool(getattr(model, "_is_fully_bayesian", False))
        self._is_ensemble = bool(getattr(model, "_is_ensemble", False))

    @property
    def num_outputs(self) -> int:
        return int(self.model.num_outputs)

    @property
    def batch_shape(self) -> torch.Size:
        return self.model.batch_shape

    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> Posterior:
        return self.model.posterior(
            self.inputs(X),
            output_indices=output_indices,
            observation_noise=observation_noise,
            posterior_transform=posterior_transform,
            **kwargs,
        )


class AppendInputs(OnInputs):
    """A model asked about ``X`` with ``extra(X)`` appended as its last input columns."""

    def __init__(self, model: Model, extra: Callable[[Tensor], Tensor]) -> None:
        super().__init__(model, functools.partial(_append, extra))


def _append(extra: Callable[[Tensor], Tensor], X: Tensor) -> Tensor:
    return torch.cat([X, extra(X)], dim=-1)
