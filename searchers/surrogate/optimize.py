"""Optimising the acquisition: discrete local search on the lattice of encodings."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
from botorch.acquisition.multi_objective.logei import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.optim.optimize import optimize_acqf_discrete_local_search
from torch import Tensor

from autopeft_ray.objectives.pareto import pareto_mask
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import canonical_encoding

from .model import DTYPE


def optimize_acquisition(
    acquisition: qLogNoisyExpectedHypervolumeImprovement,
    space: SearchSpace,
    X_avoid: Tensor,
    initial: Tensor | None,
    num_restarts: int,
    raw_samples: int,
    max_batch_size: int = 2048,
) -> tuple[Tensor, float]:
    """Local search over the lattice of encodings, one candidate (``d``) and its value.

    ``initial`` (``n x d``) are the starting points (neighbours of Pareto-set
    members); rows in ``X_avoid`` are never returned. BoTorch fills up to
    ``num_restarts`` starts from ``raw_samples`` random points.
    """
    choices = [torch.tensor(c, dtype=DTYPE) for c in space.encoded_choices()]
    if initial is not None and len(initial):
        initial = initial.to(DTYPE)
        keep = ~(initial.unsqueeze(-2) == X_avoid.unsqueeze(-3)).all(-1).any(-1)
        initial = initial[keep]
    starts = initial.unsqueeze(1) if initial is not None and len(initial) else None
    candidate, value = optimize_acqf_discrete_local_search(
        acq_function=acquisition,
        discrete_choices=choices,
        q=1,
        num_restarts=num_restarts,
        raw_samples=raw_samples,
        X_avoid=X_avoid.to(DTYPE),
        batch_initial_conditions=starts,
        max_batch_size=max_batch_size,
    )
    return candidate[0], float(value.reshape(-1)[0])


def pareto_neighbour_starts(
    space: SearchSpace,
    data: Sequence[Sequence[Any]],
    cost: Callable[[PeftConfiguration], float],
    seen: Collection[PeftConfiguration],
    num_restarts: int,
    rng: random.Random,
) -> Tensor | None:
    """Random unseen neighbours of the Pareto-set members of ``(configuration, utility,
    ...)`` data, as local-search starts (paper: 10 restarts); ``None`` if there are none."""
    points = [(utility, cost(config)) for config, utility, *_ in data]
    mask = pareto_mask(points)
    members = [row[0] for row, keep in zip(data, mask, strict=True) if keep]
    neighbours: dict[PeftConfiguration, list[float]] = {}
    for config in members:
        for near in space.neighbours(config):
            key = near.model_key()
            if key not in seen and key not in neighbours:
                neighbours[key] = canonical_encoding(space, near)
    if not neighbours:
        return None
    chosen = rng.sample(list(neighbours.values()), min(num_restarts, len(neighbours)))
    return torch.tensor(chosen, dtype=DTYPE)
