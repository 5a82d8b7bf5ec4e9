"""Trials per hour with 1 and 2 concurrent trials, and how long workers wait for suggestions.

Three real searches (``run_search``, Ray Tune, real training on Rotten Tomatoes
with MiniLM-L6), run one after the other in one process, each with
``--trials`` trials of ``--examples`` training examples (batch 16, sequence 64,
64 dev examples):

1. random search, 1 trial at a time with 2 CPUs;
2. random search, 2 trials at a time with 1 CPU each;
3. the AutoPEFT searcher (``--initial`` random, then model-based with the
   demo's cheap NUTS), 1 trial at a time with 2 CPUs.

Printed: trials per hour of each and the ratio 2-concurrent / 1-concurrent, and
for (3) the fraction of the search's wall time spent computing suggestions.
Tune calls ``suggest`` on its driver between trials, so at concurrency 1 the
only worker is idle for exactly that time: an upper bound on worker idle time
at higher concurrency, where the other trials keep running.

    python benchmarks/concurrency.py                  # ~10 min on 2 cores
    python benchmarks/concurrency.py --trials 2 --examples 32 --initial 1   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# A script in this folder; importing it first also sets the offline environment
# (hub offline, no usage stats) before autopeft_ray and its libraries are imported.
from offline_search import suggestion_seconds

from autopeft_ray.cli import demo_options
from autopeft_ray.experiment.search import run_search
from autopeft_ray.run import RunFolder


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--examples", type=int, default=256, help="training examples per trial")
    parser.add_argument("--initial", type=int, default=3, help="AutoPEFT's random configurations")
    return parser.parse_args(argv)


def search(name: str, args: argparse.Namespace, root: Path, **changes: Any) -> dict[str, Any]:
    base = demo_options(str(root / name))
    settings = base.settings.replace(train_examples=args.examples, max_eval_examples=64)
    fields: dict[str, Any] = {"num_initial": args.trials, "num_model_based": 0, **changes}
    options = dataclasses.replace(base, settings=settings, **fields)
    start = time.perf_counter()
    output = run_search(options)
    wall = time.perf_counter() - start
    ended = len(RunFolder(output).read_records())
    return {
        "wall_s": wall,
        "trials": ended,
        "per_hour": 3600 * ended / wall,
        "sugg_s": suggestion_seconds(output),
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="autopeft-concurrency-"))
    start = time.perf_counter()
    one = search("random-c1", args, root, searcher="random", concurrency=1, cpus_per_trial=2)
    two = search("random-c2", args, root, searcher="random", concurrency=2, cpus_per_trial=1)
    model = search(
        "autopeft-c1",
        args,
        root,
        searcher="autopeft",
        num_initial=args.initial,
        num_model_based=args.trials - args.initial,
        concurrency=1,
        cpus_per_trial=2,
    )
    print("\n| search | trials | wall (s) | trials / hour |")
    print("|---|---|---|---|")
    for label, run in (
        ("random, 1 x 2 CPUs", one),
        ("random, 2 x 1 CPU", two),
        ("autopeft, 1 x 2 CPUs", model),
    ):
        print(f"| {label} | {run['trials']} | {run['wall_s']:.0f} | {run['per_hour']:.1f} |")
    print(
        f"\nratio trials/hour, 2 concurrent / 1 concurrent: {two['per_hour'] / one['per_hour']:.2f}"
    )
    print(
        f"autopeft: suggestions took {model['sugg_s']:.1f} s of {model['wall_s']:.0f} s "
        f"({model['sugg_s'] / model['wall_s']:.1%}): the worker waits that long at concurrency 1"
    )
    print(f"\ntotal {time.perf_counter() - start:.0f} s on {os.cpu_count()} CPUs; runs in {root}")
    print("reproduce: .venv/bin/python benchmarks/concurrency.py " + shlex.join(argv))


if __name__ == "__main__":
    main()
