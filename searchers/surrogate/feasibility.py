"""Where trials fail: a feasibility model, and the constraint qLogNEHVI weighs by.

A trial that raises (out of memory for a large configuration, say) gives no
score. Fitted "just below the worst score" in the score model
(:func:`~searchers.records.observations`), a failure only says that its
region scores poorly; measured on the synthetic failure benchmark
(BENCHMARKS.md), the model's suggestions then still failed about as often as
random ones.

As BoTorch's constrained acquisitions do (and Optuna's constrained samplers),
the searcher models feasibility as an outcome of its own: a GP (BoTorch's
``SingleTaskGP`` with its default priors, fitted by MAP) of
:data:`~searchers.records.FAILED_VALUE` (+1) for a configuration whose trial
failed and :data:`~searchers.records.RAN_VALUE` (-1) for one that ran
(:func:`~searchers.records.feasibility_observations`). It is the third output
of the model list (:func:`~.model.build_model`), and qLogNEHVI takes it as an
outcome constraint (:func:`failure_constraint`: feasible where a sample is at
most 0) through BoTorch's smoothed indicator: the acquisition is the expected
hypervolume improvement of feasible outcomes, about the improvement times the
probability that the configuration runs. Baseline points that failed are
infeasible in every sample, so they add nothing to the front.

Its inputs (:class:`FeasibilityInputs`) are not the score model's. What makes
a PEFT trial fail for want of resources (memory, mostly) grows with the size
of its modules and with how many layers carry them, not with which layers do.
So the model sees each module size on a linear scale (its share of the
largest size searched), and the share of searched layers that carry modules:
4 inputs on the paper's space instead of 15. On the score model's encoding
(sizes by their log rank, one bit per layer) the fitted GP explained the
first failures by a few layer bits, and gave configurations next to failed
ones a probability of running near 1 (the probabilities of both, on the
synthetic failure benchmark: BENCHMARKS.md). A failure that depends on
*which* layers carry modules is learned less sharply on these inputs.

It is fitted only once a trial has failed; searches without failures build
the same two-output model and acquisition as before.
"""

from __future__ import annotations

import torch
from botorch.models.model import Model
from torch import Tensor

from autopeft_ray.space import SIZE_KEYS, SearchSpace

from .model import DTYPE

#: The model list's output that the feasibility model fills (score, -fraction, failure).
FEASIBILITY_OUTPUT = 2


def failure_constraint(samples: Tensor) -> Tensor:
    """The constraint BoTorch's acquisitions take: ``... x q x 3`` samples -> ``... x q``
    values of the feasibility output, feasible where at most 0."""
    return samples[..., FEASIBILITY_OUTPUT]


class FeasibilityInputs:
    """Encodings (``... x d``) -> the feasibility model's inputs (``... x k``).

    Each searched size on a linear scale (``size / largest choice``), then, if
    layers are searched, the share of searched layer bits that are on. A
    degenerate configuration (all zeros, :func:`~autopeft_ray.space.encoding.canonicalize`)
    is all zeros here too.
    """

    def __init__(self, space: SearchSpace) -> None:
        sizes = set(SIZE_KEYS.values())
        dims = space.dimensions
        self._sizes = [i for i, d in enumerate(dims) if d.name in sizes]
        self._layers = [i for i, d in enumerate(dims) if d.name not in sizes]
        #: Per searched size, its choices as a share of the largest, by rank.
        self._scales = [
            torch.tensor([c / max(max(dims[i].choices), 1) for c in dims[i].choices], dtype=DTYPE)
            for i in self._sizes
        ]
        self._steps = [len(dims[i].choices) - 1 for i in self._sizes]
        self.width = len(self._sizes) + int(bool(self._layers))

    def __call__(self, X: Tensor) -> Tensor:
        columns = []
        for i, scale, steps in zip(self._sizes, self._scales, self._steps, strict=True):
            rank = (X[..., i] * steps).round().clamp(0, steps).long()
            columns.append(scale.to(X)[rank])
        if self._layers:
            columns.append(X[..., self._layers].mean(dim=-1))
        if not columns:
            return X[..., :0]
        return torch.stack(columns, dim=-1)


def fit_feasibility_model(train_X: Tensor, train_Y: Tensor, seed: int) -> Model:
    """Fit the feasibility GP on ``n x k`` inputs (:class:`FeasibilityInputs`) and
    ``n x 1`` values of +-1: BoTorch's ``SingleTaskGP``, default priors, MAP.

    Cold every time: a fraction of a second at a hundred observations, against
    the score model's seconds. Its outcome standardisation centres the values,
    so where it has seen nothing the model leans to the share of trials that ran.
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SingleTaskGP(
            train_X.to(DTYPE), train_Y.to(DTYPE), outcome_transform=Standardize(m=1)
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    return model
