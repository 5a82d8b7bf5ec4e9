"""Seconds per NUTS fit of the SAAS GP, and how many programs JAX compiles and reads back.

A search refits the score model after every result, on one observation
more. Three ways to fit the same data, side by side in one process, fit by
fit (the order alternates), on a synthetic score over the BERT-base space:

* ``held``: :func:`autopeft_ray.searchers.surrogate.fit_score_model`, one
  compiled NUTS program per padded shape held in the process;
* ``mcmc-per-fit``: NumPyro's ``MCMC`` built and run on every fit, the data
  padded and passed as arguments (``jit_model_args=True``): the previous
  implementation;
* ``botorch``: BoTorch's ``fit_fully_bayesian_model_nuts`` (data as constants).

Per fit: wall seconds; JAX's backend compilations; and the programs read
back from JAX's persistent compilation cache (deserialised executables: the
step where about one fit in 120 crashed the process, BENCHMARKS.md "A crash
in JAX's persistent cache"). The cache is a fresh temporary folder unless
``--jax-cache`` names one.

    python benchmarks/nuts_fit.py                    # 12 fits each, n = 20..31
    python benchmarks/nuts_fit.py --fits 4 --nuts 8 5 1   # smoke
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import torch

from autopeft_ray.searchers.surrogate import NutsSettings, enable_compilation_cache, fit_score_model
from autopeft_ray.space import SearchSpace
from autopeft_ray.space.encoding import canonical_encoding
from autopeft_ray.testing.synthetic import SyntheticPeftProblem

METHODS = ("held", "mcmc-per-fit", "botorch")
#: JAX's monitoring events counted per fit
EVENTS = {
    "/jax/core/compile/backend_compile_duration": "compiled",
    "/jax/compilation_cache/cache_hits": "read back",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fits", type=int, default=12, help="fits per method")
    parser.add_argument("--start", type=int, default=20, help="observations at the first fit")
    parser.add_argument(
        "--nuts", type=int, nargs=3, default=(32, 16, 2), metavar=("WARMUP", "SAMPLES", "THINNING")
    )
    parser.add_argument("--pad", type=int, default=32, help="pad the data to a multiple of this")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--jax-cache", default=None, help="JAX's persistent cache (default: a fresh folder)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def data(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    problem = SyntheticPeftProblem(SearchSpace(12, 768), seed=seed)
    rng = random.Random(seed)
    configs = [problem.space.sample(rng) for _ in range(count)]
    X = torch.tensor([canonical_encoding(problem.space, c) for c in configs], dtype=torch.float64)
    Y = torch.tensor([[problem.score(c)] for c in configs], dtype=torch.float64)
    return X, Y


def fit_mcmc_per_fit(
    X: torch.Tensor, Y: torch.Tensor, nuts: NutsSettings, seed: int, pad: int
) -> None:
    import jax
    from botorch.models.transforms.outcome import Standardize

    from autopeft_ray.searchers.surrogate.fit import nuts_mcmc
    from autopeft_ray.searchers.surrogate.model import PaddedSaasGP, _DataAsArguments

    model = PaddedSaasGP(X, Y, pad_multiple=pad, outcome_transform=Standardize(m=1))
    model.train()
    pyro_model = model.padded_model
    data = pyro_model.padded_data()
    mcmc = nuts_mcmc(_DataAsArguments(pyro_model), nuts)  # built anew on every fit
    mcmc.run(jax.random.PRNGKey(seed), *data)
    pyro_model.train_X_jax, pyro_model.train_Y_jax, pyro_model._mask = data
    samples = pyro_model.postprocess_mcmc_samples(mcmc_samples=mcmc.get_samples())
    model.load_mcmc_samples({k: v[:: nuts.thinning] for k, v in samples.items()})


def fit_botorch(X: torch.Tensor, Y: torch.Tensor, nuts: NutsSettings, seed: int, pad: int) -> None:
    from botorch.fit import fit_fully_bayesian_model_nuts
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    model = SaasFullyBayesianSingleTaskGP(X, Y, outcome_transform=Standardize(m=1))
    fit_fully_bayesian_model_nuts(
        model,
        warmup_steps=nuts.warmup_steps,
        num_samples=nuts.num_samples,
        thinning=nuts.thinning,
        max_tree_depth=nuts.max_tree_depth,
        disable_progbar=True,
        seed=seed,
    )


def fit_held(X: torch.Tensor, Y: torch.Tensor, nuts: NutsSettings, seed: int, pad: int) -> None:
    fit_score_model(X, Y, nuts, seed=seed, pad_multiple=pad)


FITS = {"held": fit_held, "mcmc-per-fit": fit_mcmc_per_fit, "botorch": fit_botorch}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import jax
    import jax.monitoring

    counts: Counter[str] = Counter()

    def on_event(name: str, *_: Any, **__: Any) -> None:
        if name in EVENTS:
            counts[EVENTS[name]] += 1

    jax.monitoring.register_event_listener(on_event)
    jax.monitoring.register_event_duration_secs_listener(on_event)
    cache = args.jax_cache or tempfile.mkdtemp(prefix="nuts-fit-jax-")
    enable_compilation_cache(cache)
    nuts = NutsSettings(*args.nuts)
    X, Y = data(args.start + args.fits, args.seed)
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
    for i in range(args.fits):
        n = args.start + i
        order = args.methods if i % 2 == 0 else args.methods[::-1]
        for method in order:
            before = Counter(counts)
            start = time.perf_counter()
            FITS[method](X[:n], Y[:n], nuts, args.seed + i, args.pad)
            seconds = time.perf_counter() - start
            row = {
                "n": n,
                "seconds": seconds,
                **{k: counts[k] - before[k] for k in EVENTS.values()},
            }
            rows[method].append(row)
            print(
                f"fit {i + 1}/{args.fits} n={n} {method}: {seconds:.2f} s, "
                f"{row['compiled']} compiled, {row['read back']} read back",
                flush=True,
            )

    print(
        f"\nNUTS {nuts.warmup_steps}/{nuts.num_samples}/{nuts.thinning}, n = {args.start}..{args.start + args.fits - 1}, "
        f"padded to a multiple of {args.pad}; JAX cache {cache}"
    )
    print(
        "| method | first fit (s) | later fits, median (s) | later fits, max (s) | compiled per later fit (median) | read back from the persistent cache, all fits |"
    )
    print("|---|---|---|---|---|---|")
    for method, fits in rows.items():
        later = fits[1:] or fits
        print(
            f"| {method} | {fits[0]['seconds']:.2f} | {statistics.median(r['seconds'] for r in later):.2f} | "
            f"{max(r['seconds'] for r in later):.2f} | {statistics.median(r['compiled'] for r in later):g} | "
            f"{sum(r['read back'] for r in fits):g} |"
        )
    print(
        "\nReproduce: python benchmarks/nuts_fit.py "
        + shlex.join(sys.argv[1:] if argv is None else argv)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
