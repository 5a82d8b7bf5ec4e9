"""What does a multi-fidelity score model learn from early-stopped trials? Its ranking at the target.

No Tune and no search: ``n`` random configurations of the synthetic problem
(BERT-base space, target fidelity 27) go through synchronous successive
halving (rungs 1, 3, 9, 27; the worst end at each rung, in the proportions an
asynchronous MO-ASHA run showed), and a MAP score model is fitted on what the
searcher would see. Four ways to fit the same trials:

* ``last rung``: each trial's last result at its fidelity (the multi-fidelity
  searcher before every rung was kept);
* ``every rung``: each trial's reported rungs too (``TrialRecord.earlier``,
  today's ``multi_fidelity=True``);
* ``full only``: the trials that reached the target (the default searcher);
* ``all at target``: every configuration trained to the target, for scale
  (it costs several times the compute of the others).

Reported per data seed: the Spearman correlation between the model's mean at
the target and the noiseless score over 300 unseen random configurations,
and the mean noiseless score of the model's top 10 of them (the best of the
300 is about 0.862).

    python benchmarks/rung_model.py                  # n = 30, 60, 90; seeds 0-3
    python benchmarks/rung_model.py --cost-input     # the fraction as one more input
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import shlex
import statistics
import sys
import warnings

import torch
from scipy.stats import spearmanr

from autopeft_ray.objectives import COMPLETED
from autopeft_ray.objectives.pareto import largest_configuration
from autopeft_ray.searchers.records import TrialRecord, observations
from autopeft_ray.searchers.surrogate import (
    DTYPE,
    CostInput,
    KnownCost,
    fit_map_score_model,
    model_inputs,
    on_encodings,
)
from autopeft_ray.space import SearchSpace
from autopeft_ray.testing.synthetic import SyntheticPeftProblem, successive_halving

SPACE = SearchSpace(12, 768)
TARGET = 27
RUNGS = (1, 3, 9, 27)
#: Trials -> how many end at rungs 1, 3, 9 and 27.
STOPS = {30: (16, 6, 3, 5), 60: (35, 13, 5, 7), 90: (55, 20, 7, 8)}
WAYS = ("last rung", "every rung", "full only", "all at target")


def records_of(problem: SyntheticPeftProblem, n: int, seed: int) -> list[TrialRecord]:
    rng = random.Random(100 + seed)
    configs = [SPACE.sample(rng) for _ in range(n)]
    ended = successive_halving(problem, configs, RUNGS, STOPS[n])
    return [
        TrialRecord.from_reports(str(i), config, reported, TARGET)
        for i, (config, reported) in enumerate(ended)
    ]


def fitted_data(way: str, records: list[TrialRecord], problem: SyntheticPeftProblem):
    if way == "all at target":
        records = [
            dataclasses.replace(
                r, status=COMPLETED, score=problem.score(r.config), fidelity=TARGET, earlier=()
            )
            for r in records
        ]
    elif way == "last rung":
        records = [dataclasses.replace(r, earlier=()) for r in records]
    multi = way in ("last rung", "every rung")
    return observations(records, float, multi_fidelity=multi), multi


def measure(way: str, n: int, seed: int, cost_input: bool) -> tuple[float, float]:
    problem = SyntheticPeftProblem(SPACE, seed=seed, target_fidelity=TARGET)
    data, multi = fitted_data(way, records_of(problem, n, seed), problem)
    extra = None
    if cost_input:
        extra = CostInput(
            KnownCost(SPACE, problem.cost), problem.cost(largest_configuration(SPACE))
        )
    X = model_inputs(SPACE, data, multi, extra)
    Y = torch.tensor([[value] for _, value, _ in data], dtype=DTYPE)
    model = fit_map_score_model(X, Y, seed=0, multi_fidelity=multi)
    model = on_encodings(model, multi, extra)
    rng = random.Random(5)
    unseen = [SPACE.sample(rng) for _ in range(300)]
    truth = [problem.noiseless_score(c) for c in unseen]
    with torch.no_grad():
        mean = model.posterior(model_inputs(SPACE, [(c, 0.0, 1.0) for c in unseen], False))
        predicted = mean.mean.squeeze(-1).tolist()
    top = sorted(range(len(unseen)), key=lambda i: -predicted[i])[:10]
    return float(spearmanr(predicted, truth)[0]), statistics.mean(truth[i] for i in top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, nargs="+", default=sorted(STOPS), choices=sorted(STOPS)
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--cost-input", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    print(
        f"| trials | fitted | Spearman at the target (seeds {', '.join(map(str, args.seeds))}) | mean true score of the top 10 |"
    )
    print("|---|---|---|---|")
    for n in args.trials:
        for way in WAYS:
            rows = [measure(way, n, seed, args.cost_input) for seed in args.seeds]
            print(
                f"| {n} | {way} | "
                + ", ".join(f"{rho:.2f}" for rho, _ in rows)
                + f" | {statistics.mean(top for _, top in rows):.3f} |",
                flush=True,
            )
    print(f"\nreproduce: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
