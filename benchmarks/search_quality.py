"""Search quality and suggestion cost of the AutoPEFT searcher on the synthetic problem.

Part 1 (quality): on :class:`autopeft_ray.testing.synthetic.SyntheticPeftProblem` over a
BERT-base-shaped space (12 layers, width 768, as in the paper), each searcher
gets the same evaluation budget, asked for in synchronous batches (``--batch``
configurations pending at a time, then all completed), and the final
hypervolume (reference point: score 0, fraction of the largest configuration) is
compared over ``--seeds`` seeds (the seed also draws the problem's noise):

* AutoPEFT: ``--initial`` random configurations, then SAAS GP + qLogNEHVI,
  once with the paper's fully Bayesian SAAS GP (NUTS 128/64/4) and once with
  the cheap MAP SAAS GP (``surrogate="saas-map"``), and with MAP SAAS and
  the parameter fraction as a model input (``autopeft-map-cost``:
  ``cost_input=True``);
* the same search through Ax (``AxPEFTSearcher``: Ax's ``Client`` with a SAAS
  GP per objective, NUTS or MAP, and qLogNEHVI), same initial design;
* random search (ours, no repeats) with twice the budget, also read at 1x;
* Ray Tune ``OptunaSearch`` multi-objective (metric ``["score",
  "param_fraction"]``, mode ``["max", "min"]``) with TPE and with NSGA-II
  (population ``--initial``), at the same budget. Optuna may repeat a
  configuration; repeats count against its budget, as they would in a real run.

Searchers are driven through the Searcher API (``suggest`` /
``on_trial_complete``) without Ray actors.

Part 2 (cost): seconds for one suggestion (fit + acquisition) against the
number of observations, with the paper's NUTS settings, a cheaper NUTS and MAP SAAS, and
for a batch of 4 (one fit, then 3 acquisitions with pending points). The first
fit of a new padded size compiles NUTS unless JAX's cache already holds it;
``fit_warm_s`` is a second fit of the same size.

    python benchmarks/search_quality.py                   # full: about 2 h on 2 cores
    python benchmarks/search_quality.py --part quality    # part 1 only: about 1.6 h
    python benchmarks/search_quality.py --part cost       # part 2 only: about 20 min
    python benchmarks/search_quality.py --part cost --cost-settings map \
        --observations 20,50,100,200,500                  # MAP up to 500 observations
    python benchmarks/search_quality.py --part failures --seeds 3   # about 20 min
    python benchmarks/search_quality.py --quick           # smoke run, about 1 minute
    # MAP SAAS with and without the fraction as a model input (cost_input), 5 seeds
    python benchmarks/search_quality.py --part quality \
        --methods autopeft-map,autopeft-map-cost,random
    # AutoPEFT vs the Ax-backed searcher, both with MAP SAAS, 3 seeds: about 25 min
    python benchmarks/search_quality.py --part quality --methods autopeft-map,ax-map \
        --seeds 3 --budget 30 --initial 10
    # where each searcher's model-based step goes (fit against acquisition), NUTS and MAP
    python benchmarks/search_quality.py --part quality --seeds 1 --budget 20 --initial 10 \
        --batch 2 --methods autopeft,autopeft-map,ax,ax-map

Measured on a quiet 2-core machine (12 layers x 768; BENCHMARKS.md): one
suggestion with the paper's NUTS takes about 30 s at 20-50 observations, 51 s
at 100 and 101 s at 200; with ``surrogate="saas-map"`` 2-4 s throughout.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from autopeft_ray.config import PAPER_NUTS  # noqa: E402
from autopeft_ray.objectives import PARAM_FRACTION, SCORE  # noqa: E402
from autopeft_ray.objectives.pareto import hypervolume, hypervolume_trace, reference_point_for  # noqa: E402
from autopeft_ray.searchers import (  # noqa: E402
    AutoPEFTSearcher,
    AxPEFTSearcher,
    RandomPEFTSearcher,
)
from autopeft_ray.space import SearchSpace  # noqa: E402
from autopeft_ray.testing.synthetic import SyntheticPeftProblem  # noqa: E402

CHEAP_NUTS = (32, 16, 2)
TINY_NUTS = (8, 5, 1)
METHODS = (
    "autopeft",
    "autopeft-map",
    "autopeft-map-cost",
    "ax",
    "ax-map",
    "random",
    "tpe",
    "nsga2",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    parser.add_argument("--budget", type=int, default=60, help="evaluations (default 60)")
    parser.add_argument("--initial", type=int, default=20, help="random initial (default 20)")
    parser.add_argument("--batch", type=int, default=4, help="pending per batch (default 4)")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument(
        "--observations", default="20,50,100,200", help="part 2 sizes (default 20,50,100,200)"
    )
    parser.add_argument("--part", choices=["quality", "cost", "failures", "all"], default="all")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"part 1 methods (default {','.join(METHODS)})"
    )
    parser.add_argument(
        "--nuts",
        type=int,
        nargs=3,
        metavar=("WARMUP", "SAMPLES", "THINNING"),
        default=None,
        help="part 1: NUTS of the autopeft and ax methods (default: the paper's 128 64 4)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--cost-settings",
        default="paper,cheap,map",
        help="part 2 surrogates (default paper,cheap,map: paper NUTS, cheap NUTS, MAP SAAS)",
    )
    parser.add_argument(
        "--cost-batch", type=int, default=4, help="part 2: suggestions in the first batch"
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run of both parts")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.initial, args.observations = 1, 12, 6, "10,20"
    args.nuts = TINY_NUTS if args.quick else tuple(args.nuts or PAPER_NUTS)
    args.cost_settings = (
        [("tiny NUTS", {"nuts": TINY_NUTS}), ("MAP", {"surrogate": "saas-map"})]
        if args.quick
        else [
            (label, setting)
            for key, label, setting in (
                ("paper", "paper NUTS", {"nuts": PAPER_NUTS}),
                ("cheap", "cheap NUTS", {"nuts": CHEAP_NUTS}),
                ("map", "MAP", {"surrogate": "saas-map"}),
                ("map32", "MAP, baseline <= 32", {"surrogate": "saas-map", "max_baseline": 32}),
            )
            if key in args.cost_settings.split(",")
        ]
    )
    args.methods = args.methods.split(",")
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"--methods: unknown {sorted(unknown)}; valid: {', '.join(METHODS)}")
    return args


def autopeft(
    args: argparse.Namespace,
    space: SearchSpace,
    cost: Any,
    seed: int,
    nuts: tuple[int, int, int] | None = None,
    num_initial: int | None = None,
    surrogate: str = "saas-nuts",
    model_failures: bool = True,
    model_feasibility: bool = True,
    max_baseline: int | None = None,
    cost_input: bool = False,
) -> AutoPEFTSearcher:
    warmup, samples, thinning = nuts or args.nuts
    # Full runs use the searcher's defaults (the paper's 10 restarts).
    settings = {"num_restarts": 4, "raw_samples": 64, "mc_samples": 16} if args.quick else {}
    return AutoPEFTSearcher(
        space,
        cost,
        num_initial=args.initial if num_initial is None else num_initial,
        nuts_warmup=warmup,
        nuts_samples=samples,
        nuts_thinning=thinning,
        surrogate=surrogate,
        seed=seed,
        model_failures=model_failures,
        model_feasibility=model_feasibility,
        max_baseline=max_baseline,
        cost_input=cost_input,
        **settings,
    )


def ax_searcher(
    args: argparse.Namespace, space: SearchSpace, cost: Any, seed: int, surrogate: str
) -> AxPEFTSearcher:
    warmup, samples, thinning = args.nuts
    return AxPEFTSearcher(
        space,
        cost,
        num_initial=args.initial,
        surrogate=surrogate,
        nuts_warmup=warmup,
        nuts_samples=samples,
        nuts_thinning=thinning,
        seed=seed,
    )


def optuna_searcher(space: SearchSpace, sampler: Any) -> Any:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    domains = {d.name: tune.choice(list(d.choices)) for d in space.dimensions}
    return OptunaSearch(
        space=domains, metric=[SCORE, PARAM_FRACTION], mode=["max", "min"], sampler=sampler
    )


def methods(args: argparse.Namespace, space: SearchSpace, cost: Any, seed: int) -> dict[str, Any]:
    import optuna

    every = {
        "autopeft": (
            "AutoPEFT (SAAS-NUTS + qLogNEHVI)",
            lambda: autopeft(args, space, cost, seed),
            args.budget,
        ),
        "autopeft-map": (
            "AutoPEFT (SAAS-MAP + qLogNEHVI)",
            lambda: autopeft(args, space, cost, seed, surrogate="saas-map"),
            args.budget,
        ),
        "autopeft-map-cost": (
            "AutoPEFT (SAAS-MAP + qLogNEHVI), fraction as a model input",
            lambda: autopeft(args, space, cost, seed, surrogate="saas-map", cost_input=True),
            args.budget,
        ),
        "ax": (
            "Ax-backed (AxPEFTSearcher, SAAS-NUTS)",
            lambda: ax_searcher(args, space, cost, seed, "saas-nuts"),
            args.budget,
        ),
        "ax-map": (
            "Ax-backed (AxPEFTSearcher, SAAS-MAP)",
            lambda: ax_searcher(args, space, cost, seed, "saas-map"),
            args.budget,
        ),
        "random": (
            "random search, 2x budget",
            lambda: RandomPEFTSearcher(space, cost_fn=cost, seed=seed),
            2 * args.budget,
        ),
        "tpe": (
            "Optuna TPE (OptunaSearch)",
            lambda: optuna_searcher(space, optuna.samplers.TPESampler(seed=seed)),
            args.budget,
        ),
        "nsga2": (
            "Optuna NSGA-II (OptunaSearch)",
            lambda: optuna_searcher(
                space, optuna.samplers.NSGAIISampler(seed=seed, population_size=args.initial)
            ),
            args.budget,
        ),
    }
    return {
        name: (factory, budget)
        for key, (name, factory, budget) in every.items()
        if key in args.methods
    }


def drive(
    searcher: Any,
    problem: SyntheticPeftProblem,
    budget: int,
    batch: int,
    fails: Callable[[Any], bool] | None = None,
) -> dict[str, Any]:
    """Synchronous batches through the Searcher API; points in completion order.

    With ``fails``, a configuration for which it is true fails as a raising
    trainable would (``on_trial_complete(error=True)``); it counts against the
    budget and gives no point.
    """
    points: list[tuple[float, float]] = []
    seconds: list[float] = []
    seen: set[Any] = set()
    repeats = trial = evaluated = 0
    failed: list[bool] = []
    while evaluated < budget:
        running = []
        for _ in range(min(batch, budget - evaluated)):
            start = time.perf_counter()
            config = searcher.suggest(f"t{trial}")
            seconds.append(time.perf_counter() - start)
            if not isinstance(config, dict):
                break
            running.append((f"t{trial}", config))
            trial += 1
        if not running:
            raise RuntimeError(f"{type(searcher).__name__} stopped suggesting early")
        for trial_id, config in running:
            peft = problem.space.from_trial_config(config)
            repeats += peft.model_key() in seen
            seen.add(peft.model_key())
            evaluated += 1
            failed.append(fails is not None and fails(peft))
            if failed[-1]:
                searcher.on_trial_complete(trial_id, None, error=True)
                continue
            result = problem.evaluate(peft)
            searcher.on_trial_complete(trial_id, result)
            points.append((result[SCORE], result[PARAM_FRACTION]))
    return {"points": points, "seconds": seconds, "repeats": repeats, "failed": failed}


def too_big(config: Any) -> bool:
    """The failure region of ``--part failures``: total module size of 512 or more (OOM)."""
    return config.sa_size + config.pa_size + config.pt_length >= 512


def failures(args: argparse.Namespace, space: SearchSpace) -> list[dict[str, Any]]:
    """Failed trials at equal budget: how the searcher learns from failures.

    With the feasibility model (a GP of failed against ran, qLogNEHVI's outcome
    constraint; the default) and failures also fitted just below the worst score
    (the default), with the feasibility model alone (the score model fits
    completed results only), and with the failures fitted below the worst only
    (the searcher before the feasibility model). All use the MAP SAAS surrogate
    (seconds per suggestion) with the same seed, hence the same random initial
    design; random search at the same budget for scale. Failures are counted after
    the initial design, where the model decides.
    """
    rows: dict[str, list[dict[str, Any]]] = {}
    for seed in range(args.seeds):
        problem = SyntheticPeftProblem(space, seed=seed)
        reference = reference_point_for(space, problem.cost)
        contestants = {
            "autopeft-map, feasibility model + failures below the worst (default)": autopeft(
                args, space, problem.cost, seed, surrogate="saas-map"
            ),
            "autopeft-map, feasibility model, completed results only": autopeft(
                args, space, problem.cost, seed, surrogate="saas-map", model_failures=False
            ),
            "autopeft-map, failures below the worst only (before)": autopeft(
                args, space, problem.cost, seed, surrogate="saas-map", model_feasibility=False
            ),
            "random": RandomPEFTSearcher(space, cost_fn=problem.cost, seed=seed),
        }
        for name, searcher in contestants.items():
            start = time.perf_counter()
            run = drive(searcher, problem, args.budget, args.batch, too_big)
            failed_after = sum(run["failed"][args.initial :])
            hv = hypervolume(run["points"], reference) if run["points"] else 0.0
            wall = time.perf_counter() - start
            rows.setdefault(name, []).append({"failures": failed_after, "hv": hv, "wall": wall})
            print(
                f"seed {seed} {name:70s} failures after the initial design {failed_after:3d}"
                f"  HV {hv:.5f}  {wall:6.1f} s",
                flush=True,
            )
    return [
        {
            "method": name,
            "evaluations": args.budget,
            "failures after the initial design, per seed": " / ".join(
                str(r["failures"]) for r in per_seed
            ),
            "median failures": statistics.median(r["failures"] for r in per_seed),
            "median HV": f"{statistics.median(r['hv'] for r in per_seed):.5f}",
            "median s per run": f"{statistics.median(r['wall'] for r in per_seed):.0f}",
        }
        for name, per_seed in rows.items()
    ]


def quality(args: argparse.Namespace, space: SearchSpace) -> list[dict[str, Any]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for seed in range(args.seeds):
        problem = SyntheticPeftProblem(space, seed=seed)
        reference = reference_point_for(space, problem.cost)
        runs = {}
        for name, (factory, budget) in methods(args, space, problem.cost, seed).items():
            start = time.perf_counter()
            searcher = factory()
            runs[name] = drive(searcher, problem, budget, args.batch)
            runs[name]["wall_s"] = time.perf_counter() - start
            # The model-based steps as the searcher timed them (fit, acquisition).
            runs[name]["steps"] = [t for t in getattr(searcher, "timings", []) if "fit_s" in t]
            runs[name]["budget"] = budget
        union = [p for run in runs.values() for p in run["points"]]
        best = hypervolume(union, reference)
        for name, run in runs.items():
            trace = hypervolume_trace(run["points"], reference)
            entries = [(name, run["budget"], trace[-1])]
            if run["budget"] > args.budget:
                entries.append((name.replace("2x", "1x"), args.budget, trace[args.budget - 1]))
            for label, budget, value in entries:
                rows.setdefault(label, []).append(
                    {
                        "seed": seed,
                        "evaluations": budget,
                        "hv": value,
                        "regret": best - value,
                        "s_per_suggestion": statistics.mean(run["seconds"]),
                        # after the initial design: the model-based steps
                        "s_per_model_step": statistics.mean(run["seconds"][args.initial :]),
                        "wall_s": run["wall_s"],
                        "repeats": run["repeats"],
                        "steps": run["steps"],
                    }
                )
            print(f"seed {seed} {name:32s} HV {trace[-1]:.5f}  {run['wall_s']:7.1f} s", flush=True)
    table = []
    for name, per_seed in rows.items():
        hvs = sorted(r["hv"] for r in per_seed)
        quartiles = statistics.quantiles(hvs, n=4) if len(hvs) > 1 else [hvs[0]] * 3
        table.append(
            {
                "method": name,
                "evaluations": per_seed[0]["evaluations"],
                "median HV": f"{statistics.median(hvs):.5f}",
                "HV IQR": f"{quartiles[0]:.5f}-{quartiles[2]:.5f}",
                "median regret x1e3": f"{1e3 * statistics.median(r['regret'] for r in per_seed):.2f}",
                "s / suggestion": f"{statistics.median(r['s_per_suggestion'] for r in per_seed):.2f}",
                "s / model-based step": (
                    f"{statistics.median(r['s_per_model_step'] for r in per_seed):.2f}"
                ),
                "fit / acquisition s per step": _split([t for r in per_seed for t in r["steps"]]),
                "repeats": sum(r["repeats"] for r in per_seed),
            }
        )
    return table


def _split(steps: list[dict[str, Any]]) -> str:
    """Mean seconds of a model-based step's fit and acquisition, as the searcher timed them
    (means: in a batch AutoPEFT fits once and its other steps reuse the fit)."""
    if not steps:
        return "-"
    fit = statistics.mean(t["fit_s"] for t in steps)
    acquisition = statistics.mean(t["acquisition_s"] for t in steps)
    return f"{fit:.2f} / {acquisition:.2f}"


def cost(args: argparse.Namespace, space: SearchSpace) -> list[dict[str, Any]]:
    problem = SyntheticPeftProblem(space, seed=0)
    table = []
    for label, setting in args.cost_settings:
        for n in (int(v) for v in args.observations.split(",")):
            rng = random.Random(n)
            configs: dict[Any, Any] = {}
            while len(configs) < n:
                config = space.sample(rng)
                configs.setdefault(config.model_key(), config)
            steps = []
            for repeat in range(2):
                searcher = autopeft(
                    args, space, problem.cost, seed=repeat, num_initial=0, **setting
                )
                for config in configs.values():
                    searcher.add_evaluated_point(config.to_dict(), problem.score(config))
                for i in range(args.cost_batch if repeat == 0 else 1):
                    searcher.suggest(f"t{i}")
                if repeat == 1:  # one result more: the next fit starts from the last one
                    searcher.on_trial_complete("t0", {SCORE: problem.score(searcher.pending["t0"])})
                    searcher.suggest("next")
                steps.append(searcher.timings)
            first, warm = steps
            row = {
                "surrogate": label
                + (" {}/{}/{}".format(*setting["nuts"]) if "nuts" in setting else ""),
                "observations": n,
                "fit_first_s": first[0]["fit_s"],
                "fit_warm_s": warm[0]["fit_s"],
                "acquisition_s": first[0]["acquisition_s"],
                "acq_pending_s": (
                    round(statistics.mean(t["acquisition_s"] for t in first[1:]), 2)
                    if len(first) > 1
                    else None
                ),
                f"batch_of_{args.cost_batch}_s": round(sum(t["total_s"] for t in first), 2),
                # A suggestion during a search: one result more than the last fit, whose
                # hyperparameters the MAP fit starts from (NUTS starts afresh).
                "next_fit_s": warm[-1]["fit_s"],
                "next_suggestion_s": warm[-1]["total_s"],
            }
            print(row, flush=True)
            table.append(row)
    return table


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.getLogger("ray.tune.search.optuna").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace(args.layers, args.hidden)
    print(f"space: {args.layers} layers x {args.hidden}, {space.cardinality:,} configurations")
    start = time.perf_counter()
    sections: list[tuple[str, Callable[..., list[dict[str, Any]]]]] = []
    if args.part in ("quality", "all"):
        sections.append(("Search quality (final hypervolume, synthetic problem)", quality))
    if args.part in ("cost", "all"):
        sections.append(("Seconds per suggestion (fit + acquisition)", cost))
    if args.part in ("failures", "all"):
        sections.append(("Failed trials when large configurations fail", failures))
    outputs = [(title, function(args, space)) for title, function in sections]
    for title, rows in outputs:
        print(f"\n### {title}\n\n{markdown(rows)}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s on {os.cpu_count()} CPUs")
    print("reproduce: .venv/bin/python benchmarks/search_quality.py " + shlex.join(argv))


if __name__ == "__main__":
    main()
