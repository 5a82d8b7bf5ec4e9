"""``autopeft-ray``: search, evaluate, transfer, report and demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import AutoPeftError
from autopeft_ray.learning_rates import GROUPS, POLICY_NAMES
from autopeft_ray.models import DEFAULT_MODEL
from autopeft_ray.presets import BASELINE_NAMES
from autopeft_ray.search import SCHEDULERS, SEARCHERS, SURROGATES
from autopeft_ray.settings import DEFAULT_TASK, TrainingSettings
from autopeft_ray.space import VARIANTS

# What evaluate and transfer take from the search's saved settings when not given
# (transfer trains on other tasks: not the search's data files).
INHERITED = {
    "evaluate": ("model", "task", "data_files", "max_length"),
    "transfer": ("model", "task", "max_length"),
}


def _training_arguments(p: argparse.ArgumentParser, inherit: Sequence[str] = ()) -> None:
    g = p.add_argument_group("training (per trial)")
    of_search = " (default: the search's)" if inherit else ""
    g.add_argument(
        "--task",
        default=None if inherit else DEFAULT_TASK,
        help=f"task name{of_search or f' (default {DEFAULT_TASK})'}",
    )
    g.add_argument(
        "--model",
        default=None if inherit else DEFAULT_MODEL,
        help=f"hub name, local checkpoint or the offline default{of_search}",
    )
    g.add_argument(
        "--data-files",
        default=None,
        help="folder or JSON {split: path} of local files in the task's schema"
        + (of_search if "data_files" in inherit else ""),
    )
    g.add_argument(
        "--max-length", type=int, default=None if inherit else 128, help=of_search or None
    )
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="one rate for every trained parameter (default: per group, from the policy)",
    )
    g.add_argument(
        "--learning-rate-policy",
        choices=POLICY_NAMES,
        default="paper",
        help="per-group rates: paper (1e-4; 2e-5 full fine-tuning) or short (calibrated "
        "for a few hundred CPU steps)",
    )
    g.add_argument(
        "--module-learning-rate",
        action="append",
        default=[],
        metavar="GROUP=RATE",
        help=f"override one group's rate ({', '.join(GROUPS)}); repeatable",
    )
    g.add_argument(
        "--epochs",
        type=float,
        default=1.0,
        help="fidelity in epochs (default 1, the paper's search fidelity)",
    )
    g.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="fidelity in optimiser steps (wins over --epochs)",
    )
    g.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="train on this fraction of the training set",
    )
    g.add_argument(
        "--train-examples", type=int, default=None, help="train on this many training examples"
    )
    g.add_argument(
        "--num-evaluations", type=int, default=1, help="dev evaluations per trial (>= 2 for asha)"
    )
    g.add_argument("--max-eval-examples", type=int, default=None)
    g.add_argument("--seed", type=int, default=0)


def _resource_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("resources")
    g.add_argument("--concurrency", type=int, default=1, help="trials in flight")
    g.add_argument("--cpus-per-trial", type=float, default=2)
    g.add_argument("--gpus-per-trial", type=float, default=0, help="fractions allowed, e.g. 0.5")
    g.add_argument(
        "--address", default=None, help="Ray cluster address (default: start Ray locally)"
    )


def _settings(args: argparse.Namespace) -> TrainingSettings:
    data_files: Any = args.data_files
    if data_files and data_files.lstrip().startswith("{"):
        data_files = json.loads(data_files)
    given = dict(
        model=args.model, task=args.task, data_files=data_files, max_length=args.max_length
    )
    if args.command in INHERITED:  # the search's settings where not given
        searched = _searched_settings(args.run)
        given.update({k: searched[k] for k in INHERITED[args.command] if given[k] is None})
    return TrainingSettings(
        model=given["model"],
        task=given["task"],
        data_files=given["data_files"],
        max_length=given["max_length"],
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        learning_rate_policy=args.learning_rate_policy,
        module_learning_rates=_group_rates(args.module_learning_rate),
        epochs=args.epochs,
        max_steps=args.max_steps,
        train_fraction=args.train_fraction,
        train_examples=args.train_examples,
        num_evaluations=args.num_evaluations,
        max_eval_examples=args.max_eval_examples,
        seed=args.seed,
    )


def _group_rates(pairs: Sequence[str]) -> dict[str, float]:
    from autopeft_ray.exceptions import invalid_value

    rates: dict[str, float] = {}
    for pair in pairs:
        group, _, rate = pair.partition("=")
        try:
            rates[group.strip()] = float(rate)
        except ValueError:
            raise invalid_value(
                "--module-learning-rate", pair, expected="GROUP=RATE, e.g. pa=3e-4"
            ) from None
    return rates


def _searched_settings(run: str) -> dict[str, Any]:
    """Model, task, data files and sequence length of the search in ``run``, else defaults."""
    from autopeft_ray.search import OPTIONS_FILE

    saved = Path(run) / OPTIONS_FILE
    searched = json.loads(saved.read_text())["settings"] if saved.exists() else {}
    defaults = TrainingSettings()
    return {k: searched.get(k, getattr(defaults, k)) for k in INHERITED["evaluate"]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autopeft-ray",
        description="Pareto-optimal PEFT configurations with Ray Tune (AutoPEFT).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="search the PEFT configuration space")
    _training_arguments(s)
    _resource_arguments(s)
    g = s.add_argument_group("search")
    g.add_argument(
        "--space", choices=sorted(VARIANTS), default="full", help="full or an ablated space"
    )
    g.add_argument("--searcher", choices=SEARCHERS, default="autopeft")
    g.add_argument("--initial", type=int, default=100, help="random initial configurations")
    g.add_argument("--model-based", type=int, default=100, help="model-based (BO) configurations")
    g.add_argument("--scheduler", choices=SCHEDULERS, default="fifo")
    g.add_argument(
        "--nuts", type=int, nargs=3, metavar=("WARMUP", "SAMPLES", "THINNING"), default=[128, 64, 4]
    )
    g.add_argument(
        "--surrogate",
        choices=SURROGATES,
        default="saas-nuts",
        help="score model: fully Bayesian SAAS (paper) or MAP SAAS (cheap at many observations)",
    )
    g.add_argument(
        "--reference-point",
        type=float,
        nargs=2,
        metavar=("SCORE", "FRACTION"),
        default=None,
        help="hypervolume reference (default: score 0 and the largest configuration's fraction)",
    )
    g.add_argument("--max-failures", type=int, default=1, help="retries of a failed trial")
    g.add_argument(
        "--baseline",
        action="append",
        default=[],
        choices=BASELINE_NAMES,
        help="also train this baseline at the search fidelity, for the report (repeatable)",
    )
    g.add_argument("--output", default="autopeft_runs/search", help="run folder")
    g.add_argument("--resume", action="store_true", help="continue the search in --output")

    d = sub.add_parser(
        "demo", help="a small real search on the offline default (minutes on 2 cores)"
    )
    d.add_argument("--output", default=None, help="run folder (default: autopeft_runs/demo-<time>)")
    d.add_argument("--searcher", choices=SEARCHERS, default="autopeft")

    for name, help_text in (
        ("evaluate", "re-train chosen configurations at full fidelity"),
        ("transfer", "evaluate configurations found on one task on other tasks"),
    ):
        e = sub.add_parser(name, help=help_text)
        e.add_argument("run", help="run folder of a finished search (its Pareto set is used)")
        e.add_argument(
            "--max-fraction",
            type=float,
            default=None,
            help="only configurations under this parameter fraction",
        )
        e.add_argument(
            "--preset",
            action="append",
            default=[],
            help="also evaluate a baseline preset (repeatable)",
        )
        e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        e.add_argument("--output", default=None, help="default: <run>/<command>")
        if name == "transfer":
            e.add_argument("--to", nargs="+", required=True, metavar="TASK", help="target tasks")
        _training_arguments(e, inherit=INHERITED[name])
        _resource_arguments(e)

    r = sub.add_parser("report", help="Pareto plot, hypervolume trace and table of a run")
    r.add_argument("run", help="run folder")
    r.add_argument(
        "--compare", nargs="*", default=[], help="other run folders (e.g. a random search)"
    )
    r.add_argument(
        "--max-fraction",
        type=float,
        default=None,
        help="print the best configuration under this fraction",
    )
    return parser


def _search_options(args: argparse.Namespace) -> Any:
    from autopeft_ray.search import SearchOptions

    return SearchOptions(
        settings=_settings(args),
        output=args.output,
        variant=args.space,
        searcher=args.searcher,
        num_initial=args.initial,
        num_model_based=args.model_based,
        concurrency=args.concurrency,
        scheduler=args.scheduler,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        address=args.address,
        nuts=tuple(args.nuts),
        surrogate=args.surrogate,
        reference_point=None if args.reference_point is None else tuple(args.reference_point),
        max_failures=args.max_failures,
        seed=args.seed,
        baselines=tuple(args.baseline),
    )


def demo_options(output: str | None, searcher: str = "autopeft") -> Any:
    """The README's main job: Rotten Tomatoes, MiniLM-L6, 4 random + 4 model-based configurations.

    Low fidelity, minutes on 2 cores: 1,024 training examples in 64 steps of
    16 with the ``short`` learning-rate policy (per-module rates calibrated for
    this budget, BENCHMARKS.md), 320 dev examples; two trials at a time with
    one CPU each (1.5x the trials per hour of one trial with two CPUs,
    BENCHMARKS.md). Then the head-only model and the ``lora`` and ``serial``
    presets are trained with the same settings, so the report shows what the
    found configurations beat.
    """
    from autopeft_ray.search import SearchOptions

    settings = TrainingSettings(
        task=DEFAULT_TASK,
        max_length=64,
        batch_size=16,
        learning_rate_policy="short",
        epochs=1.0,
        train_examples=1024,
        max_eval_examples=320,
        num_evaluations=1,
    )
    return SearchOptions(
        settings=settings,
        output=output or f"autopeft_runs/demo-{time.strftime('%Y%m%d-%H%M%S')}",
        searcher=searcher,
        num_initial=4,
        num_model_based=4,
        nuts=(32, 16, 2),
        concurrency=2,
        cpus_per_trial=1,
        baselines=("head-only", "lora", "serial"),
    )


def _print_front(folder: Path) -> None:
    from autopeft_ray.report import baselines_table, markdown_table, read_baselines

    pareto = json.loads((folder / "pareto.json").read_text())
    print(f"\nPareto front ({len(pareto)} configurations):\n{markdown_table(pareto)}")
    baselines = read_baselines(folder)
    if baselines:
        print(f"\nBaselines at the same fidelity:\n{baselines_table(baselines)}")
    print(f"\nRun folder: {folder}\nReport:     {folder / 'report' / 'report.md'}")


def _chosen(args: argparse.Namespace) -> list[Any]:
    from autopeft_ray.search import configurations_from_run

    chosen: list[Any] = list(configurations_from_run(args.run, max_fraction=args.max_fraction))
    from autopeft_ray.presets import PRESETS

    for preset in args.preset:
        if preset not in PRESETS:
            from autopeft_ray.exceptions import invalid_value

            raise invalid_value("--preset", preset, valid=sorted(PRESETS))
        chosen.append(preset)
    return chosen


def _print_summary(summary: list[dict[str, Any]]) -> None:
    for row in summary:
        label = row["configuration"].get("preset") or " ".join(
            f"{k}={v}" for k, v in row["configuration"].items()
        )
        metrics = ", ".join(
            f"{k} {v['mean']:.4f} ± {v['std']:.4f}"
            for k, v in row["metrics"].items()
            if k.startswith("test_")
        )
        print(f"[{row['task']}] {label}: {metrics} ({row['seeds']} seeds)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("search", "demo"):
            from autopeft_ray.search import run_search

            options = (
                _search_options(args)
                if args.command == "search"
                else demo_options(args.output, args.searcher)
            )
            folder = run_search(options, resume=getattr(args, "resume", False))
            _print_front(folder)
        elif args.command in ("evaluate", "transfer"):
            from autopeft_ray.evaluate import evaluate_configurations, transfer_configurations

            chosen = _chosen(args)
            output = args.output or str(Path(args.run) / args.command)
            resources = dict(
                seeds=args.seeds,
                concurrency=args.concurrency,
                cpus_per_trial=args.cpus_per_trial,
                gpus_per_trial=args.gpus_per_trial,
                address=args.address,
            )
            if args.command == "evaluate":
                _print_summary(
                    evaluate_configurations(chosen, _settings(args), output=output, **resources)
                )
            else:
                for summary in transfer_configurations(
                    chosen, _settings(args), args.to, output=output, **resources
                ).values():
                    _print_summary(summary)
            print(f"Results: {output}")
        elif args.command == "report":
            from autopeft_ray.report import best_under, write_report
            from autopeft_ray.search import OPTIONS_FILE

            saved = Path(args.run) / OPTIONS_FILE
            reference = (
                tuple(json.loads(saved.read_text())["reference_point"])
                if saved.exists()
                else (0.0, 1.0)
            )
            out = write_report(args.run, reference_point=reference, compare=args.compare)
            print(f"Report: {out / 'report.md'}")
            if args.max_fraction is not None:
                best = best_under(args.run, args.max_fraction)
                print(
                    f"Best under {100 * args.max_fraction:g}% parameters: {json.dumps(best['configuration'])} "
                    f"score {best['metrics']['score']:.4f}"
                )
    except AutoPeftError as exc:
        print(f"autopeft-ray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
