"""Does learning from every rung pay? Multi-fidelity AutoPEFT under MO-ASHA, at equal compute.

A real ``Tuner`` with :class:`autopeft_ray.experiment.schedulers.MultiObjectiveASHA`
(rungs at 1, 3, 9 and 27 fidelity units: grace period 1, reduction factor 3)
on the synthetic problem over the BERT-base space
(:class:`autopeft_ray.testing.synthetic.SyntheticPeftProblem`, target
fidelity 27: a result at fidelity ``t`` follows its learning curve). Each
trial reports at the rungs only, instantly: the benchmark measures search
quality, not time. Three searchers, the same seeds:

* ``multi-fidelity``: ``AutoPEFTSearcher(multi_fidelity=True)``: every ended
  trial is fitted, with its fidelity as a model input;
* ``full-only``: today's ``AutoPEFTSearcher``: only trials that reached the
  target are fitted;
* ``random``: ``RandomPEFTSearcher`` (MO-ASHA with random sampling).

Equal compute: a ``Stopper`` ends the run once the fidelity units trained
(each trial counts the largest fidelity it reported) reach ``--budget``
full trainings (``budget x 27`` units); the units actually spent are printed
(trials in flight may overshoot by a few units).

Reported per searcher and seed: the hypervolume of the results that reached
the target fidelity (reported scores; reference: score 0.6, the head-only
score of the problem, and the largest configuration's fraction), the trials
run, how many reached the target, the units spent and the searcher's time.
Both model-based searchers use MAP fits (NUTS at hundreds of observations per
run is hours on 2 cores; multi-fidelity's model is the one of
``searchers/surrogate/fidelity.py``, SAAS prior on the configuration) and the
same number of random initial trials; with ``--cost-input`` both see each
configuration's parameter fraction as one more model input
(:mod:`searchers.surrogate.inputs`).

    python benchmarks/multi_fidelity.py --quick       # smoke: 1 seed, budget 4, ~3 minutes
    python benchmarks/multi_fidelity.py               # 5 seeds, budget 15: the issue's run
    python benchmarks/multi_fidelity.py --cost-input  # the same, the fraction a model input
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from driver_idle import TimedAutoPEFTSearcher, TimedRandomPEFTSearcher  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.stopper import Stopper  # noqa: E402

from autopeft_ray.experiment.schedulers import MultiObjectiveASHA  # noqa: E402
from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION, SCORE  # noqa: E402
from autopeft_ray.objectives.pareto import hypervolume, reference_point_for  # noqa: E402
from autopeft_ray.space import SearchSpace  # noqa: E402
from autopeft_ray.testing.synthetic import SyntheticPeftProblem  # noqa: E402

SPACE = SearchSpace(12, 768)
TARGET = 27
RUNGS = (1, 3, 9, 27)
SEARCHERS = ("multi-fidelity", "full-only", "random")
#: The calls whose time is the searcher's time (as before: suggest and fitting results).
SEARCHER_CALLS = ("suggest", "on_trial_complete")


def rung_trial(config: dict[str, Any], seed: int) -> None:
    """Report the synthetic result at each rung (ASHA stops the trial between them)."""
    problem = SyntheticPeftProblem(SPACE, seed=seed, target_fidelity=TARGET)
    configuration = SPACE.from_trial_config(config)
    for fidelity in RUNGS:
        tune.report(problem.evaluate(configuration, fidelity=fidelity))


class ComputeBudget(Stopper):
    """Stop the whole run once the fidelity units trained reach ``units``."""

    def __init__(self, units: float) -> None:
        self.units = units
        self.reached: dict[str, float] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        fidelity = float(result.get(FIDELITY, 0.0))
        self.reached[trial_id] = max(self.reached.get(trial_id, 0.0), fidelity)
        return False

    @property
    def spent(self) -> float:
        return sum(self.reached.values())

    def stop_all(self) -> bool:
        return self.spent >= self.units


def make_searcher(kind: str, seed: int, args: argparse.Namespace) -> Any:
    cost = SyntheticPeftProblem(SPACE, seed=seed, target_fidelity=TARGET).cost
    if kind == "random":
        return TimedRandomPEFTSearcher(SPACE, cost_fn=cost, seed=seed)
    return TimedAutoPEFTSearcher(
        SPACE,
        cost,
        num_initial=args.initial,
        surrogate="saas-map",
        seed=seed,
        multi_fidelity=kind == "multi-fidelity",
        cost_input=args.cost_input,
        max_baseline=args.max_baseline,
        jax_cache_dir=None,
    )


def run_one(kind: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    searcher = make_searcher(kind, seed, args)
    searcher.calls = []  # this run's calls: (name, seconds, left a slot waiting)
    budget = ComputeBudget(args.budget * TARGET)
    start = time.time()
    results = tune.Tuner(
        tune.with_resources(tune.with_parameters(rung_trial, seed=seed), {"cpu": 0.01}),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=MultiObjectiveASHA(
                max_t=TARGET, grace_period=RUNGS[0], reduction_factor=3, brackets=1
            ),
            metric=SCORE,
            mode="max",
            num_samples=100_000,
            max_concurrent_trials=args.concurrency,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            storage_path=args.storage, name=f"{kind}-{seed}", stop=budget, verbose=0
        ),
    ).fit()
    wall = time.time() - start
    final = [r.metrics for r in results if r.metrics and r.metrics.get(FIDELITY) == TARGET]
    points = [(m[SCORE], m[PARAM_FRACTION]) for m in final]
    reference = (args.reference_score, reference_point_for(SPACE, searcher.cost_fn)[1])
    fitted_at_end = None
    if kind != "random":
        fitted_at_end = len(searcher._observations())
    return {
        "searcher": kind,
        "seed": seed,
        "cost_input": args.cost_input,
        "hypervolume": hypervolume(points, reference) if points else 0.0,
        "best_score": max((s for s, _ in points), default=None),
        "trials": len(budget.reached),
        "full": len(final),
        "units": budget.spent,
        "fitted": fitted_at_end,
        "model_steps": sum(1 for t in getattr(searcher, "timings", []) if "total_s" in t),
        "searcher_s": sum(d for name, d, _ in searcher.calls if name in SEARCHER_CALLS),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--searchers", nargs="+", default=list(SEARCHERS), choices=SEARCHERS)
    parser.add_argument("--budget", type=float, default=15.0, help="full trainings' worth")
    parser.add_argument("--initial", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-baseline", type=int, default=None)
    parser.add_argument("--reference-score", type=float, default=0.6)
    parser.add_argument(
        "--cost-input",
        action="store_true",
        help="both model-based searchers see the parameter fraction as a model input",
    )
    parser.add_argument("--storage", default="/tmp/autopeft_multi_fidelity")
    parser.add_argument("--output", type=Path, default=None, help="append rows here (jsonl)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.budget, args.initial = [0], 4.0, 6
    import ray

    ray.init(num_cpus=args.concurrency + 1, include_dashboard=False, log_to_driver=False)
    rows = []
    for seed in args.seeds:
        for kind in args.searchers:
            row = run_one(kind, seed, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.output is not None:
                with args.output.open("a") as file:
                    file.write(json.dumps(row) + "\n")
    ray.shutdown()

    print(
        f"\n# multi-fidelity under MO-ASHA (rungs {'/'.join(map(str, RUNGS))}, budget "
        f"{args.budget:g} full trainings = {args.budget * TARGET:g} units, {args.initial} random "
        f"first, MAP SAAS{' + cost input' if args.cost_input else ''}, BERT-base space, concurrency {args.concurrency}, 2 cores)"
    )
    print("| seed | " + " | ".join(f"HV {k}" for k in args.searchers) + " | winner |")
    print("|---|" + "---|" * (len(args.searchers) + 1))
    by = {(r["searcher"], r["seed"]): r for r in rows}
    for seed in args.seeds:
        hvs = {k: by[(k, seed)]["hypervolume"] for k in args.searchers}
        print(
            f"| {seed} | "
            + " | ".join(f"{hvs[k]:.5f}" for k in args.searchers)
            + f" | {max(hvs, key=lambda k: hvs[k])} |"
        )
    print("\n| searcher | median HV | trials | reached target | units | searcher s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.searchers:
        mine = [r for r in rows if r["searcher"] == kind]
        print(
            f"| {kind} | {statistics.median(r['hypervolume'] for r in mine):.5f} | "
            f"{statistics.mean(r['trials'] for r in mine):.0f} | "
            f"{statistics.mean(r['full'] for r in mine):.1f} | "
            f"{statistics.mean(r['units'] for r in mine):.0f} | "
            f"{statistics.mean(r['searcher_s'] for r in mine):.0f} | "
            f"{statistics.mean(r['wall_s'] for r in mine):.0f} |"
        )
    if {"multi-fidelity", "full-only", "random"} <= set(args.searchers):
        wins = sum(
            by[("multi-fidelity", s)]["hypervolume"]
            > max(by[("full-only", s)]["hypervolume"], by[("random", s)]["hypervolume"])
            for s in args.seeds
        )
        print(f"\nmulti-fidelity above both on {wins} of {len(args.seeds)} seeds")
    print(f"\nreproduce: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
