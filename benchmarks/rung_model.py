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

``--table`` asks the same of real trainings (PEFTBench, ``benchmarks/peftbench``):
the table's 50 configurations of ``full`` trained at 1x and at 4x (seed 0) are
the pool. Per data seed, 32 of them go through successive halving with rungs 1x
and 4x (24 end at 1x, the 8 best by 1x dev score go on to 4x), the model is
fitted on what the searcher would see, and it ranks the 18 held-out
configurations against their 4x dev score (the top 3's mean 4x dev score is
reported; the best of the held-out is about 0.80).

    python benchmarks/rung_model.py                  # n = 30, 60, 90; seeds 0-3
    python benchmarks/rung_model.py --cost-input     # the fraction as one more input
    python benchmarks/rung_model.py --table --seeds $(seq 0 19) [--cost-input]
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
from collections.abc import Callable
from typing import Any

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


def fitted_data(
    way: str, records: list[TrialRecord], score_at_target: Callable[[Any], float], target: int
):
    """What the model of ``way`` is fitted on, and whether it is the multi-fidelity one."""
    if way == "all at target":
        records = [
            dataclasses.replace(
                r, status=COMPLETED, score=score_at_target(r.config), fidelity=target, earlier=()
            )
            for r in records
        ]
    elif way == "last rung":
        records = [dataclasses.replace(r, earlier=()) for r in records]
    multi = way in ("last rung", "every rung")
    return observations(records, float, multi_fidelity=multi), multi


def rank_unseen(
    space: SearchSpace,
    data: list,
    multi: bool,
    cost_fn: Callable[[Any], float] | None,
    unseen: list,
    truth: list[float],
    top_k: int,
) -> tuple[float, float]:
    """Fit the MAP model on ``data``; its Spearman on ``unseen`` against ``truth`` at the
    target, and the mean truth of its top ``top_k``."""
    extra = None
    if cost_fn is not None:
        extra = CostInput(KnownCost(space, cost_fn), cost_fn(largest_configuration(space)))
    X = model_inputs(space, data, multi, extra)
    Y = torch.tensor([[value] for _, value, _ in data], dtype=DTYPE)
    model = fit_map_score_model(X, Y, seed=0, multi_fidelity=multi)
    model = on_encodings(model, multi, extra)
    with torch.no_grad():
        mean = model.posterior(model_inputs(space, [(c, 0.0, 1.0) for c in unseen], False))
        predicted = mean.mean.squeeze(-1).tolist()
    top = sorted(range(len(unseen)), key=lambda i: -predicted[i])[:top_k]
    return float(spearmanr(predicted, truth)[0]), statistics.mean(truth[i] for i in top)


def measure(way: str, n: int, seed: int, cost_input: bool) -> tuple[float, float]:
    problem = SyntheticPeftProblem(SPACE, seed=seed, target_fidelity=TARGET)
    data, multi = fitted_data(way, records_of(problem, n, seed), problem.score, TARGET)
    rng = random.Random(5)
    unseen = [SPACE.sample(rng) for _ in range(300)]
    truth = [problem.noiseless_score(c) for c in unseen]
    cost_fn = problem.cost if cost_input else None
    return rank_unseen(SPACE, data, multi, cost_fn, unseen, truth, 10)


class TableScores:
    """PEFTBench's seed-0 dev scores at 1x and 4x, as ``successive_halving`` asks them."""

    def __init__(self, folder: str) -> None:
        from autopeft_ray.models import DEFAULT_MODEL
        from autopeft_ray.objectives.cost import ParamCost
        from autopeft_ray.testing.peftbench import PeftBench, configuration_of

        self.space = SearchSpace.from_model_config(DEFAULT_MODEL, "full")
        self.cost = ParamCost.from_model(DEFAULT_MODEL)
        self.bench = PeftBench(folder)
        self.pool: list = []
        for key in self.bench.keys(4):
            rows = {f: [r for r in self.bench.rows_of(key, f) if r.seed == 0] for f in (1, 4)}
            if rows[1] and rows[4]:
                self.pool.append(configuration_of(key))

    def score(self, config, fidelity: int) -> float:
        [row] = [r for r in self.bench.rows_of(config, fidelity) if r.seed == 0]
        return row.dev_score


def measure_table(
    way: str, scores: TableScores, seed: int, cost_input: bool, n: int = 32
) -> tuple[float, float]:
    rng = random.Random(200 + seed)
    pool = list(scores.pool)
    rng.shuffle(pool)
    trials, held_out = pool[:n], pool[n:]
    ended = successive_halving(scores, trials, (1, 4), (n - n // 4, n // 4))  # type: ignore[arg-type]
    records = [
        TrialRecord.from_reports(str(i), config, reported, 4)
        for i, (config, reported) in enumerate(ended)
    ]
    data, multi = fitted_data(way, records, lambda c: scores.score(c, 4), 4)
    truth = [scores.score(c, 4) for c in held_out]
    cost_fn = scores.cost if cost_input else None
    return rank_unseen(scores.space, data, multi, cost_fn, held_out, truth, 3)


def main_table(args: argparse.Namespace) -> None:
    from pathlib import Path

    scores = TableScores(str(Path(__file__).resolve().parent / "peftbench" / "data"))
    held_out = len(scores.pool) - 32
    print(
        f"{len(scores.pool)} configurations with 1x and 4x rows; 32 trials a seed "
        f"(24 end at 1x, 8 reach 4x), {held_out} held out"
    )
    print(
        f"| fitted | Spearman at 4x, held out (seeds {args.seeds[0]}-{args.seeds[-1]}) "
        "| median | mean 4x dev of the top 3 |"
    )
    print("|---|---|---|---|")
    for way in ("every rung", "full only", "all at target"):
        rows = [measure_table(way, scores, seed, args.cost_input) for seed in args.seeds]
        rhos = [rho for rho, _ in rows]
        print(
            f"| {way} | "
            + ", ".join(f"{rho:.2f}" for rho in rhos)
            + f" | {statistics.median(rhos):.3f} | {statistics.mean(t for _, t in rows):.4f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, nargs="+", default=sorted(STOPS), choices=sorted(STOPS)
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--cost-input", action="store_true")
    parser.add_argument("--table", action="store_true", help="PEFTBench's real trainings")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    if args.table:
        main_table(args)
        print(f"\nreproduce: python {shlex.join(sys.argv)}")
        return
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
