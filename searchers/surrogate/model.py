"""The surrogate's models: the SAAS GP of the score (padded for NUTS) and the known cost.

Only the score is learned: a SAAS fully Bayesian GP
(``SaasFullyBayesianSingleTaskGP``, NUTS in NumPyro/JAX as in BoTorch's
``fit_fully_bayesian_model_nuts``). The parameter fraction is known exactly
before training, so it enters as a ``GenericDeterministicModel``; both sit in
one ``ModelList`` whose outputs are ``(score, -fraction)`` (maximise both).

:class:`PaddedSaasGP` pads the data NUTS sees to a multiple of
``pad_multiple`` rows whose likelihood is a constant (masked; the padded log
density equals the unpadded one up to a constant, the tests check it), so the
compiled NUTS program depends only on the padded shape (see :mod:`.fit`).

Degenerate configurations (no module anywhere) are all the same model;
:class:`CanonicalModelList` maps their encodings to the canonical one
(:func:`autopeft_ray.space.encoding.canonicalize`) before the models see
them, so the GP cannot believe they differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from botorch.models.deterministic import GenericDeterministicModel
from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP, SaasPyroModel
from botorch.models.model import Model, ModelList
from botorch.posteriors import Posterior
from torch import Tensor

from autopeft_ray.exceptions import UnsupportedError
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import canonicalize

DTYPE = torch.float64


def _jnp() -> Any:
    import jax.numpy as jnp

    return jnp


class PaddedSaasPyroModel(SaasPyroModel):
    """BoTorch's SAAS NumPyro model with the data padded to a fixed number of rows.

    Padded rows have zero mean, unit variance, no covariance with real rows and
    an observed value of 0: their log density is a constant.
    """

    pad_multiple: int = 1
    _mask: Any = None

    def set_inputs(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        train_Yvar: Tensor | None = None,
        task_feature: int | None = None,
        task_rank: int | None = None,
    ) -> None:
        if train_Yvar is not None:
            raise UnsupportedError(
                "PaddedSaasGP infers the noise; observed noise (train_Yvar) is not supported."
            )
        super().set_inputs(train_X, train_Y, train_Yvar, task_feature, task_rank)
        self._pad()

    def set_padding(self, multiple: int) -> None:
        self.pad_multiple = int(multiple)
        self._pad()

    def _pad(self) -> None:
        n = self.train_X.shape[0]
        size = max(1, math.ceil(n / self.pad_multiple)) * self.pad_multiple
        X = np.zeros((size, self.train_X.shape[-1]))
        X[:n] = self.train_X.detach().cpu().numpy()
        Y = np.zeros((size, 1))
        Y[:n] = self.train_Y.detach().cpu().numpy()
        # NumPy arrays, which the jitted NUTS program takes as they are: eager
        # jnp conversions would compile (and look up) a few programs per fit
        self.train_X_jax = cast(Any, X.astype(self.train_X_jax.dtype))
        self.train_Y_jax = cast(Any, Y.astype(self.train_Y_jax.dtype))
        self._mask = np.arange(size) < n

    def padded_data(self) -> tuple[Any, Any, Any]:
        """``(X, Y, mask)`` as NumPyro sees them: ``size x d``, ``size x 1``, ``size``."""
        return self.train_X_jax, self.train_Y_jax, self._mask

    def sample_observations(self, mean: Any, K_noiseless: Any, noise: Any) -> None:
        if self._prior_mode:
            super().sample_observations(mean=mean, K_noiseless=K_noiseless, noise=noise)
            return
        import numpyro
        import numpyro.distributions as dist

        jnp = _jnp()
        size = self.train_X_jax.shape[0]
        eye = jnp.eye(size)
        both = self._mask[:, None] & self._mask[None, :]
        covariance = jnp.where(both, K_noiseless + noise * eye, eye)
        loc = jnp.where(self._mask, jnp.reshape(mean, (-1,)), 0.0)
        numpyro.sample(
            "Y",
            dist.MultivariateNormal(loc=loc, covariance_matrix=covariance),
            obs=jnp.squeeze(self.train_Y_jax, axis=-1),
        )


class _DataAsArguments:
    """The NumPyro model with the data as arguments, not closed-over constants.

    With constants, every new data set is a new XLA program to compile; with arguments, the program depends only on the
    padded shape, and JAX's persistent compilation cache can reuse it.
    """

    def __init__(self, pyro_model: PaddedSaasPyroModel) -> None:
        self.pyro_model = pyro_model

    def __call__(self, X: Any, Y: Any, mask: Any) -> None:
        model = self.pyro_model
        model.train_X_jax, model.train_Y_jax, model._mask = X, Y, mask
        model.sample()


class PaddedSaasGP(SaasFullyBayesianSingleTaskGP):
    """``SaasFullyBayesianSingleTaskGP`` whose NUTS sees data padded to ``pad_multiple`` rows.

    Args:
        train_X: ``n x d`` inputs in ``[0, 1]^d``.
        train_Y: ``n x 1`` outputs.
        pad_multiple: pad to a multiple of this many rows (1 disables padding).
        outcome_transform: as in BoTorch (:func:`fit_score_model` standardises).
    """

    _pyro_model_class = PaddedSaasPyroModel

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        pad_multiple: int = 32,
        outcome_transform: Any = None,
    ) -> None:
        super().__init__(train_X, train_Y, outcome_transform=outcome_transform)
        self.padded_model.set_padding(pad_multiple)

    @property
    def padded_model(self) -> PaddedSaasPyroModel:
        return cast(PaddedSaasPyroModel, self.pyro_model)


class KnownCost:
    """``X -> -cost_fn(decode(X))`` with a cache: the known second objective.

    Args:
        space: the search space whose encodings ``X`` uses.
        cost_fn: configuration -> parameter fraction (minimised).
    """

    def __init__(self, space: SearchSpace, cost_fn: Callable[[PeftConfiguration], float]):
        self.space = space
        self.cost_fn = cost_fn
        self._steps = np.array([len(d.choices) - 1 for d in space.dimensions], dtype=np.float64)
        self._cache: dict[bytes, float] = {}

    def fraction(self, ranks: np.ndarray) -> float:
        key = ranks.tobytes()
        if key not in self._cache:
            config = self.space.decode((ranks / self._steps).tolist())
            self._cache[key] = float(self.cost_fn(config.model_key()))
        return self._cache[key]

    def __call__(self, X: Tensor) -> Tensor:
        flat = X.detach().reshape(-1, X.shape[-1]).cpu().numpy()
        ranks = np.rint(flat * self._steps).astype(np.int64)
        unique, inverse = np.unique(ranks, axis=0, return_inverse=True)
        values = np.array([-self.fraction(row) for row in unique])
        out = torch.as_tensor(values[inverse.reshape(-1)], dtype=X.dtype, device=X.device)
        return out.reshape(*X.shape[:-1], 1)


class CanonicalModelList(ModelList):
    """``ModelList`` that canonicalises degenerate encodings before every posterior."""

    def __init__(self, space: SearchSpace, *models: Any) -> None:
        super().__init__(*models)
        self._space = space

    def posterior(self, X: Tensor, *args: Any, **kwargs: Any) -> Posterior:
        return super().posterior(canonicalize(X, self._space), *args, **kwargs)


def build_model(
    space: SearchSpace,
    score_model: Model,
    known_cost: KnownCost,
    feasibility_model: Model | None = None,
) -> CanonicalModelList:
    """Outputs ``(score, -param_fraction)``: the learned score and the known cost; with a
    ``feasibility_model`` (:mod:`.feasibility`), its value as a third output."""
    cost_model = GenericDeterministicModel(known_cost, num_outputs=1)
    models = [score_model, cost_model]
    if feasibility_model is not None:
        models.append(feasibility_model)
    return CanonicalModelList(space, *models)
