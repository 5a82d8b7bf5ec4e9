"""Searches replayed on PEFTBench: every searcher, many seeds, the paper's budget, in minutes.

Each run drives one searcher through the Ray Tune ``Searcher`` API
(``suggest`` / ``on_trial_complete``), as a Tuner would, with ``--concurrency``
trials pending at a time, against the table of real trainings
(``benchmarks/peftbench/``): a suggested configuration's result is one of its
recorded trainings at 1x (the search fidelity), the training seed drawn at
random, as Syne Tune's simulated backend draws one recorded seed per trial.
Trials end in the order of their recorded seconds on a simulated clock, so
concurrent runs see results arrive as a cluster would deliver them. The same
configuration draws the same seed in every run of one replay seed (common random
numbers: contestants are compared on the same noise).

The search is restricted to the table's configurations of ``--space`` (its
``candidates``; rows of the build's stage ``ablation`` are candidates of the
ablated spaces alone, so that a replay of ``full`` stays the same benchmark as
the ablations grow): ``AutoPEFTSearcher``, ``RandomPEFTSearcher`` and
``AxPEFTSearcher`` take them as ``candidates=`` (the Ax-backed searcher replaces
each proposal of Ax's by the nearest unseen candidate itself, and its Ax
experiment holds the candidate measured). Optuna's samplers cannot be
restricted: each of their proposals is evaluated as the nearest configuration
of the table not yet evaluated in the run (distance between encodings), and
reported to them under their own proposal. Their figures carry that caveat.

Contestants (``--contestants``):

* ``autopeft-map``, ``autopeft-map-cost``: AutoPEFT with the MAP SAAS GP,
  without and with the parameter fraction as a model input; ``-auto``: with the
  reference point inferred from the observed front (``reference_point="auto"``)
  instead of the default (score 0, the largest configuration's fraction);
* ``autopeft-nuts``, ``autopeft-nuts-cost``: the same with NUTS (the demo's
  32/16/2 budget: the paper's 128/64/4 costs about 30 s a suggestion here);
* ``random``, ``random-2x``: random search at 1x and 2x the budget;
* ``nsga2``, ``tpe``: Ray Tune's ``OptunaSearch``, multi-objective;
* ``ax-map``: the Ax-backed searcher with Ax's MAP SAAS model.

Model-based searchers start with ``--initial`` random configurations; runs
with another initial design are shown as their own rows (``autopeft-map, 20
initial``), so replays at several ``--initial`` compare the initial design.

Figures (``--part summary``), per space, concurrency and budget (``--budgets``:
prefixes of each run in the order results arrived; a seed replayed at two budgets
counts once, by its longest run):

* the hypervolume of the observed (dev score, fraction) points, from the
  paper's reference, the nadir of the table's points in the space (its lowest
  dev score and largest fraction), and from the searcher's default (score 0,
  the fraction of the space's largest configuration); and from the nadir at the
  evaluated configurations' seed-0 dev score, which does not reward a lucky
  draw of the noise;
* per preset with a 4x row: the 4x test score of the configuration a user
  would pick, the best observed dev score at no more than the preset's
  fraction, against the preset's 4x test score (mean over seeds);
* the smallest fraction on the run's front whose 4x test score is within one
  standard error of the preset's;
* on how many runs the front holds a configuration at no more than the preset's
  fraction whose 4x test score is at least the preset's.

``--part findings`` checks the paper's findings on the runs of several spaces
(``--space sa``, ``sa-layer``, ``lora``, ``lora-layer`` and ``full``), all from
one reference: combined modules against one module, and choosing layers
against every layer on, per replay seed.

Runs are appended to ``--output`` (``runs.jsonl``) as they end; a run already
there is skipped, so the benchmark resumes and grows.

    python benchmarks/replay.py --part run --contestants random random-2x autopeft-map
    python benchmarks/replay.py --part summary
    python benchmarks/replay.py --part run --space sa-layer --contestants random autopeft-map
    python benchmarks/replay.py --part findings
    python benchmarks/replay.py --quick     # smoke: 2 seeds, budget 12
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")

from autopeft_ray.models import DEFAULT_MODEL  # noqa: E402
from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION, SCORE, TARGET_FIDELITY  # noqa: E402
from autopeft_ray.objectives.cost import ParamCost  # noqa: E402
from autopeft_ray.objectives.pareto import (  # noqa: E402
    hypervolume,
    pareto_mask,
    reference_point_for,
)
from autopeft_ray.searchers import AutoPEFTSearcher, AxPEFTSearcher, RandomPEFTSearcher  # noqa: E402
from autopeft_ray.space import PeftConfiguration, SearchSpace  # noqa: E402
from autopeft_ray.space.encoding import canonical_encoding  # noqa: E402
from autopeft_ray.testing.peftbench import PeftBench, configuration_key, seeds_of  # noqa: E402

HERE = Path(__file__).resolve().parent
CONTESTANTS = (
    "autopeft-map",
    "autopeft-map-cost",
    "autopeft-map-auto",
    "autopeft-map-cost-auto",
    "autopeft-nuts",
    "autopeft-nuts-cost",
    "random",
    "random-2x",
    "nsga2",
    "tpe",
    "ax-map",
)
#: The demo's NUTS budget (warmup, samples, thinning).
NUTS = (32, 16, 2)
#: Steps of one 1x training: every result reports it as its fidelity and target.
STEPS = 64
#: The spaces stage ``ablation`` of the build draws for. Its rows are candidates of these
#: alone: a combined space's candidates stay its own draws (stage ``space``), so a replay
#: of ``full`` is the same benchmark before and after the ablations are built.
ABLATED = ("sa", "sa-layer", "sa-pa-layer", "lora", "lora-layer")
#: The paper's findings as pairs of spaces, (richer, narrower): combined modules against
#: one module, and choosing layers against every layer on (SA, and LoRA alike).
FINDINGS = (("full", "sa-layer"), ("sa-layer", "sa"), ("lora-layer", "lora"), ("full", "sa"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=str(HERE / "peftbench" / "data"))
    parser.add_argument("--output", default=str(HERE / "results" / "replay"))
    parser.add_argument("--part", choices=("run", "summary", "both", "findings"), default="both")
    parser.add_argument("--contestants", nargs="+", choices=CONTESTANTS, default=list(CONTESTANTS))
    parser.add_argument("--space", default="full", help="the table's configurations of this space")
    parser.add_argument("--budget", type=int, default=80, help="evaluations per run (2x: twice)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 40, 80])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--initial", type=int, default=10, help="random start of model-based")
    parser.add_argument("--quick", action="store_true", help="2 seeds, budget 12, 4 initial")
    parser.add_argument(
        "--pick-fidelity",
        type=int,
        default=None,
        help="fidelity whose test scores judge picks (default: 4 if tabulated, else 1)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.budgets, args.initial = 2, 12, [6, 12], 4
        args.concurrency = args.concurrency[:1]
    return args


# -- the table as a problem ------------------------------------------------------------------


class TableProblem:
    """The table's 1x rows of one space: candidates, draws, and nearest neighbours."""

    def __init__(self, bench: PeftBench, space: SearchSpace) -> None:
        self.bench = bench
        self.space = space
        ablated = space.variant in ABLATED
        self.configs = [
            c
            for c in bench.configurations(1)
            if _member(space, c) and (ablated or not _ablation_only(bench, c))
        ]
        if not self.configs:
            raise SystemExit(f"the table holds no configuration of space {space.variant!r}")
        self.keys = [configuration_key(c) for c in self.configs]
        #: Names the candidates and their recorded seeds: a run replayed on a table that has
        #: grown since (more candidates, or a second seed to draw) is not reused. A key
        #: with seed 0 alone is named by itself, as before seeds were added.
        rows_of = [bench.rows_of(c, 1) for c in self.configs]
        names = []
        for key, rows in zip(self.keys, rows_of, strict=True):
            seeds = seeds_of(rows)
            names.append(key if seeds == [0] else f"{key}@{','.join(map(str, seeds))}")
        self.digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:10]
        self.encodings = [canonical_encoding(space, c) for c in self.configs]
        #: Every recorded 1x row of the candidates.
        self.rows = [r for rows in rows_of for r in rows]
        #: The paper's reference: the nadir of the table's points (lowest score, largest fraction).
        self.nadir = (
            min(r.dev_score for r in self.rows),
            max(r.param_fraction for r in self.rows),
        )

    def draw(self, config: PeftConfiguration, replay_seed: int) -> Any:
        """One recorded 1x training: the seed drawn per (replay seed, configuration)."""
        rng = random.Random(f"{replay_seed}:{configuration_key(config)}")
        return self.bench.lookup(config, 1, rng)

    def nearest_unevaluated(self, config: PeftConfiguration, done: set[str]) -> PeftConfiguration:
        """``config`` if tabulated and not evaluated in this run, else the nearest such one."""
        key = configuration_key(config)
        if key in self.keys and key not in done:
            return self.configs[self.keys.index(key)]
        target = canonical_encoding(self.space, config)
        best = min(
            (i for i, k in enumerate(self.keys) if k not in done),
            key=lambda i: sum(abs(a - b) for a, b in zip(self.encodings[i], target, strict=True)),
        )
        return self.configs[best]


def _ablation_only(bench: PeftBench, config: PeftConfiguration) -> bool:
    return all(r.stage == "ablation" for r in bench.rows_of(config, 1))


def _member(space: SearchSpace, config: PeftConfiguration) -> bool:
    try:
        space.validate(config)
    except Exception:  # noqa: BLE001 (a SearchSpaceError: not a member)
        return False
    return True


# -- contestants --------------------------------------------------------------------------


def make_searcher(
    name: str, problem: TableProblem, cost: ParamCost, seed: int, initial: int
) -> tuple[Any, bool]:
    """The searcher, and whether its proposals must be mapped to the table."""
    space, candidates = problem.space, problem.configs
    if name.startswith("random"):
        return RandomPEFTSearcher(space, cost_fn=cost, seed=seed, candidates=candidates), False
    if name.startswith("autopeft"):
        surrogate = "saas-map" if "-map" in name else "saas-nuts"
        warmup, samples, thinning = NUTS
        searcher = AutoPEFTSearcher(
            space,
            cost,
            num_initial=initial,
            surrogate=surrogate,
            nuts_warmup=warmup,
            nuts_samples=samples,
            nuts_thinning=thinning,
            cost_input="-cost" in name,
            reference_point="auto" if name.endswith("-auto") else None,
            seed=seed,
            candidates=candidates,
        )
        return searcher, False
    if name == "ax-map":
        return AxPEFTSearcher(
            space, cost, num_initial=initial, surrogate="saas-map", seed=seed, candidates=candidates
        ), False
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.NSGAIISampler(seed=seed, population_size=initial)
        if name == "nsga2"
        else optuna.samplers.TPESampler(seed=seed, n_startup_trials=initial)
    )
    domains: dict[str, optuna.distributions.BaseDistribution] = {
        d.name: optuna.distributions.CategoricalDistribution(list(d.choices))
        for d in space.dimensions
    }
    optuna_searcher = OptunaSearch(
        space=domains, metric=[SCORE, PARAM_FRACTION], mode=["max", "min"], sampler=sampler
    )
    return optuna_searcher, True


def replay(
    searcher: Any,
    mapped: bool,
    problem: TableProblem,
    replay_seed: int,
    budget: int,
    concurrency: int,
) -> dict[str, Any]:
    """One run: suggestions at ``concurrency``, results in simulated-time order."""
    fixed = problem.space.fixed()
    clock, trial = 0.0, 0
    running: list[tuple[float, str, dict[str, Any]]] = []  # (end time, trial id, result)
    evaluations: list[dict[str, Any]] = []
    done: set[str] = set()
    searcher_seconds = 0.0
    while len(evaluations) < budget:
        while len(running) < concurrency and trial < budget:
            started = time.perf_counter()
            suggestion = searcher.suggest(f"t{trial:04d}")
            searcher_seconds += time.perf_counter() - started
            if not isinstance(suggestion, dict):
                break  # None: wait for a result; FINISHED: the candidates are used up
            proposed = PeftConfiguration.from_dict({**fixed, **suggestion})
            config = problem.nearest_unevaluated(proposed, done) if mapped else proposed
            key = configuration_key(config)
            if key in done or key not in problem.keys:
                raise RuntimeError(f"{type(searcher).__name__} suggested {key}, not a candidate")
            done.add(key)
            row = problem.draw(config, replay_seed)
            result = {
                SCORE: row.dev_score,
                PARAM_FRACTION: row.param_fraction,
                FIDELITY: STEPS,
                TARGET_FIDELITY: STEPS,
            }
            running.append((clock + row.seconds, f"t{trial:04d}", result))
            evaluations.append(
                {
                    "trial": trial,
                    "key": key,
                    "proposed": configuration_key(proposed) if mapped else key,
                    "seed": row.seed,
                    "score": row.dev_score,
                    "fraction": row.param_fraction,
                    "start": clock,
                }
            )
            trial += 1
        if not running:
            break
        running.sort(key=lambda r: r[0])
        end, trial_id, result = running.pop(0)
        clock = end
        started = time.perf_counter()
        searcher.on_trial_complete(trial_id, result)
        searcher_seconds += time.perf_counter() - started
        evaluations[int(trial_id[1:])]["end"] = end
    while running:  # the last trials end too
        running.sort(key=lambda r: r[0])
        end, trial_id, result = running.pop(0)
        searcher.on_trial_complete(trial_id, result)
        evaluations[int(trial_id[1:])]["end"] = end
    timings = getattr(searcher, "timings", [])
    fallbacks = [t.get("fallback") for t in timings if "fallback" in t]
    return {
        "evaluations": evaluations,
        "searcher_seconds": searcher_seconds,
        "model_steps": len(fallbacks),
        "model_fallbacks": sum(f is not None for f in fallbacks),
        # The Ax-backed searcher's proposals replaced by the nearest unseen candidate.
        "model_mapped": sum(bool(t.get("mapped")) for t in timings),
    }


# -- runs on disk -------------------------------------------------------------------------


def run_key(
    args: argparse.Namespace, name: str, concurrency: int, seed: int, problem: TableProblem
) -> str:
    budget = 2 * args.budget if name == "random-2x" else args.budget
    return f"{name}|{args.space}|c{concurrency}|s{seed}|b{budget}|i{args.initial}|t{problem.digest}"


def read_runs(folder: Path) -> list[dict[str, Any]]:
    path = folder / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def longest_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per contestant, space, concurrency, replay seed, initial design and table:
    the one of the largest budget (the latest on a tie), in the runs' order.

    Its first evaluations stand for every smaller budget, so a shorter run of the same
    seed (one replayed before the longer, perhaps from older code) is not counted twice.
    """
    kept: dict[tuple[Any, ...], int] = {}
    for i, run in enumerate(runs):
        key = tuple(
            run.get(k) for k in ("contestant", "space", "concurrency", "seed", "initial", "table")
        )
        if key not in kept or run["budget"] >= runs[kept[key]]["budget"]:
            kept[key] = i
    return [runs[i] for i in sorted(kept.values())]


def run_all(args: argparse.Namespace) -> None:
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    done = {r["run"] for r in read_runs(folder)}
    bench = PeftBench(args.table)
    space = SearchSpace.from_model_config(DEFAULT_MODEL, args.space)
    problem = TableProblem(bench, space)
    cost = ParamCost.from_model(DEFAULT_MODEL)
    print(
        f"{len(problem.configs)} tabulated configurations of space {args.space!r}; "
        f"reference (nadir) {problem.nadir}",
        flush=True,
    )
    for concurrency in args.concurrency:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in args.contestants:
                key = run_key(args, name, concurrency, seed, problem)
                if key in done:
                    continue
                budget = 2 * args.budget if name == "random-2x" else args.budget
                budget = min(budget, len(problem.configs))
                started = time.perf_counter()
                searcher, mapped = make_searcher(name, problem, cost, seed, args.initial)
                out = replay(searcher, mapped, problem, seed, budget, concurrency)
                record = {
                    "run": key,
                    "contestant": name,
                    "space": args.space,
                    "concurrency": concurrency,
                    "seed": seed,
                    "budget": budget,
                    "initial": args.initial,
                    "mapped": mapped,
                    "candidates": len(problem.configs),
                    "table": problem.digest,
                    "seconds": time.perf_counter() - started,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    **out,
                }
                with (folder / "runs.jsonl").open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                points = [(e["score"], e["fraction"]) for e in out["evaluations"]]
                print(
                    f"{key}: HV {hypervolume(points, problem.nadir):.5g} "
                    f"({record['seconds']:.0f} s, searcher {out['searcher_seconds']:.0f} s, "
                    f"{out['model_fallbacks']}/{out['model_steps']} model steps fell back)",
                    flush=True,
                )


# -- figures ------------------------------------------------------------------------------


def arrived(run: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The first ``count`` evaluations in the order their results arrived."""
    ended = sorted(run["evaluations"], key=lambda e: (e.get("end", math.inf), e["trial"]))
    return ended[:count]


def seed0_points(evaluations: list[dict[str, Any]], bench: PeftBench) -> list[tuple[float, float]]:
    """The evaluated configurations at their seed-0 1x dev score, whatever seed was drawn.

    A run's observed points carry the seed each evaluation drew; their hypervolume
    rewards a lucky draw. Every candidate has a seed-0 row (a second seed only some,
    and seed 1 scores about 0.024 higher where both learned: BENCHMARKS.md), so
    seed 0 is the one fixed draw that scores every run's configurations alike.
    """
    out = []
    for e in evaluations:
        [row] = [r for r in bench.rows_of(e["key"], 1) if r.seed == 0]
        out.append((row.dev_score, e["fraction"]))
    return out


def pick_under(evaluations: list[dict[str, Any]], fraction: float) -> dict[str, Any] | None:
    """What a user would pick under a budget: the best observed dev score."""
    under = [e for e in evaluations if e["fraction"] <= fraction]
    return max(under, key=lambda e: e["score"]) if under else None


def picks_without(
    runs: list[dict[str, Any]],
    bench: PeftBench,
    fidelity: int,
    budgets: tuple[int, ...] = (20, 40, 80),
) -> list[str]:
    """The configurations the runs pick that the table has no row of at ``fidelity``.

    A pick is what the summary scores: the best observed dev score at no more
    than a preset's fraction, after each of ``budgets`` evaluations (twice that
    for ``random-2x``). Stage ``picks`` of the table's build trains these, so
    that the summary can score every pick at full fidelity. The most often
    picked come first, so a build stopped part-way scores the most picks.
    """
    fractions = sorted(
        {
            bench.rows_of(k, 1)[0].param_fraction
            for k in bench.keys(1, presets=True)
            if k.startswith("preset:") and k != "preset:full"
        }
    )
    count: dict[str, int] = {}
    for run in longest_runs(runs):
        factor = 2 if run["contestant"] == "random-2x" else 1
        for budget in budgets:
            if run["budget"] < factor * budget:
                continue
            evals = arrived(run, factor * budget)
            for fraction in fractions:
                pick = pick_under(evals, fraction)
                if pick is not None and not bench.rows_of(pick["key"], fidelity):
                    count[pick["key"]] = count.get(pick["key"], 0) + 1
    return sorted(count, key=lambda k: -count[k])  # stable: first picked first among ties


def summary(args: argparse.Namespace) -> None:
    bench = PeftBench(args.table)
    space = SearchSpace.from_model_config(DEFAULT_MODEL, args.space)
    problem = TableProblem(bench, space)
    everything = [r for r in read_runs(Path(args.output)) if r["space"] == args.space]
    current = [r for r in everything if r.get("table") == problem.digest]
    if len(current) < len(everything):
        print(
            f"{len(everything) - len(current)} runs of space {args.space!r} were replayed on "
            "another state of the table: left out"
        )
    runs = [{**r, "label": _label(r, args.initial)} for r in longest_runs(current)]
    if len(runs) < len(current):
        print(
            f"{len(current) - len(runs)} shorter runs of a seed that a longer run also "
            "replayed: left out (the longer run's first evaluations stand for them)"
        )
    if not runs:
        print(f"no runs of space {args.space!r} on this table in {args.output}")
        return
    cost = ParamCost.from_model(DEFAULT_MODEL)
    default_ref = reference_point_for(space, cost)
    full = args.pick_fidelity
    if full is None:  # 4x where the table has the presets at 4x, else the search fidelity
        full = 4 if any(k.startswith("preset:") for k in bench.keys(4, presets=True)) else 1
    presets = {
        k: (bench.mean(k, full, "test_score"), bench.rows_of(k, full)[0].param_fraction)
        for k in bench.keys(full, presets=True)
        if k.startswith("preset:") and k != "preset:full"
    }
    print(
        f"picks and presets scored by their mean test score at {full}x"
        + ("" if full == 4 else " (the table has no 4x rows yet: not the full-fidelity figure)")
    )
    test_n = _test_examples(args.table)
    print(
        f"space {args.space!r}: {len(problem.configs)} candidates; paper reference (nadir of "
        f"the table) {problem.nadir[0]:.4f} score, {100 * problem.nadir[1]:.3f}% params; "
        f"default reference {default_ref[0]:g}, {100 * default_ref[1]:.3f}%"
    )
    every = [(r.dev_score, r.param_fraction) for r in problem.rows]
    print(
        f"every candidate evaluated (the ceiling, every recorded seed): HV (nadir) "
        f"{hypervolume(every, problem.nadir):.6f}, HV (default) "
        f"{hypervolume(every, default_ref):.5f}, HV (nadir, log10 fraction) "
        f"{log_hypervolume(every, problem.nadir):.5f}"
    )
    for concurrency in sorted({r["concurrency"] for r in runs}):
        for budget in args.budgets:
            rows = _figures(
                runs, concurrency, budget, problem, default_ref, presets, bench, test_n, full
            )
            if rows:
                print(f"\n### concurrency {concurrency}, {budget} evaluations\n")
                print(_markdown(rows))
    _versus(runs, args, problem)


def _figures(
    runs: list[dict[str, Any]],
    concurrency: int,
    budget: int,
    problem: TableProblem,
    default_ref: tuple[float, float],
    presets: dict[str, tuple[float, float]],
    bench: PeftBench,
    test_n: int,
    full: int,
) -> list[dict[str, Any]]:
    rows = []
    order = {r["label"]: (CONTESTANTS.index(r["contestant"]), r["initial"]) for r in runs}
    for name in sorted(order, key=order.__getitem__):
        mine = [r for r in runs if r["label"] == name and r["concurrency"] == concurrency]
        factor = 2 if name == "random-2x" else 1
        mine = [r for r in mine if r["budget"] >= factor * budget]
        if not mine:
            continue
        hv, hv0, hvlog, hv_seed0 = [], [], [], []
        picks: dict[str, list[float]] = {p: [] for p in presets}
        smallest: dict[str, list[float]] = {p: [] for p in presets}
        holds: dict[str, list[bool]] = {p: [] for p in presets}
        for run in mine:
            evals = arrived(run, factor * budget)
            points = [(e["score"], e["fraction"]) for e in evals]
            hv.append(hypervolume(points, problem.nadir))
            hv0.append(hypervolume(points, default_ref))
            hvlog.append(log_hypervolume(points, problem.nadir))
            hv_seed0.append(hypervolume(seed0_points(evals, bench), problem.nadir))
            front = [e for e, on in zip(evals, pareto_mask(points), strict=True) if on]
            for preset, (score, fraction) in presets.items():
                pick = pick_under(evals, fraction)
                picks[preset].append(
                    math.nan if pick is None else bench.mean(pick["key"], full, "test_score")
                )
                se = math.sqrt(score * (1 - score) / test_n)
                matching = [
                    e["fraction"]
                    for e in front
                    if bench.mean(e["key"], full, "test_score") >= score - se
                ]
                smallest[preset].append(min(matching) if matching else math.nan)
                holds[preset].append(
                    any(
                        e["fraction"] <= fraction
                        and bench.mean(e["key"], full, "test_score") >= score
                        for e in front
                    )
                )
        row = {
            "contestant": name + (" (mapped)" if mine[0]["mapped"] else ""),
            "seeds": len(mine),
            "HV (nadir) median": statistics.median(hv),
            "HV (nadir) IQR": _iqr(hv),
            "HV (nadir, at seed 0) median": statistics.median(hv_seed0),
            "HV (default) median": statistics.median(hv0),
            "HV (nadir, log10 fraction) median": statistics.median(hvlog),
        }
        for preset, (score, _) in presets.items():
            values = [v for v in picks[preset] if not math.isnan(v)]
            se = math.sqrt(score * (1 - score) / test_n)
            row[f"pick <= {preset[7:]}: {full}x test (n)"] = (
                f"{statistics.median(values):.4f} ({len(values)}/{len(mine)})" if values else "-"
            )
            row[f">= {preset[7:]} - 1 s.e."] = sum(v >= score - se for v in values)
            found = [v for v in smallest[preset] if not math.isnan(v)]
            row[f"smallest front % within 1 s.e. of {preset[7:]}"] = (
                f"{100 * statistics.median(found):.4f} ({len(found)}/{len(mine)})" if found else "-"
            )
            row[f"front holds one <= {preset[7:]} at >= its test"] = (
                f"{sum(holds[preset])}/{len(mine)}"
            )
        rows.append(row)
    return rows


def _versus(runs: list[dict[str, Any]], args: argparse.Namespace, problem: TableProblem) -> None:
    """Per seed, AutoPEFT and the Ax-backed searcher against each other contestant (Ax
    against the others but AutoPEFT) at the largest budget."""
    budget = max(args.budgets)
    for concurrency in sorted({r["concurrency"] for r in runs}):
        by = {}
        for r in runs:
            if r["concurrency"] != concurrency:
                continue
            factor = 2 if r["contestant"] == "random-2x" else 1
            if r["budget"] >= factor * budget:
                evals = arrived(r, factor * budget)
                points = [(e["score"], e["fraction"]) for e in evals]
                by[(r["label"], r["seed"])] = (
                    hypervolume(points, problem.nadir),
                    log_hypervolume(points, problem.nadir),
                    hypervolume(seed0_points(evals, problem.bench), problem.nadir),
                )
        ours = sorted({c for c, _ in by if c.startswith(("autopeft", "ax"))})
        others = sorted({c for c, _ in by if not c.startswith("autopeft")})
        for mine in ours:
            for other in (o for o in others if o != mine):
                seeds = sorted(s for c, s in by if c == mine and (other, s) in by)
                if seeds:
                    wins = sum(by[(mine, s)][0] > by[(other, s)][0] for s in seeds)
                    log_wins = sum(by[(mine, s)][1] > by[(other, s)][1] for s in seeds)
                    seed0_wins = sum(by[(mine, s)][2] > by[(other, s)][2] for s in seeds)
                    print(
                        f"c{concurrency}, {budget} evaluations: {mine} above {other} on "
                        f"{wins} of {len(seeds)} seeds (HV from the nadir), {log_wins} of "
                        f"{len(seeds)} (log10 fraction), {seed0_wins} of {len(seeds)} (at seed 0)"
                    )


def findings(args: argparse.Namespace) -> None:
    """The paper's findings on the table: the pairs of spaces of ``FINDINGS`` compared.

    Every space is measured from one reference, the nadir of all their candidates'
    rows, so the hypervolumes of different spaces compare. Per space: the ceiling
    (every candidate evaluated, at seed 0) and, per contestant, concurrency and
    budget, the median hypervolume of its runs; per pair, on how many replay seeds
    the richer space's run is above the narrower's. A run that evaluated every
    candidate of its space (``sa`` has 9) counts at every larger budget.
    """
    bench = PeftBench(args.table)
    problems: dict[str, TableProblem] = {}
    for variant in dict.fromkeys(v for pair in FINDINGS for v in pair):
        space = SearchSpace.from_model_config(DEFAULT_MODEL, variant)
        if any(_member(space, c) for c in bench.configurations(1)):
            problems[variant] = TableProblem(bench, space)
    every = [r for p in problems.values() for r in p.rows]
    nadir = (min(r.dev_score for r in every), max(r.param_fraction for r in every))
    print(
        f"one reference for every space, the nadir of their candidates: {nadir[0]:.4f} "
        f"score, {100 * nadir[1]:.3f}% params\n"
    )
    ceiling = []
    for variant, problem in problems.items():
        seed0 = [(r.dev_score, r.param_fraction) for r in problem.rows if r.seed == 0]
        ceiling.append(
            {
                "space": variant,
                "candidates": len(problem.configs),
                "every candidate: HV (seed 0)": hypervolume(seed0, nadir),
                "HV (seed 0, log10 fraction)": log_hypervolume(seed0, nadir),
                "best dev (seed 0)": max(s for s, _ in seed0),
            }
        )
    print(_markdown(ceiling))
    hv: dict[tuple[str, str, int, int, int], tuple[float, float]] = {}
    for run in longest_runs(read_runs(Path(args.output))):
        problem = problems.get(run["space"])
        if problem is None or run.get("table") != problem.digest:
            continue
        factor = 2 if run["contestant"] == "random-2x" else 1
        exhausted = run["budget"] >= len(problem.configs)
        for budget in args.budgets:
            if run["budget"] < factor * budget and not exhausted:
                continue
            evals = arrived(run, factor * budget)
            points = [(e["score"], e["fraction"]) for e in evals]
            key = (_label(run, args.initial), run["space"], run["concurrency"], budget, run["seed"])
            hv[key] = (hypervolume(points, nadir), hypervolume(seed0_points(evals, bench), nadir))
    settings = sorted({(k[2], k[3]) for k in hv})
    for concurrency, budget in settings:
        table = []
        for label in sorted({k[0] for k in hv if k[2:4] == (concurrency, budget)}):
            mine = {k[1:]: v for k, v in hv.items() if k[0] == label}
            row: dict[str, Any] = {"contestant": label}
            for variant in problems:
                values = [v[0] for k, v in mine.items() if k[:3] == (variant, concurrency, budget)]
                row[f"{variant}: HV median (seeds)"] = (
                    f"{statistics.median(values):.5f} ({len(values)})" if values else "-"
                )
            for richer, narrower in FINDINGS:
                seeds = [
                    k[3]
                    for k in mine
                    if k[:3] == (richer, concurrency, budget)
                    and (narrower, concurrency, budget, k[3]) in mine
                ]
                a = [mine[(richer, concurrency, budget, s)] for s in seeds]
                b = [mine[(narrower, concurrency, budget, s)] for s in seeds]
                row[f"{richer} above {narrower}: seeds (at seed 0)"] = (
                    f"{sum(x[0] > y[0] for x, y in zip(a, b, strict=True))}/{len(seeds)} "
                    f"({sum(x[1] > y[1] for x, y in zip(a, b, strict=True))})"
                    if seeds
                    else "-"
                )
            table.append(row)
        print(f"\n### concurrency {concurrency}, {budget} evaluations\n")
        print(_markdown(table))


def _label(run: dict[str, Any], initial: int) -> str:
    """The contestant, and its initial design when it uses one other than ``--initial``."""
    name = run["contestant"]
    if name.startswith("random") or run["initial"] == initial:
        return name
    return f"{name}, {run['initial']} initial"


def log_hypervolume(points: list[tuple[float, float]], nadir: tuple[float, float]) -> float:
    """The hypervolume with the fraction on a log10 scale, from the nadir.

    On the linear scale, a table whose fractions span four decades gives the
    cheap end almost no area: the linear hypervolume is nearly a best-score
    measure. On the log scale each decade of fraction counts alike.
    """
    import torch
    from botorch.utils.multi_objective.box_decompositions.dominated import (
        DominatedPartitioning,
    )

    y = torch.tensor([[s, -math.log10(f)] for s, f in points if f > 0], dtype=torch.float64)
    ref = torch.tensor([nadir[0], -math.log10(nadir[1])], dtype=torch.float64)
    if len(y) == 0:
        return 0.0
    return float(DominatedPartitioning(ref_point=ref, Y=y).compute_hypervolume().item())


def _iqr(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.5g}-{q[2]:.5g}"


def _test_examples(table: str) -> int:
    import pyarrow.parquet as pq

    column = pq.read_table(Path(table) / "records.parquet", columns=["test_examples"]).column(0)
    return int(column[0].as_py())


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{v:.5g}" if isinstance(v, float) else str(v) for v in (row[h] for h in head)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    logging.getLogger("autopeft_ray").setLevel(logging.WARNING)
    args = parse_args(argv)
    started = time.perf_counter()
    if args.part in ("run", "both"):
        run_all(args)
    if args.part in ("summary", "both"):
        summary(args)
    if args.part == "findings":
        findings(args)
    print(
        f"\n{time.perf_counter() - started:.0f} s. Reproduce: "
        f"python benchmarks/replay.py {shlex.join(argv)}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
