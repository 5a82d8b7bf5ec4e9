"""Is a low-fidelity score a measurement? Scores at 1x, 2x and 4x the demo's fidelity.

Contestants (``--contestants study``): ``--random`` configurations drawn at
random from the full space of MiniLM-L6 (seeded) plus the 7 presets. Each is
trained with one seed at each fidelity with the recipe users get (the
trainable's own ``TrainingRun``, no Ray, the demo's settings): fidelity k is
k x 1,024 Rotten Tomatoes training examples, one epoch of batch 16 (64 k
optimiser steps), sequence 64, scored on the whole dev split (1,274 examples). ``--contestants
calibration`` is the learning-rate calibration: configurations chosen to cover
each module alone and together, small and large (the ones that learned nothing
or collapsed in the probes before the calibration), and presets, trained with each of
``--recipes``. A recipe is one learning rate for every group (``3e-3``), or a
policy of :mod:`autopeft_ray.config.learning_rates` with group overrides
(``short``, ``short,pa=1e-4``); the default is the settings' default.

Every finished training is appended to ``--results`` (JSON lines), and work
already there is skipped, so the study runs in parts (``--part 1/4``) and
resumes after an interruption. ``--summary`` prints, from the results: the
score of each contestant at each fidelity, the share of configurations above
the majority class at each fidelity, the Spearman rank correlation between
each lower fidelity and the highest, the standard error of one score, and the
time taken.

    python benchmarks/fidelity.py --part 1/4            # then 2/4, 3/4, 4/4 (~25 min each)
    python benchmarks/fidelity.py --summary
    python benchmarks/fidelity.py --contestants calibration --fidelities 1 \\
        --recipes 1e-3 3e-3 1e-2 --results benchmarks/results/calibration.jsonl
    python benchmarks/fidelity.py --contestants calibration --only "PA 64" "PA 256" \\
        --recipes short,pa=1e-4 short --results benchmarks/results/calibration.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autopeft_ray.builder.presets import PRESET_NAMES  # noqa: E402
from autopeft_ray.cli import demo_options  # noqa: E402
from autopeft_ray.space import PeftConfiguration, SearchSpace  # noqa: E402
from autopeft_ray.tasks import DEFAULT_TASK  # noqa: E402

#: Examples per unit of fidelity: the demo trains on 1,024 examples, one epoch of batch 16.
UNIT_EXAMPLES = 1024
ALL, NONE = (True,) * 6, (False,) * 6
CALIBRATION: dict[str, PeftConfiguration | str] = {
    "head-only": PeftConfiguration(0, 0, 0, NONE),
    "SA 64": PeftConfiguration(64, 0, 0, ALL),
    "SA 256": PeftConfiguration(256, 0, 0, ALL),
    "PA 8": PeftConfiguration(0, 8, 0, ALL),
    "PA 64": PeftConfiguration(0, 64, 0, ALL),
    "PT 16": PeftConfiguration(0, 0, 16, ALL),
    "SA 8 + PA 8": PeftConfiguration(8, 8, 0, ALL),
    "SA 1 + PA 2 + PT 4": PeftConfiguration(1, 2, 4, ALL),
    "PA 256": PeftConfiguration(0, 256, 0, ALL),
    # LoRA as a dimension of the space (``full-lora``): alone at ranks 1, 8 (the ``lora``
    # preset's point) and 64, and beside the modules that train at other rates.
    "LoRA 1": PeftConfiguration(0, 0, 0, ALL, lora_rank=1),
    "LoRA 8": PeftConfiguration(0, 0, 0, ALL, lora_rank=8),
    "LoRA 64": PeftConfiguration(0, 0, 0, ALL, lora_rank=64),
    "SA 8 + LoRA 8": PeftConfiguration(8, 0, 0, ALL, lora_rank=8),
    "SA 64 + LoRA 16": PeftConfiguration(64, 0, 0, ALL, lora_rank=16),
    "PA 8 + PT 4 + LoRA 4": PeftConfiguration(0, 8, 4, ALL, lora_rank=4),
    "lora": "lora",
    "prefix": "prefix",
    "full": "full",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contestants", choices=("study", "calibration"), default="study")
    parser.add_argument("--random", type=int, default=12, help="random configurations (study)")
    parser.add_argument("--fidelities", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["default"],
        help="learning-rate recipes: RATE, or POLICY[,GROUP=RATE...] (default: the settings')",
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="only these contestants (names as printed)"
    )
    parser.add_argument("--part", default="1/1", help="K/N: run the K-th of N equal parts")
    parser.add_argument("--max-eval-examples", type=int, default=None, help="default: all dev")
    parser.add_argument("--seed", type=int, default=0, help="draws the random contestants")
    parser.add_argument("--results", default="benchmarks/results/fidelity.jsonl")
    parser.add_argument("--summary", action="store_true", help="print figures, train nothing")
    return parser.parse_args(argv)


def contestants(args: argparse.Namespace) -> dict[str, PeftConfiguration | str]:
    if args.contestants == "calibration":
        return {n: c for n, c in CALIBRATION.items() if args.only is None or n in args.only}
    space = SearchSpace(6, 384)
    rng = random.Random(args.seed)
    drawn: dict[str, PeftConfiguration | str] = {}
    while len(drawn) < args.random:
        config = space.representative(space.sample(rng))
        drawn.setdefault(config.describe(), config)
    chosen: dict[str, PeftConfiguration | str] = {**drawn, **{n: n for n in PRESET_NAMES}}
    return {n: c for n, c in chosen.items() if args.only is None or n in args.only}


def recipe_settings(recipe: str) -> dict[str, Any]:
    """``TrainingSettings`` fields of a learning-rate recipe (see the module docstring)."""
    if recipe == "default":
        return {}
    try:
        return {"learning_rate": float(recipe)}
    except ValueError:
        policy, *pairs = recipe.split(",")
        overrides = {g: float(r) for g, r in (p.split("=") for p in pairs)}
        return {"learning_rate_policy": policy, "module_learning_rates": overrides}


def settings_for(fidelity: int, recipe: str, args: argparse.Namespace) -> Any:
    """The demo's settings at ``fidelity`` x its training budget, with a learning-rate recipe."""
    demo = demo_options(None).settings
    assert demo.train_examples == UNIT_EXAMPLES and demo.epochs == 1.0
    return demo.replace(
        train_examples=UNIT_EXAMPLES * fidelity,
        max_eval_examples=args.max_eval_examples,
        **recipe_settings(recipe),
    )


def key(name: str, fidelity: int, recipe: str) -> str:
    return f"{name}|{fidelity}|{recipe}"


def train_one(configuration: Any, settings: Any, data: Any) -> dict[str, Any]:
    from autopeft_ray.trainables import TrainingRun

    started = time.perf_counter()
    run = TrainingRun(settings, configuration, data)
    run.train_until(run.total_steps)
    metrics = run.evaluate("validation")
    result = run.result(metrics)
    return {
        "score": result["score"],
        "train_loss": result["train_loss"],
        "param_fraction": result["param_fraction"],
        "learning_rates": result["learning_rates"],
        "steps": run.total_steps,
        "seconds": time.perf_counter() - started,
    }


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_part(args: argparse.Namespace) -> None:
    from autopeft_ray.tasks import prepare_data

    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {r["key"] for r in load_results(path)}
    work = [
        (name, config, fidelity, lr)
        for fidelity in args.fidelities
        for lr in args.recipes
        for name, config in contestants(args).items()
    ]
    index, parts = (int(x) for x in args.part.split("/"))
    mine = work[index - 1 :: parts]
    todo = [w for w in mine if key(w[0], w[2], w[3]) not in done]
    print(f"part {args.part}: {len(mine)} trainings, {len(todo)} to do", flush=True)
    data_cache: dict[int, Any] = {}
    for name, config, fidelity, lr in todo:
        settings = settings_for(fidelity, lr, args)
        if fidelity not in data_cache:
            data_cache[fidelity] = prepare_data(settings)
        out = train_one(config, settings, data_cache[fidelity])
        record = {
            "key": key(name, fidelity, lr),
            "name": name,
            "configuration": config if isinstance(config, str) else config.to_dict(),
            "fidelity": fidelity,
            "recipe": lr,
            **out,
        }
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        rates = " ".join(f"{g} {r:.0e}" for g, r in out["learning_rates"].items())
        print(
            f"{name:>28} x{fidelity} {rates}: score {out['score']:.4f} "
            f"loss {out['train_loss']:.3f} ({out['seconds']:.0f} s)",
            flush=True,
        )


def majority(args: argparse.Namespace) -> tuple[float, int]:
    """Share of the most frequent label in the dev examples scored, and their number."""
    from autopeft_ray.tasks import get_task, load_task

    raw = load_task(get_task(DEFAULT_TASK), seed=0)["validation"]
    labels = raw["label"][: args.max_eval_examples]
    top = max(labels.count(v) for v in set(labels))
    return top / len(labels), len(labels)


def summary(args: argparse.Namespace) -> None:
    from scipy.stats import spearmanr

    records = load_results(Path(args.results))
    base, n_dev = majority(args)
    se = math.sqrt(0.8 * 0.2 / n_dev)
    print(f"dev examples: {n_dev}; majority class {base:.4f}; s.e. of one score near 0.8: {se:.4f}")
    for lr in dict.fromkeys(r["recipe"] for r in records):
        rows = [r for r in records if r["recipe"] == lr]
        fids = sorted({r["fidelity"] for r in rows})
        names = list(dict.fromkeys(r["name"] for r in rows))
        score = {(r["name"], r["fidelity"]): r for r in rows}
        print(f"\nlearning-rate recipe: {lr}")
        print("| contestant | fraction % | " + " | ".join(f"x{f}" for f in fids) + " |")
        print("|---|---|" + "---|" * len(fids))
        for name in names:
            cells = []
            for f in fids:
                r = score.get((name, f))
                cells.append("-" if r is None else f"{r['score']:.4f} ({r['train_loss']:.2f})")
            fraction = next(r["param_fraction"] for r in rows if r["name"] == name)
            print(f"| {name} | {100 * fraction:.3f} | " + " | ".join(cells) + " |")
        for f in fids:
            at = [score[(n, f)]["score"] for n in names if (n, f) in score]
            above = sum(s > base + 1e-9 for s in at)
            print(f"x{f}: {above}/{len(at)} above the majority class")
        top = fids[-1]
        for f in fids[:-1]:
            both = [n for n in names if (n, f) in score and (n, top) in score]
            if len(both) > 2:
                rho = spearmanr(
                    [score[(n, f)]["score"] for n in both], [score[(n, top)]["score"] for n in both]
                ).statistic
                print(f"Spearman(x{f}, x{top}) over {len(both)} contestants: {rho:.3f}")
        seconds = sum(r["seconds"] for r in rows)
        print(f"training + evaluation time: {seconds / 60:.1f} min ({len(rows)} trainings)")
    print(
        f"\nmedian training time per 64 steps: {statistics.median(r['seconds'] / r['fidelity'] for r in records):.1f} s"
        if records
        else "no results yet"
    )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.summary:
        summary(args)
    else:
        run_part(args)
    print(
        f"\n{time.perf_counter() - started:.0f} s. Reproduce: python benchmarks/fidelity.py {shlex.join(argv)}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
