"""How long free trial slots wait for the searcher, in a real Ray Tune run.

A real ``Tuner`` with ``--concurrency`` N trials in flight. Each trial sleeps
``--trial-seconds`` and reports the synthetic objective
(:class:`autopeft_ray.testing.synthetic.SyntheticPeftProblem` over the
BERT-base space), so the CPUs stay free for the searcher. In one run, for
each concurrency and surrogate, three searchers take turns:

* ``random``: no model; its idle time is Ray Tune's own overhead (the control);
* ``foreground``: today's ``AutoPEFTSearcher``, fitting inside ``suggest``;
* ``background``: ``AutoPEFTSearcher(background=True)``;
* ``filled``: ``AutoPEFTSearcher(background=True, fill_with_random=True)``:
  a free slot that finds no candidate ready gets a random configuration.

Reported per run:

* idle: the share of slot time not spent in a trial, ``1 - sum(trial time) /
  (N x wall time)``, wall time from the first trial's start to the last one's
  end (what the searcher adds is this minus the control's);
* suggestion latency as Tune sees it: each ``suggest`` call's duration, p50,
  p99 and max, and how many returned ``None`` with a slot free (Tune asks
  again later);
* the longest single block of Tune's event loop inside any searcher call
  (``suggest``, ``on_trial_result``, ``on_trial_complete``, ``save``);
* how many trials got a model-based configuration, and how many a random
  fill (``filled``).

    python benchmarks/driver_idle.py --quick          # smoke: about 3 minutes
    python benchmarks/driver_idle.py --concurrency 8 --surrogates saas-nuts \\
        --trials 100 --initial 20 --trial-seconds 60 --queue-size 8 \\
        --searchers random filled background  # the issue's target setting
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from autopeft_ray.searchers import AutoPEFTSearcher, RandomPEFTSearcher  # noqa: E402
from autopeft_ray.space import SearchSpace  # noqa: E402
from autopeft_ray.testing.synthetic import SyntheticPeftProblem  # noqa: E402

SPACE = SearchSpace(12, 768)
CALLS = ("suggest", "on_trial_result", "on_trial_complete", "save")


def timed(cls: type) -> type:
    """``cls`` with every searcher call Tune makes timed into ``self.calls``."""

    def wrap(name: str) -> Any:
        method = getattr(cls, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            free = self.max_concurrent is None or len(self.pending) < self.max_concurrent
            start = time.perf_counter()
            out = method(self, *args, **kwargs)
            # A None that left a free slot waiting (not one at the concurrency limit).
            self.calls.append((name, time.perf_counter() - start, out is None and free))
            return out

        return call

    namespace: dict[str, Any] = {name: wrap(name) for name in CALLS}
    namespace["calls"] = []
    return type(f"Timed{cls.__name__}", (cls,), namespace)


# Module-level names that match the classes' names, so that Tune can pickle them.
TimedAutoPEFTSearcher = timed(AutoPEFTSearcher)
TimedRandomPEFTSearcher = timed(RandomPEFTSearcher)


def sleeping_trial(config: dict[str, Any], seconds: float, seed: int) -> None:
    from ray import tune

    started = time.time()
    problem = SyntheticPeftProblem(SPACE, seed=seed)
    time.sleep(seconds)
    result = problem.evaluate_trial_config(config)
    tune.report({**result, "started": started, "ended": time.time()})


def run_one(args: argparse.Namespace, kind: str, concurrency: int, surrogate: str) -> dict:
    from ray import tune

    cost = SyntheticPeftProblem(SPACE, seed=args.seed).cost
    searcher: Any
    if kind == "random":
        searcher = TimedRandomPEFTSearcher(SPACE, cost_fn=cost, seed=args.seed)
    else:
        searcher = TimedAutoPEFTSearcher(
            SPACE,
            cost,
            num_initial=args.initial,
            surrogate=surrogate,
            seed=args.seed,
            background=kind in ("background", "filled"),
            fill_with_random=kind == "filled",
            queue_size=args.queue_size,
            jax_cache_dir=None,
        )
    searcher.calls = []
    trainable = tune.with_parameters(sleeping_trial, seconds=args.trial_seconds, seed=args.seed)
    start = time.time()
    results = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0.01}),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=args.trials,
            max_concurrent_trials=concurrency,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=args.storage, verbose=0),
    ).fit()
    wall = time.time() - start
    spans = [(r.metrics["started"], r.metrics["ended"]) for r in results if r.metrics]
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    busy = sum(e - s for s, e in spans)
    suggest = sorted(d for name, d, _ in searcher.calls if name == "suggest")
    nones = sum(1 for name, _, none in searcher.calls if name == "suggest" and none)
    blocks = {
        name: max((d for n, d, _ in searcher.calls if n == name), default=0.0) for name in CALLS
    }
    return {
        "searcher": kind,
        "concurrency": concurrency,
        "surrogate": "-" if kind == "random" else surrogate,
        "trials": len(spans),
        "errors": results.num_errors,
        "idle": 1 - busy / (concurrency * (last - first)),
        "suggest_p50_ms": 1000 * statistics.median(suggest),
        "suggest_p99_ms": 1000 * suggest[min(len(suggest) - 1, int(0.99 * len(suggest)))],
        "suggest_max_s": suggest[-1],
        "suggest_none": nones,
        "longest_block_s": max(blocks.values()),
        "longest_block_in": max(blocks, key=lambda name: blocks[name]),
        "model_based": sum(1 for t in getattr(searcher, "timings", []) if "total_s" in t),
        "random_fills": sum(
            1 for t in getattr(searcher, "timings", []) if t.get("fallback") == "none ready"
        ),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--surrogates", nargs="+", default=["saas-map", "saas-nuts"])
    parser.add_argument("--searchers", nargs="+", default=["random", "foreground", "background"])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--trial-seconds", type=float, default=20.0)
    parser.add_argument("--queue-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default="/tmp/autopeft_driver_idle")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.surrogates = [4], ["saas-map"]
        args.trials, args.initial, args.trial_seconds = 12, 6, 3.0
    import ray

    ray.init(num_cpus=max(args.concurrency) + 1, include_dashboard=False, log_to_driver=False)
    rows = []
    for concurrency in args.concurrency:
        for surrogate in args.surrogates:
            for kind in args.searchers:
                done = {(r["searcher"], r["concurrency"]) for r in rows}
                if kind == "random" and ("random", concurrency) in done:
                    continue  # the control does not depend on the surrogate
                row = run_one(args, kind, concurrency, surrogate)
                rows.append(row)
                print(row, flush=True)
    ray.shutdown()
    print(
        f"\n# driver idle ({args.trials} trials, {args.initial} random first, "
        f"{args.trial_seconds:g} s each, BERT-base space, queue {args.queue_size}, 2 cores)"
    )
    print(
        "| N | surrogate | searcher | idle | suggest p50 / p99 ms | suggest max s | "
        "None, slot free | longest block s (in) | model-based / random fills | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['surrogate']} | {r['searcher']} | {r['idle']:.1%} | "
            f"{r['suggest_p50_ms']:.1f} / {r['suggest_p99_ms']:.1f} | {r['suggest_max_s']:.2f} | "
            f"{r['suggest_none']} | {r['longest_block_s']:.2f} ({r['longest_block_in']}) | "
            f"{r['model_based']} / {r['random_fills']} | {r['wall_s']:.0f} |"
        )
    print(f"\nreproduce: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
