"""Learning from every rung: the fidelity as one more input of the score model.

With ``multi_fidelity=True`` the searcher fits early-stopped results too:
each observation's inputs are its configuration's encoding and its
:func:`~..records.fidelity_input` (0 at a thousandth of
the target, 1 at the target; ASHA's geometric rungs evenly spaced).

The model (:func:`multi_fidelity_map_model`, MAP) is a GP whose covariance is

    k((x, s), (x', s')) = a * k_SAAS(x, x') * (s s' + c)^2 + b * k_RBF(s, s')

The first term says that configurations differ more the longer they train
(at a low rung every configuration is still near the head-only score); the
second lets the average score rise with the fidelity. A stationary kernel
over (x, s), the fidelity as one more SAAS dimension, assumes the same spread
at every rung; measured on the synthetic problem under ASHA (BENCHMARKS.md),
it learned little about the target from the low rungs and spent its
suggestions on one-layer configurations. BoTorch's multi-fidelity kernels
(``LinearTruncatedFidelityKernel``, ``ExponentialDecayKernel``) model the
opposite, a spread that shrinks towards the target fidelity.

Everything else works on configurations: the acquisition sees the score
model through :class:`AtTargetFidelity`, which asks it about the target
fidelity (the fidelity is the model's last input, :mod:`.inputs`), so the known cost, canonicalisation, pending points, the pruned
baseline and the local search are unchanged.
"""

from __future__ import annotations

import torch
from botorch.models.model import Model
from torch import Tensor

from .inputs import AppendInputs, CostInput

#: The power of the fidelity's polynomial factor: the spread between
#: configurations at fidelity input s, relative to the target, is about s^2.
FIDELITY_POWER = 2


class AtTargetFidelity(AppendInputs):
    """A score model of ``(configuration, fidelity)`` seen at the target fidelity.

    ``posterior(X)`` on ``... x d`` inputs is the wrapped model's posterior
    at ``X`` with the fidelity input 1 appended (:class:`~.inputs.AppendInputs`).
    """

    def __init__(self, model: Model) -> None:
        super().__init__(model, _at_target)


def on_encodings(model: Model, multi_fidelity: bool, cost_input: CostInput | None) -> Model:
    """The fitted score model as the acquisition sees it: a model of encodings.

    The inputs it was fitted on beyond the encoding (:func:`~.inputs.model_inputs`:
    the cost input, then the fidelity, last) are appended: the fidelity at the
    target (:class:`AtTargetFidelity`), the cost input computed from the encoding.
    """
    model = AtTargetFidelity(model) if multi_fidelity else model
    return AppendInputs(model, cost_input) if cost_input is not None else model


def _at_target(X: Tensor) -> Tensor:
    return torch.ones(*X.shape[:-1], 1, dtype=X.dtype, device=X.device)


def multi_fidelity_map_model(train_X: Tensor, train_Y: Tensor) -> Model:
    """An unfitted MAP GP of the score over ``(configuration, fidelity input)``.

    ``train_X`` is ``n x (d + 1)``, the fidelity input last. The
    configuration's Matern-5/2 kernel carries BoTorch's SAAS prior (as
    ``get_map_saas_model``); mean, likelihood and outcome standardisation are
    ``get_map_saas_model``'s too. See the module docstring for the covariance.
    """
    from botorch.models import SingleTaskGP
    from botorch.models.map_saas import (
        add_saas_prior,
        get_gaussian_likelihood_with_gamma_prior,
        get_mean_module_with_normal_prior,
    )
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.constraints import Interval
    from gpytorch.kernels import MaternKernel, PolynomialKernel, RBFKernel, ScaleKernel

    d = train_X.shape[-1] - 1
    configuration = MaternKernel(nu=2.5, ard_num_dims=d, active_dims=tuple(range(d)))
    configuration.to(train_X)
    add_saas_prior(base_kernel=configuration, tau=None)
    growth = PolynomialKernel(
        power=FIDELITY_POWER, active_dims=(d,), offset_constraint=Interval(1e-4, 1.0)
    )
    trend = RBFKernel(active_dims=(d,))
    covariance = ScaleKernel(configuration * growth) + ScaleKernel(trend)
    model = SingleTaskGP(
        train_X,
        train_Y,
        mean_module=get_mean_module_with_normal_prior(),
        covar_module=covariance,
        likelihood=get_gaussian_likelihood_with_gamma_prior(),
        outcome_transform=Standardize(m=1),
    )
    model.to(train_X)
    return model
