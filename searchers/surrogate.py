"""BoTorch pieces of the AutoPEFT searcher: the score model, the known cost, qLogNEHVI.

Only the score is learned: a SAAS fully Bayesian GP
(``SaasFullyBayesianSingleTaskGP``, NUTS in NumPyro/JAX as in BoTorch's
``fit_fully_bayesian_model_nuts``). The parameter fraction is known exactly
before training, so it enters as a ``GenericDeterministicModel``; both sit in
one ``ModelList`` whose outputs are ``(score, -fraction)`` (maximise both).

Speed. Fitting is dominated by JAX compiling NUTS, not by sampling: on 2
cores about 16 s per fit when the number of observations changes, 5 s when
only the data change. Two measures bring a fit with cached programs to 1-2 s:
:class:`PaddedSaasGP` pads the data NUTS sees to a multiple of
``pad_multiple`` rows whose likelihood is a constant (masked; the padded log
density equals the unpadded one up to a constant, the tests check it), and
:func:`fit_score_model` passes the data to NumPyro as arguments so the
compiled program depends only on the padded shape and JAX's persistent
compilation cache (:func:`enable_compilation_cache`) can reuse it.

Degenerate configurations (no module anywhere) are all the same model;
:class:`CanonicalModelList` maps their encodings to the canonical one (all
zeros) before the models see them, so the GP cannot believe they differ.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from botorch.acquisition.multi_objective.logei import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.models.deterministic import GenericDeterministicModel
from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP, SaasPyroModel
from botorch.models.map_saas import get_map_saas_model
from botorch.models.model import Model, ModelList
from botorch.models.transforms.outcome import Standardize
from botorch.optim.optimize import optimize_acqf_discrete_local_search
from botorch.posteriors import Posterior
from botorch.sampling import IIDNormalSampler, ListSampler
from botorch.sampling.index_sampler import IndexSampler
from torch import Tensor

from autopeft_ray.exceptions import UnsupportedError, invalid_value
from autopeft_ray.space import PeftConfiguration, SearchSpace

DTYPE = torch.float64


@dataclass(frozen=True)
class NutsSettings:
    """NUTS budget for the SAAS GP (paper: warmup 128, 64 samples, thinning 4).

    ``num_samples // thinning`` hyperparameter samples are kept.
    """

    warmup_steps: int = 128
    num_samples: int = 64
    thinning: int = 4
    max_tree_depth: int = 6

    def __post_init__(self) -> None:
        for name in ("warmup_steps", "num_samples", "thinning", "max_tree_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise invalid_value(f"nuts_{name}", value, expected="an integer >= 1")
        if self.thinning > self.num_samples:
            raise invalid_value(
                "nuts_thinning",
                self.thinning,
                expected=f"at most nuts_samples={self.num_samples}",
                fix="Every `thinning`-th NUTS sample is kept; keep at least one.",
            )


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
        jnp = _jnp()
        n = self.train_X.shape[0]
        size = max(1, math.ceil(n / self.pad_multiple)) * self.pad_multiple
        X = np.zeros((size, self.train_X.shape[-1]))
        X[:n] = self.train_X.detach().cpu().numpy()
        Y = np.zeros((size, 1))
        Y[:n] = self.train_Y.detach().cpu().numpy()
        self.train_X_jax = jnp.asarray(X, dtype=self.train_X_jax.dtype)
        self.train_Y_jax = jnp.asarray(Y, dtype=self.train_Y_jax.dtype)
        self._mask = jnp.arange(size) < n

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

    With constants, every new data set is a new XLA program (about 5 s of
    compiling on 2 cores); with arguments, the program depends only on the
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


def fit_score_model(
    train_X: Tensor,
    train_Y: Tensor,
    nuts: NutsSettings,
    seed: int,
    pad_multiple: int = 32,
) -> PaddedSaasGP:
    """Fit the SAAS GP of the score with NUTS (seeded: same data and seed, same model).

    This is BoTorch's ``fit_fully_bayesian_model_nuts`` (same NUTS and MCMC
    settings, post-processing, thinning and loading) except that the padded
    data go to NumPyro as arguments (``jit_model_args=True``); the tests check
    that both give the same samples.
    """
    import jax
    from numpyro.infer import MCMC, NUTS

    model = PaddedSaasGP(
        train_X.to(DTYPE),
        train_Y.to(DTYPE),
        pad_multiple=pad_multiple,
        outcome_transform=Standardize(m=1),
    )
    model.train()
    pyro_model = model.padded_model
    data = pyro_model.padded_data()
    kernel = NUTS(_DataAsArguments(pyro_model), dense_mass=True, max_tree_depth=nuts.max_tree_depth)
    mcmc = MCMC(
        kernel,
        num_warmup=nuts.warmup_steps,
        num_samples=nuts.num_samples,
        progress_bar=False,
        jit_model_args=True,
    )
    try:
        mcmc.run(jax.random.PRNGKey(seed), *data)
    finally:
        pyro_model.train_X_jax, pyro_model.train_Y_jax, pyro_model._mask = data
    samples = pyro_model.postprocess_mcmc_samples(mcmc_samples=mcmc.get_samples())
    model.load_mcmc_samples({k: v[:: nuts.thinning] for k, v in samples.items()})
    model.eval()
    return model


def fit_map_score_model(train_X: Tensor, train_Y: Tensor, seed: int) -> Model:
    """Fit the score with BoTorch's MAP SAAS GP: one GP, hyperparameters at the posterior mode.

    The cheap alternative to NUTS (``surrogate="saas-map"``): the same SAAS
    prior (half-Cauchy global shrinkage on the inverse lengthscales), fitted by
    L-BFGS on the marginal likelihood in well under a second at 200
    observations; one model instead of ``num_samples // thinning`` makes the
    acquisition about that many times cheaper. It loses the averaging over
    hyperparameters that protects fully Bayesian SAAS against overconfident
    lengthscales with few observations.
    """
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = get_map_saas_model(
            train_X.to(DTYPE), train_Y.to(DTYPE), outcome_transform=Standardize(m=1)
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    return model


def enable_compilation_cache(path: str | None) -> None:
    """Point JAX's persistent compilation cache at ``path`` unless one is configured.

    NUTS programs then compile once per padded shape and are reused by later
    fits (also in later processes). ``None`` leaves JAX as it is.
    """
    if path is None:
        return
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None) is None:
        jax.config.update("jax_compilation_cache_dir", str(path))


def canonicalize(X: Tensor, space: SearchSpace) -> Tensor:
    """Map encodings of degenerate configurations (no module anywhere) to all zeros.

    ``X`` is ``... x d`` in :meth:`SearchSpace.encode` coordinates: the module
    sizes first, then (if searched) the layer bits.
    """
    k = len(space.modules)
    degenerate = (X[..., :k] == 0).all(dim=-1)
    if space.searches_layers:
        degenerate = degenerate | (X[..., k:] == 0).all(dim=-1)
    return torch.where(degenerate.unsqueeze(-1), torch.zeros_like(X), X)


def encode(space: SearchSpace, config: PeftConfiguration) -> list[float]:
    """:meth:`SearchSpace.encode`, with every degenerate configuration at all zeros."""
    if config.is_degenerate:
        return [0.0] * len(space.dimensions)
    return space.encode(config)


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
            self._cache[key] = float(self.cost_fn(config.canonical()))
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
    space: SearchSpace, score_model: Model, known_cost: KnownCost
) -> CanonicalModelList:
    """Outputs ``(score, -param_fraction)``: the learned score and the known cost."""
    cost_model = GenericDeterministicModel(known_cost, num_outputs=1)
    return CanonicalModelList(space, score_model, cost_model)


def load_fused_kernel() -> None:
    """Load BoTorch's fused qLogNEHVI kernel, JIT-built with this environment's ninja.

    BoTorch builds the kernel into ``~/.cache/torch_extensions`` on first use,
    with the first ``ninja`` on PATH. BoTorch depends on the ``ninja`` package,
    installed next to this interpreter; with another ninja on PATH (the
    system's), runs with and without the environment activated rebuilt the
    cached kernel for each other, about a minute each time (measured: 53 s in a
    demo). The environment's ninja is put first for this one call.
    """
    from botorch.acquisition.multi_objective import logei

    load = getattr(logei, "_try_load_fused_kernel", None)
    if load is None or getattr(logei, "_load_attempted", True):
        return
    path = os.environ.get("PATH", "")
    bin_dir = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(bin_dir, "ninja")):
        os.environ["PATH"] = bin_dir + os.pathsep + path
    try:
        load()
    finally:
        os.environ["PATH"] = path


def build_acquisition(
    model: CanonicalModelList,
    ref_point: tuple[float, float],
    X_baseline: Tensor,
    X_pending: Tensor | None,
    mc_samples: int,
    seed: int,
) -> qLogNoisyExpectedHypervolumeImprovement:
    """qLogNEHVI in the "maximise both" space; ``ref_point`` is ``(score, -fraction)``.

    The sampler is seeded; pending configurations (``X_pending``, running
    trials) are integrated over, so concurrent suggestions differ.
    """
    load_fused_kernel()
    shape = torch.Size([mc_samples])
    sampler = ListSampler(IIDNormalSampler(shape, seed=seed), IndexSampler(shape, seed=seed))
    return qLogNoisyExpectedHypervolumeImprovement(
        model=model,
        ref_point=torch.tensor(ref_point, dtype=DTYPE),
        X_baseline=X_baseline.to(DTYPE),
        sampler=sampler,
        X_pending=None if X_pending is None or len(X_pending) == 0 else X_pending.to(DTYPE),
        prune_baseline=True,
    )


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
