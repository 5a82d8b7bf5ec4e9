"""Model-based vs random search on the offline default task, at equal budget.

Each search is a real ``run_search`` (Ray Tune, real training) on Rotten
Tomatoes with MiniLM-L6 at the demo's low fidelity (``autopeft-ray demo``'s
settings: 1,024 training examples, batch 16, learning rate 1e-2, sequence 64,
320 dev examples), ``--initial`` random + ``--model-based`` configurations;
random search gets the same total. For each seed both searchers run one after
the other, so machine noise hits both alike.

Printed per method: hypervolume at the end and after each evaluation (median
over seeds; reference point score 0 and the fraction of the largest
configuration, as the searcher's default), wall time of the search, and the
total search cost as a fraction of one full fine-tuning run. "One full
fine-tuning run" is the full-fidelity default of ``autopeft-ray evaluate``
(all 10,204 training examples, one epoch, batch 32, sequence 128) of the whole
model (preset ``full``); its time is extrapolated from ``--full-steps`` timed
steps measured in the same process, after the searches. Also printed: the
fraction of the autopeft searches' wall time spent in model-based suggestions
(during which, at concurrency 1, the worker waits).

    python benchmarks/offline_search.py                    # 3 seeds, 4 + 4: ~40 min on 2 cores
    python benchmarks/offline_search.py --seeds 1 --initial 2 --model-based 1   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autopeft_ray.cli import demo_options  # noqa: E402
from autopeft_ray.experiment import run_search  # noqa: E402
from autopeft_ray.objectives.pareto import hypervolume_trace  # noqa: E402
from autopeft_ray.run import RunFolder, objective_point, reference_point_of  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--initial", type=int, default=4, help="random initial configurations")
    parser.add_argument("--model-based", type=int, default=4, help="model-based configurations")
    parser.add_argument("--full-steps", type=int, default=8, help="timed full fine-tuning steps")
    parser.add_argument("--output", default=None, help="keep the run folders here")
    return parser.parse_args(argv)


def search(method: str, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    import dataclasses

    options = dataclasses.replace(
        demo_options(str(folder / f"{method}-{seed}"), method),
        num_initial=args.initial,
        num_model_based=args.model_based,
        seed=seed,
    )
    start = time.perf_counter()
    output = run_search(options)
    wall = time.perf_counter() - start
    run = RunFolder(output)
    points = [objective_point(r) for r in run.completed()]
    reference = reference_point_of(run)
    return {
        "trace": hypervolume_trace(points, reference),
        "wall_s": wall,
        "suggestion_s": suggestion_seconds(output),
        "scores": sorted(round(s, 3) for s, _ in points),
        "trials": len(points),
    }


def suggestion_seconds(output: Path) -> float:
    """Seconds the run's searcher spent on model-based suggestions (its saved timings)."""
    seconds = 0.0
    for state in (output / "tune").glob("searcher-state-*"):
        timings = json.loads(state.read_text()).get("timings", [])
        seconds = sum(t.get("total_s", 0.0) for t in timings)
    return seconds


def full_fine_tuning_seconds(steps: int) -> tuple[float, int]:
    """Seconds of one full fine-tuning run, extrapolated from ``steps`` timed steps."""
    from autopeft_ray.config import TrainingSettings, trial_config
    from autopeft_ray.tasks import prepare_data
    from autopeft_ray.trainables.peft_trainable import run_training

    full = TrainingSettings()  # evaluate's full-fidelity default
    total = full.total_steps(len(prepare_data(full).train))
    timed = full.replace(max_steps=steps + 1, num_evaluations=1, max_eval_examples=1)
    results: list[dict[str, Any]] = []
    run_training(trial_config("full", timed), lambda result, folder: results.append(result))
    per_sample = 1.0 / results[-1]["train_samples_per_second"]
    return per_sample * full.batch_size * total, total


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import ray

    root = Path(args.output or tempfile.mkdtemp(prefix="autopeft-offline-"))
    runs: dict[str, list[dict[str, Any]]] = {"autopeft": [], "random": []}
    start = time.perf_counter()
    for seed in range(args.seeds):
        for method in runs:
            run = search(method, seed, args, root)
            runs[method].append(run)
            print(
                f"seed {seed} {method:8s} HV {run['trace'][-1]:.5f} "
                f"wall {run['wall_s']:6.0f} s scores {run['scores']}",
                flush=True,
            )
    ray.shutdown()
    full_s, full_steps = full_fine_tuning_seconds(args.full_steps)
    budget = args.initial + args.model_based
    print(f"\none full fine-tuning run (preset full, 1 epoch, {full_steps} steps): {full_s:.0f} s")
    print(
        "\n| method | evaluations | median final HV | HV per seed | median search wall (s) | "
        "search cost / full fine-tuning |"
    )
    print("|---|---|---|---|---|---|")
    for method, per_seed in runs.items():
        finals = [r["trace"][-1] for r in per_seed]
        wall = statistics.median(r["wall_s"] for r in per_seed)
        print(
            f"| {method} | {budget} | {statistics.median(finals):.5f} | "
            f"{', '.join(f'{v:.5f}' for v in finals)} | {wall:.0f} | {wall / full_s:.2f} |"
        )
    print("\nmedian hypervolume after each evaluation:")
    for method, per_seed in runs.items():
        length = min(len(r["trace"]) for r in per_seed)
        trace = [statistics.median(r["trace"][i] for r in per_seed) for i in range(length)]
        print(f"  {method:8s} " + " ".join(f"{v:.4f}" for v in trace))
    waiting = [r["suggestion_s"] / r["wall_s"] for r in runs["autopeft"]]
    print(
        f"\nautopeft: model-based suggestions took {statistics.median(waiting):.1%} of the "
        f"search wall time (median; the worker waits during them at concurrency 1)"
    )
    print(f"\ntotal {time.perf_counter() - start:.0f} s on {os.cpu_count()} CPUs; runs in {root}")
    print("reproduce: .venv/bin/python benchmarks/offline_search.py " + shlex.join(argv))


if __name__ == "__main__":
    main()
