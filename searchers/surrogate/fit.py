"""Fitting the score model: NUTS (the paper's fully Bayesian SAAS GP) or MAP.

Speed. The first NUTS fit of a data shape is dominated by JAX compiling
NUTS, later ones by sampling (BENCHMARKS.md has the seconds). Three
measures let fits reuse compiled programs: the data are padded (:class:`.model.PaddedSaasGP`) and passed to
NumPyro as arguments, so the program depends only on the padded shape; the
process holds one compiled NUTS run per padded shape and budget
(:func:`_nuts_program`), so later fits of that shape run it as it is; and
JAX's persistent compilation cache (:func:`enable_compilation_cache`) keeps
the programs for later processes.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from botorch.models.map_saas import get_map_saas_model
from botorch.models.model import Model
from botorch.models.transforms.outcome import Standardize
from torch import Tensor

from autopeft_ray.config import PAPER_NUTS
from autopeft_ray.exceptions import invalid_value
from autopeft_ray.validation import check_int

from .fidelity import multi_fidelity_map_model
from .model import DTYPE, PaddedSaasGP, PaddedSaasPyroModel, _DataAsArguments


@dataclass(frozen=True)
class NutsSettings:
    """NUTS budget for the SAAS GP (paper: warmup 128, 64 samples, thinning 4).

    ``num_samples // thinning`` hyperparameter samples are kept.
    """

    warmup_steps: int = PAPER_NUTS[0]
    num_samples: int = PAPER_NUTS[1]
    thinning: int = PAPER_NUTS[2]
    max_tree_depth: int = 6

    def __post_init__(self) -> None:
        for name in ("warmup_steps", "num_samples", "thinning", "max_tree_depth"):
            check_int(f"nuts_{name}", getattr(self, name))
        if self.thinning > self.num_samples:
            raise invalid_value(
                "nuts_thinning",
                self.thinning,
                expected=f"at most nuts_samples={self.num_samples}",
                fix="Every `thinning`-th NUTS sample is kept; keep at least one.",
            )


@dataclass(frozen=True)
class SurrogateSettings:
    """Which SAAS GP a model-based searcher fits, and how: what its score model
    (:class:`~searchers.score_model.ScoreModel`) and the Ax proposer share.

    Attributes:
        surrogate: ``"saas-nuts"`` (fully Bayesian, NUTS) or ``"saas-map"`` (MAP).
        nuts: the NUTS budget (``saas-nuts``).
        jax_cache_dir: JAX's persistent compilation cache for NUTS (``None``: JAX's
            own setting).
    """

    surrogate: str
    nuts: NutsSettings
    jax_cache_dir: str | None = None

    def prepare(self) -> None:
        """Point JAX at the compilation cache before a NUTS fit (nothing for MAP)."""
        if self.surrogate == "saas-nuts":
            enable_compilation_cache(self.jax_cache_dir)


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
    data go to NumPyro as arguments (``jit_model_args=True``) and the whole
    run is one compiled program; the tests check that both give the same
    chain.
    """
    import jax

    model = PaddedSaasGP(
        train_X.to(DTYPE),
        train_Y.to(DTYPE),
        pad_multiple=pad_multiple,
        outcome_transform=Standardize(m=1),
    )
    model.train()
    pyro_model = model.padded_model
    data = pyro_model.padded_data()
    program = _nuts_program(pyro_model, nuts, tuple(x.shape for x in data))
    mcmc_samples = program(jax.random.PRNGKey(seed), *data)
    samples = pyro_model.postprocess_mcmc_samples(mcmc_samples=dict(mcmc_samples))
    model.load_mcmc_samples({k: v[:: nuts.thinning] for k, v in samples.items()})
    model.eval()
    return model


_PROGRAMS: OrderedDict[tuple[Any, ...], Callable[..., Any]] = OrderedDict()
_MAX_PROGRAMS = 16
_PROGRAMS_LOCK = threading.Lock()  # background suggestions fit in a thread


def _nuts_program(
    pyro_model: PaddedSaasPyroModel, nuts: NutsSettings, shapes: tuple[Any, ...]
) -> Callable[..., Any]:
    """One jitted NUTS run (NumPyro's ``MCMC``, sampler set-up included) per padded shape and budget.

    ``MCMC.run`` builds new jitted functions on every call, so JAX lowered
    them again and looked them up, in memory and then in the persistent
    compilation cache, on every fit (five programs), and reading the cache
    crashed the process (SIGSEGV inside JAX) about once in 120 fits
    (BENCHMARKS.md, "A crash in JAX's persistent cache"). Held here, a fit
    of a shape the process has seen runs the compiled program directly.
    The data are the program's arguments; what else the model's density
    depends on is in the key.
    """
    # what, beside the data, the model's density depends on
    warped = pyro_model.indices
    key = (
        type(pyro_model),
        nuts,
        shapes,
        pyro_model.use_input_warping,
        None if warped is None else tuple(warped),
    )
    with _PROGRAMS_LOCK:
        program = _PROGRAMS.get(key)
        if program is None:
            import jax

            template = copy.copy(pyro_model)

            def run(rng_key: Any, X: Any, Y: Any, mask: Any) -> dict[str, Any]:
                # a copy per trace: tracing writes the data (tracers) on the model
                mcmc = nuts_mcmc(_DataAsArguments(copy.copy(template)), nuts)
                mcmc.run(rng_key, X, Y, mask)
                return mcmc.get_samples()

            program = jax.jit(run)
            _PROGRAMS[key] = program
            while len(_PROGRAMS) > _MAX_PROGRAMS:
                _PROGRAMS.popitem(last=False)
        else:
            _PROGRAMS.move_to_end(key)
        return program


def nuts_mcmc(model: Callable[..., None], nuts: NutsSettings) -> Any:
    """NumPyro's ``MCMC`` with BoTorch's NUTS settings and ``nuts``'s budget, the data
    as the model's arguments (``jit_model_args=True``)."""
    from numpyro.infer import MCMC, NUTS

    kernel = NUTS(model, dense_mass=True, max_tree_depth=nuts.max_tree_depth)
    return MCMC(
        kernel,
        num_warmup=nuts.warmup_steps,
        num_samples=nuts.num_samples,
        progress_bar=False,
        jit_model_args=True,
    )


def fit_map_score_model(
    train_X: Tensor,
    train_Y: Tensor,
    seed: int,
    init: Mapping[str, Sequence[Any]] | None = None,
    multi_fidelity: bool = False,
) -> Model:
    """Fit the score with BoTorch's MAP SAAS GP: one GP, hyperparameters at the posterior mode.

    ``multi_fidelity``: the last input is the fidelity, and the model is
    :func:`~.fidelity.multi_fidelity_map_model` (the same SAAS prior on the
    configuration's inputs).

    ``init`` (from :func:`map_hyperparameters` of the previous fit) starts
    L-BFGS from the last mode instead of the prior's defaults, as Ax refits
    its models: with one observation more the mode moves little, and the fit
    takes a fraction of the iterations (BENCHMARKS.md). A mismatch (another
    space) is ignored and the fit starts cold.

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
        if multi_fidelity:
            model = multi_fidelity_map_model(train_X.to(DTYPE), train_Y.to(DTYPE))
        else:
            model = get_map_saas_model(
                train_X.to(DTYPE), train_Y.to(DTYPE), outcome_transform=Standardize(m=1)
            )
        if init is not None:
            _load_hyperparameters(model, init)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    return model


def warm_map_fit(
    X: Tensor, Y: Tensor, seed: int, last: Mapping[str, Any] | None, multi_fidelity: bool = False
) -> tuple[Model, dict[str, Any]]:
    """:func:`fit_map_score_model` from the prior's start and from the last fit's; the
    better of the two (:func:`map_objective`) and this fit's record.

    ``last`` is the previous record ``{"n", "start", "result"}`` (``None``:
    start cold only). Refitting the same number of observations (after a
    restore) starts where that fit started, so it finds the same model;
    otherwise the warm fit starts from the last mode.

    Why both: L-BFGS from the last mode is quick, but a mode found on few
    results can be a poor one, and a warm start never leaves it: on a
    multi-fidelity run a first fit on 9 trials found a mode that proposed only
    one-layer configurations, and warm fits kept it while cold fits of the same
    data found better ones (BENCHMARKS.md, "Learning from every rung").
    """
    n = len(X)
    init = None if last is None else last["start" if last["n"] == n else "result"]
    model = fit_map_score_model(X, Y, seed=seed, multi_fidelity=multi_fidelity)
    if init is not None:
        warm = fit_map_score_model(X, Y, seed=seed, init=init, multi_fidelity=multi_fidelity)
        if map_objective(warm) > map_objective(model):
            model = warm
    return model, {"n": n, "start": init, "result": map_hyperparameters(model)}


def map_objective(model: Model) -> float:
    """What a MAP fit maximises: the marginal log likelihood plus the log priors, per observation."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    inputs: tuple[Tensor, ...] = tuple(model.train_inputs)  # type: ignore[arg-type]
    model.train()
    try:
        with torch.no_grad():
            return float(mll(model(*inputs), model.train_targets))
    finally:
        model.eval()


def map_hyperparameters(model: Model) -> dict[str, list[Any]]:
    """The fitted (raw) hyperparameters of a MAP model, as JSON-ready lists."""
    return {name: p.detach().tolist() for name, p in model.named_parameters()}


def _load_hyperparameters(model: Model, init: Mapping[str, Sequence[Any]]) -> None:
    parameters = dict(model.named_parameters())
    values = {}
    for name, value in init.items():
        tensor = torch.tensor(value, dtype=DTYPE)
        if name not in parameters or parameters[name].shape != tensor.shape:
            return  # another model or space: start cold
        values[name] = tensor
    if set(values) != set(parameters):
        return
    with torch.no_grad():
        for name, tensor in values.items():
            parameters[name].copy_(tensor)


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
