"""The BoTorch pieces: padded SAAS likelihood, NUTS fit, known cost, the model list."""

from __future__ import annotations

import math
import random

import pytest
import torch

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.searchers.surrogate import (
    CanonicalModelList,
    KnownCost,
    NutsSettings,
    PaddedSaasGP,
    fit_score_model,
)
from autopeft_ray.space.encoding import canonical_encoding as encode
from autopeft_ray.space.encoding import canonicalize

TINY = NutsSettings(warmup_steps=8, num_samples=5, thinning=1)


def synthetic_data(problem, n, seed):
    rng = random.Random(seed)
    configs = []
    while len(configs) < n:
        config = problem.space.sample(rng)
        if config.model_key() not in {c.model_key() for c in configs}:
            configs.append(config)
    X = torch.tensor([encode(problem.space, c) for c in configs], dtype=torch.float64)
    Y = torch.tensor([[problem.score(c)] for c in configs], dtype=torch.float64)
    return configs, X, Y


@pytest.fixture(autouse=True)
def _compilation_cache(jax_cache):
    from autopeft_ray.searchers.surrogate import enable_compilation_cache

    enable_compilation_cache(jax_cache)


@pytest.mark.slow
def test_padded_log_density_equals_botorch_up_to_a_constant():
    import jax.numpy as jnp
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP
    from numpyro.infer.util import log_density

    from autopeft_ray.searchers.surrogate.model import _DataAsArguments

    torch.manual_seed(0)
    X = torch.rand(11, 5, dtype=torch.float64)
    Y = torch.sin(3 * X[:, :1]) + X[:, 1:2]
    Y = (Y - Y.mean()) / Y.std()
    reference = SaasFullyBayesianSingleTaskGP(X, Y).pyro_model
    padded = PaddedSaasGP(X, Y, pad_multiple=8, outcome_transform=None).pyro_model
    data = padded.padded_data()
    assert data[0].shape == (16, 5) and int(data[2].sum()) == 11
    params = {
        "outputscale": jnp.array(1.7),
        "mean": jnp.array(0.3),
        "noise": jnp.array(0.05),
        "kernel_tausq": jnp.array(0.4),
        "_kernel_inv_length_sq": jnp.linspace(0.2, 2.0, 5),
    }
    expected, _ = log_density(reference.sample, (), {}, params)
    got, _ = log_density(_DataAsArguments(padded), data, {}, params)
    constant = -0.5 * 5 * math.log(2 * math.pi)  # 5 padded rows, standard normal at 0
    # JAX runs NUTS in float32 here (x64 off), as in BoTorch.
    assert float(got) == pytest.approx(float(expected) + constant, rel=1e-6)


@pytest.mark.slow
def test_fit_matches_botorchs_nuts_fit_with_the_same_seed(problem):
    from botorch.fit import fit_fully_bayesian_model_nuts
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    _, X, Y = synthetic_data(problem, 9, seed=1)
    ours = fit_score_model(X, Y, TINY, seed=3, pad_multiple=1)
    theirs = SaasFullyBayesianSingleTaskGP(X, Y, outcome_transform=Standardize(m=1))
    fit_fully_bayesian_model_nuts(theirs, warmup_steps=8, num_samples=5, thinning=1, seed=3)
    ours_ls = ours.covar_module.base_kernel.lengthscale
    theirs_ls = theirs.covar_module.base_kernel.lengthscale
    # The same chain: ours is one compiled program (set-up and sampling), BoTorch's
    # several, and JAX samples in float32 here, so the roundings differ in the
    # last digits and grow to about 1e-3 in 13 steps; another chain would
    # differ by O(1) (samples of standardised scores and lengthscales of 1-10).
    assert torch.allclose(ours_ls, theirs_ls, rtol=2e-3, atol=2e-3)
    assert torch.allclose(
        ours.mean_module.constant, theirs.mean_module.constant, rtol=2e-3, atol=2e-3
    )


@pytest.mark.slow
def test_a_fit_reuses_the_compiled_nuts_program_of_its_padded_shape(problem):
    """One compiled NUTS run per padded shape and budget, held in the process:
    later fits run it (no lowering, no lookup in JAX's persistent cache, where
    reads crashed about once in 120 fits) and give what a fresh program gives."""
    from autopeft_ray.searchers.surrogate import fit as fit_module

    _, X, Y = synthetic_data(problem, 12, seed=1)
    fit_module._PROGRAMS.clear()
    fit_score_model(X[:9], Y[:9], TINY, seed=3, pad_multiple=16)
    (program,) = fit_module._PROGRAMS.values()
    reused = fit_score_model(X[:12], Y[:12], TINY, seed=4, pad_multiple=16)
    assert list(fit_module._PROGRAMS.values()) == [program]
    assert program._cache_size() == 1  # one compilation for both fits
    fit_module._PROGRAMS.clear()
    fresh = fit_score_model(X[:12], Y[:12], TINY, seed=4, pad_multiple=16)
    assert fit_module._PROGRAMS and next(iter(fit_module._PROGRAMS.values())) is not program
    # nothing of the first fit's data stays in the program
    assert torch.equal(
        reused.covar_module.base_kernel.lengthscale, fresh.covar_module.base_kernel.lengthscale
    )
    assert torch.equal(reused.mean_module.constant, fresh.mean_module.constant)


@pytest.mark.slow
def test_fitted_score_model_ranks_held_out_configurations(problem):
    """Known answer: the synthetic score is smooth in the encoding; the GP must see it."""
    from scipy.stats import spearmanr

    configs, X, Y = synthetic_data(problem, 60, seed=2)
    nuts = NutsSettings(warmup_steps=32, num_samples=16, thinning=2)
    model = fit_score_model(X[:40], Y[:40], nuts, seed=0, pad_multiple=32)
    assert model.num_mcmc_samples == 8
    assert model.train_inputs[0].shape[-2] == 40  # padding is for NUTS only
    with torch.no_grad():
        mean = model.posterior(X[40:]).mixture_mean.squeeze(-1)
    rho = spearmanr(mean.numpy(), Y[40:, 0].numpy()).statistic
    assert rho > 0.6, rho


def test_known_cost_is_the_negated_cost_of_the_decoded_configuration(space, problem):
    cost = KnownCost(space, problem.cost)
    rng = random.Random(0)
    configs = [space.sample(rng) for _ in range(12)]
    X = torch.tensor([space.encode(c) for c in configs], dtype=torch.float64).reshape(3, 4, -1)
    values = cost(X)
    assert values.shape == (3, 4, 1)
    expected = torch.tensor([-problem.cost(c.model_key()) for c in configs], dtype=torch.float64)
    assert torch.allclose(values.reshape(-1), expected)


@pytest.mark.slow
def test_model_outputs_score_and_negated_fraction_on_canonical_inputs(space, problem):
    from autopeft_ray.searchers.surrogate import build_model

    configs, X, Y = synthetic_data(problem, 8, seed=4)
    score_model = fit_score_model(X, Y, TINY, seed=0)
    model = build_model(space, score_model, KnownCost(space, problem.cost))
    assert isinstance(model, CanonicalModelList) and model.num_outputs == 2
    head_only = [
        space.encode(space.configuration(sa_size=8, layers=[0, 0, 0, 0])),
        space.encode(space.configuration(layers=[1, 0, 1, 1])),
    ]
    test_X = torch.cat([X[:3], torch.tensor(head_only, dtype=torch.float64)]).unsqueeze(-2)
    with torch.no_grad():
        samples = model.posterior(test_X).rsample(torch.Size([4]))
        fractions = -model.posterior(test_X, output_indices=[1]).mean
        score_mean = model.posterior(test_X, output_indices=[0]).posteriors[0].mixture_mean
        direct = score_model.posterior(canonicalize(test_X, space)).mixture_mean
    assert samples.shape[-1] == 2
    expected = [problem.cost(c) for c in configs[:3]] + [0.0, 0.0]
    assert torch.allclose(fractions.reshape(-1), torch.tensor(expected, dtype=torch.float64))
    assert torch.allclose(score_mean, direct)
    # Both head-only encodings are one model: identical score posteriors.
    assert torch.allclose(score_mean[3], score_mean[4])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"warmup_steps": 0}, "nuts_warmup_steps"),
        ({"num_samples": 2, "thinning": 4}, "nuts_thinning"),
        ({"thinning": 1.5}, "nuts_thinning"),
    ],
)
def test_nuts_settings_validate(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        NutsSettings(**kwargs)


def test_a_map_refit_keeps_the_better_of_its_cold_and_warm_starts(problem):
    """The warm start is the mode of other data (the scores reversed); the refit
    keeps whichever of the two fits has the higher MAP objective, and records
    where its warm fit started (so a restore refits the same model)."""
    from autopeft_ray.searchers.surrogate import fit_map_score_model, warm_map_fit
    from autopeft_ray.searchers.surrogate.fit import map_hyperparameters, map_objective

    _, X, Y = synthetic_data(problem, 20, seed=3)
    other = map_hyperparameters(fit_map_score_model(X, -Y, seed=0))
    model, record = warm_map_fit(X, Y, seed=0, last={"n": 19, "start": None, "result": other})
    cold = map_objective(fit_map_score_model(X, Y, seed=0))
    warm = map_objective(fit_map_score_model(X, Y, seed=0, init=other))
    assert map_objective(model) == pytest.approx(max(cold, warm))
    assert record["n"] == 20 and record["start"] == other
    assert record["result"] == map_hyperparameters(model)
    again, _ = warm_map_fit(X, Y, seed=0, last=record)  # same n: starts where it started
    assert map_objective(again) == pytest.approx(map_objective(model))
