"""Does the search pay? Model-based vs random on the offline task, then the found configurations on test.

Three parts, each a real ``run_search`` or ``evaluate`` (Ray Tune, real
training) on Rotten Tomatoes with MiniLM-L6, with the recipe the demo gives
users (``autopeft-ray demo``: 1,024 training examples in 64 steps of 16, the
``short`` learning-rate policy, sequence 64, 320 dev examples, two trials at a
time with one CPU each):

``search``
    For each seed, AutoPEFT (``--initial`` random + ``--model-based``
    configurations, the paper's NUTS 32/16/2) and random search with
    ``--random-factor`` times that budget. Random's hypervolume at 1x is the
    first ``budget`` evaluations of the same run (a random search's first k
    trials are a random search of k). Printed: hypervolume at the end and
    after each evaluation (median over seeds; reference point: the searcher's
    default for the full space: score 0 and the fraction of its largest
    configuration; the same for every space), wall time, and the share of the
    AutoPEFT searches' wall time spent in model-based suggestions.
``test``
    The best configuration under ``--max-fraction`` (by dev score) of each
    AutoPEFT search, and the ``--presets`` (``lora``, ``serial``), trained
    again with ``--test-seeds`` seeds at ``--test-fidelity`` times the search's
    training budget and scored on the test split (``evaluate``).
``ablation``
    The paper's ablation at equal budget: AutoPEFT on the ``--spaces``
    (``sa``: serial adapter size only; ``sa-layer``: plus the layers) against
    the full space of ``search``, same seeds, same reference point. A space
    the budget enumerates (``sa``: 10 models) is searched with one seed: every
    seed would train the same models with the same training seed.

Every search and evaluation is kept in ``--output`` (``searches.jsonl``,
``test.json``); a part that is run again skips what is already there, so a
long benchmark can be run part by part and resumed after a crash.
``--part summary`` prints every table from what is kept.

    python benchmarks/offline_search.py --output benchmarks/results/offline_search --part search
    python benchmarks/offline_search.py --output benchmarks/results/offline_search --part test
    python benchmarks/offline_search.py --output benchmarks/results/offline_search --part ablation
    python benchmarks/offline_search.py --output /tmp/smoke --seeds 1 --initial 2 \\
        --model-based 1 --random-factor 1 --test-seeds 1 --test-fidelity 1 --spaces sa  # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autopeft_ray.cli import demo_options  # noqa: E402
from autopeft_ray.objectives.pareto import hypervolume_trace  # noqa: E402
from autopeft_ray.run import RunFolder, objective_point, reference_point_of  # noqa: E402

PARTS = ("search", "test", "ablation", "summary")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="keeps every run and result (resumable)")
    parser.add_argument("--part", choices=PARTS, nargs="+", default=list(PARTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--initial", type=int, default=4, help="random initial configurations")
    parser.add_argument("--model-based", type=int, default=8, help="model-based configurations")
    parser.add_argument("--random-factor", type=int, default=2, help="random's budget / AutoPEFT's")
    parser.add_argument("--max-fraction", type=float, default=0.01, help="test: fraction cap")
    parser.add_argument("--presets", nargs="*", default=["lora", "serial"])
    parser.add_argument("--test-seeds", type=int, default=3)
    parser.add_argument("--test-fidelity", type=int, default=4, help="x the search's examples")
    parser.add_argument("--spaces", nargs="*", default=["sa", "sa-layer"])
    return parser.parse_args(argv)


# -- searches -------------------------------------------------------------------
def search_key(method: str, space: str, seed: int) -> str:
    return f"{method}-{space}-{seed}"


def load_searches(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "searches.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows}


def run_one_search(
    method: str, space: str, seed: int, evaluations: int, args: argparse.Namespace, root: Path
) -> dict[str, Any]:
    from autopeft_ray.experiment import run_search

    key = search_key(method, space, seed)
    initial = min(args.initial, evaluations)
    options = dataclasses.replace(
        demo_options(str(root / "runs" / key), method),
        variant=space,
        num_initial=initial,
        num_model_based=evaluations - initial,
        seed=seed,
        baselines=(),
    )
    start = time.perf_counter()
    output = run_search(options)
    wall = time.perf_counter() - start
    run = RunFolder(output)
    records = run.completed()
    row = {
        "key": key,
        "method": method,
        "space": space,
        "seed": seed,
        "evaluations": evaluations,
        "reference_point": list(reference_point_of(run)),
        "points": [objective_point(r) for r in records],
        "configurations": [r["configuration"] for r in records],
        "wall_s": wall,
        "suggestion_s": suggestion_seconds(run),
    }
    with (root / "searches.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def suggestion_seconds(run: RunFolder) -> float:
    """Seconds the run's searcher spent on model-based suggestions (its saved timings)."""
    seconds = 0.0
    for state in run.tune_dir.glob("searcher-state-*"):
        timings = json.loads(state.read_text()).get("timings", [])
        seconds = sum(t.get("total_s", 0.0) for t in timings)
    return seconds


def exhaustive(space: str, budget: int) -> bool:
    """Whether ``budget`` evaluations see every model of ``space`` (``sa``: 10 of them).

    Then every seed's search trains the same models with the same training
    seed, so one seed gives the final figure of all.
    """
    from autopeft_ray.models import load_config
    from autopeft_ray.space import SearchSpace

    settings = demo_options(None).settings
    return SearchSpace.from_model_config(load_config(settings.model), space).num_distinct <= budget


def run_searches(plan: list[tuple[str, str, int, int]], args: argparse.Namespace, root: Path):
    done = load_searches(root)
    for method, space, seed, evaluations in plan:
        if search_key(method, space, seed) in done:
            continue
        row = run_one_search(method, space, seed, evaluations, args, root)
        scores = sorted(round(s, 3) for s, _ in row["points"])
        print(
            f"{row['key']}: HV {hypervolume_trace(row['points'], row['reference_point'])[-1]:.5f} "
            f"(its own reference), wall {row['wall_s']:.0f} s, scores {scores}",
            flush=True,
        )


# -- test -----------------------------------------------------------------------
def best_under(row: dict[str, Any], max_fraction: float) -> dict[str, Any] | None:
    """The configuration with the best dev score at most ``max_fraction`` (ties: smaller)."""
    candidates = [
        (score, -fraction, i)
        for i, (score, fraction) in enumerate(row["points"])
        if fraction <= max_fraction
    ]
    if not candidates:
        return None
    score, negative, i = max(candidates)
    return {"configuration": row["configurations"][i], "dev_score": score, "fraction": -negative}


def found_configurations(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """The best configuration under ``--max-fraction`` of each AutoPEFT search (no repeats)."""
    searches = load_searches(root)
    found: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        row = searches.get(search_key("autopeft", "full", seed))
        best = row and best_under(row, args.max_fraction)
        if best and best["configuration"] not in [f["configuration"] for f in found]:
            found.append({**best, "search_seed": seed})
    return found


def label_summaries(
    summaries: list[dict[str, Any]], found: list[dict[str, Any]], presets: list[str]
) -> None:
    """Name each ``evaluate`` summary and attach the search it came from (presets: none)."""
    from autopeft_ray.config import trial_config_dict
    from autopeft_ray.space import PeftConfiguration

    entries = [
        (PeftConfiguration.from_dict(f["configuration"]), f"found (seed {f['search_seed']})", f)
        for f in found
    ] + [(preset, preset, {}) for preset in presets]
    labels = {
        json.dumps(trial_config_dict(c), sort_keys=True): (name, origin)
        for c, name, origin in entries
    }
    for summary in summaries:
        summary["name"], summary["search"] = labels[
            json.dumps(summary["configuration"], sort_keys=True)
        ]


def run_test(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import ray

    from autopeft_ray.experiment import evaluate_configurations
    from autopeft_ray.space import PeftConfiguration

    if (root / "test.json").exists():
        return json.loads((root / "test.json").read_text())
    found = found_configurations(args, root)
    demo = demo_options(None).settings
    settings = demo.replace(
        train_examples=demo.train_examples * args.test_fidelity, max_eval_examples=None
    )
    contestants = [PeftConfiguration.from_dict(f["configuration"]) for f in found]
    start = time.perf_counter()
    summaries = evaluate_configurations(
        [*contestants, *args.presets],
        settings,
        output=str(root / "test"),
        seeds=range(args.test_seeds),
        concurrency=2,
        cpus_per_trial=1,
    )
    ray.shutdown()
    wall = time.perf_counter() - start
    label_summaries(summaries, found, args.presets)
    result = {"summaries": summaries, "wall_s": wall, "settings": settings.to_dict()}
    (root / "test.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# -- summary --------------------------------------------------------------------
def add_traces(searches: dict[str, dict[str, Any]]) -> None:
    """Hypervolume after each evaluation, against the full space's reference point.

    The searcher's default reference point is the fraction of its space's
    largest configuration: smaller for ``sa`` than for ``full``. One reference
    for every run keeps the ablation's hypervolumes comparable.
    """
    full = [r["reference_point"] for r in searches.values() if r["space"] == "full"]
    for row in searches.values():
        reference = full[0] if full else row["reference_point"]
        row["trace"] = hypervolume_trace(row["points"], reference)


def median_trace(rows: list[dict[str, Any]], length: int) -> list[float]:
    return [
        statistics.median(r["trace"][min(i, len(r["trace"]) - 1)] for r in rows)
        for i in range(length)
    ]


def print_summary(args: argparse.Namespace, root: Path) -> None:
    searches = load_searches(root)
    add_traces(searches)
    budget = args.initial + args.model_based
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in searches.values():
        groups.setdefault((row["method"], row["space"]), []).append(row)
    print("\n| method | space | evaluations | seeds | median HV | HV per seed | median wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for (method, space), rows in sorted(groups.items()):
        rows.sort(key=lambda r: r["seed"])
        cuts = [budget] + ([args.random_factor * budget] if method == "random" else [])
        for cut in sorted(set(cuts)):
            finals = [r["trace"][min(cut, len(r["trace"])) - 1] for r in rows]
            wall = statistics.median(r["wall_s"] for r in rows)
            print(
                f"| {method} | {space} | {cut} | {len(rows)} | {statistics.median(finals):.4f} | "
                f"{', '.join(f'{v:.4f}' for v in finals)} | {wall:.0f}"
                f"{' (whole run)' if method == 'random' else ''} |"
            )
    print("\nmedian hypervolume after each evaluation:")
    for (method, space), rows in sorted(groups.items()):
        length = max(len(r["trace"]) for r in rows)
        print(
            f"  {method:8s} {space:8s} " + " ".join(f"{v:.4f}" for v in median_trace(rows, length))
        )
    print("\nbest dev score per search (fraction %), at the AutoPEFT budget:")
    for _group, rows in sorted(groups.items()):
        for r in rows:
            points = r["points"][:budget]
            score, fraction = max(points, key=lambda p: (p[0], -p[1]))
            print(f"  {r['key']:24s} {score:.4f} ({100 * fraction:.3f}%)")
    auto = groups.get(("autopeft", "full"), [])
    if auto:
        share = statistics.median(r["suggestion_s"] / r["wall_s"] for r in auto)
        print(f"\nautopeft: model-based suggestions took {share:.1%} of the search wall (median)")
    if (root / "test.json").exists():
        test = json.loads((root / "test.json").read_text())
        print(f"\ntest split ({test['wall_s']:.0f} s):")
        print("| contestant | fraction % | dev score at search | test (mean ± s.d.) | seeds |")
        print("|---|---|---|---|---|")
        for s in test["summaries"]:
            metrics = s["metrics"]
            test_keys = [k for k in metrics if k.startswith("test_")]
            shown = ", ".join(
                f"{k[5:]} {metrics[k]['mean']:.4f} ± {metrics[k]['std']:.4f}" for k in test_keys
            )
            dev = s["search"].get("dev_score")
            print(
                f"| {s['name']}: {s['configuration']} | "
                f"{100 * metrics['param_fraction']['mean']:.3f} | "
                f"{'' if dev is None else f'{dev:.4f}'} | {shown} | {s['seeds']} |"
            )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    root = Path(args.output)
    root.mkdir(parents=True, exist_ok=True)
    budget = args.initial + args.model_based
    start = time.perf_counter()
    if "search" in args.part:
        plan = []
        for seed in range(args.seeds):
            plan.append(("autopeft", "full", seed, budget))
            plan.append(("random", "full", seed, args.random_factor * budget))
        run_searches(plan, args, root)
    if "test" in args.part:
        run_test(args, root)
    if "ablation" in args.part:
        plan = [
            ("autopeft", space, seed, budget)
            for space in args.spaces
            for seed in range(1 if exhaustive(space, budget) else args.seeds)
        ]
        run_searches(plan, args, root)
    print_summary(args, root)
    print(
        f"\nthis run: {time.perf_counter() - start:.0f} s on {os.cpu_count()} CPUs; kept in {root}"
    )
    print("reproduce: .venv/bin/python benchmarks/offline_search.py " + shlex.join(argv))


if __name__ == "__main__":
    main()
