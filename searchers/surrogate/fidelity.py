"""Learning from every rung: the fidelity as one more input of the score model.

With ``multi_fidelity=True`` the searcher fits early-stopped results too:
each observation's inputs are its configuration's encoding and its
:func:`~autopeft_ray.searchers.records.fidelity_input` (0 at a thousandth of
the target, 1 at the target; ASHA's geometric rungs evenly spaced). The SAAS
prior treats the fidelity as any other dimension: its lengthscale is learned,
so the data decide how much a low rung says about the target.

Everything else works on configurations: the acquisition sees the score
model through :class:`AtTargetFidelity`, which asks it about the target
fidelity, so the known cost, canonicalisation, pending points, the pruned
baseline and the local search are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from botorch.models.model import Model
from botorch.posteriors import Posterior
from torch import Tensor

from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import canonical_encoding

from .model import DTYPE

#: The input's name where dimensions are listed (relevance).
FIDELITY_INPUT = "fidelity"


def model_inputs(
    space: SearchSpace,
    data: Sequence[tuple[PeftConfiguration, float, float]],
    multi_fidelity: bool,
) -> Tensor:
    """``n x d`` encodings of ``(configuration, utility, fidelity input)`` data,
    with the fidelity input as column ``d + 1`` when ``multi_fidelity``."""
    rows = [
        canonical_encoding(space, config) + ([level] if multi_fidelity else [])
        for config, _, level in data
    ]
    width = len(space.dimensions) + int(multi_fidelity)
    return torch.tensor(rows, dtype=DTYPE).reshape(-1, width)


class AtTargetFidelity(Model):
    """A score model of ``(configuration, fidelity)`` seen at the target fidelity.

    ``posterior(X)`` on ``... x d`` encodings is the wrapped model's posterior
    at ``X`` with the fidelity input 1 appended. BoTorch's ensemble flags are
    the wrapped model's, so a NUTS model stays a fully Bayesian one to
    qLogNEHVI and its samplers.
    """

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
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
        target = torch.ones(*X.shape[:-1], 1, dtype=X.dtype, device=X.device)
        return self.model.posterior(
            torch.cat([X, target], dim=-1),
            output_indices=output_indices,
            observation_noise=observation_noise,
            posterior_transform=posterior_transform,
            **kwargs,
        )
