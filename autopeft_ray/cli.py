"""``autopeft-ray``: search, evaluate, transfer, report and demo.

The arguments are built from the fields of :class:`TrainingSettings` and
:class:`SearchOptions` (:mod:`autopeft_ray.config.fields`): a default and its
help are written once, on the field. A flag the user does not give leaves the
field's default (or, for ``evaluate`` and ``transfer``, the search's value).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from autopeft_ray.config import RESOURCE_FIELDS, SearchOptions, TrainingSettings
from autopeft_ray.config.fields import add_arguments, flags, given_values
from autopeft_ray.exceptions import AutoPeftError, ConfigurationError
from autopeft_ray.tasks import DEFAULT_TASK

#: Field name -> the flag that sets it, so that errors name what the user typed.
FLAGS = {**flags(TrainingSettings, SearchOptions), "output": "--output"}

# What evaluate and transfer take from the search's saved settings when not given
# (transfer trains on other tasks: not the search's data files).
INHERITED = {
    "evaluate": ("model", "task", "data_files", "max_length"),
    "transfer": ("model", "task", "max_length"),
}


def _training_arguments(p: argparse.ArgumentParser, inherit: Sequence[str] = ()) -> None:
    add_arguments(p.add_argument_group("training (per trial)"), TrainingSettings, inherited=inherit)
    _data_arguments(
        p.add_argument_group("your own data (--task FILE, FOLDER or HUB NAME), or --causal-lm")
    )


def _data_arguments(g: argparse._ArgumentGroup) -> None:
    from autopeft_ray.tasks.custom import METRICS

    g.add_argument(
        "--text-columns",
        nargs="+",
        metavar="COLUMN",
        default=None,
        help="one or two text columns (default: sentence1 sentence2, text or sentence; with "
        "--causal-lm, a text or a prompt and its response: prompt response, text or sentence)",
    )
    g.add_argument("--label-column", default=None, help="the label column (default: label)")
    g.add_argument(
        "--metric",
        choices=METRICS,
        default=None,
        help="the score (default: accuracy; pearson and spearman with --regression; "
        "token_accuracy with --causal-lm, or neg_loss)",
    )
    g.add_argument(
        "--regression", action="store_true", help="numeric labels: one output, correlations"
    )
    g.add_argument(
        "--causal-lm",
        action="store_true",
        help="causal-LM fine-tuning of a decoder (GPT-2, Llama, Mistral) on the task's text "
        "instead of classification: the loss on every token of one text column, or on the "
        "response of a prompt and a response column; a registered task's text works too",
    )


def resolve_task(task: str, args: argparse.Namespace) -> str | dict[str, Any]:
    """A registered name as it is; anything else becomes your own task (``task_from_data``).

    With ``--causal-lm`` either becomes causal-LM fine-tuning on its text.
    """
    from autopeft_ray.tasks import is_task_name, task_from_data

    causal_lm = bool(getattr(args, "causal_lm", False))
    if causal_lm and is_task_name(task):
        return _registered_causal_lm(task, args)
    data_flags = [
        flag
        for flag, given in (
            ("--text-columns", args.text_columns),
            ("--label-column", args.label_column),
            ("--metric", args.metric),
            ("--regression", args.regression),
        )
        if given
    ]
    if is_task_name(task):
        if data_flags:
            raise ConfigurationError(
                f"`--task` {task!r} is a registered task, so {', '.join(data_flags)} cannot "
                f"change it. Use them with your own data: --task FILE, FOLDER or HUB NAME."
            )
        return task
    spec = task_from_data(
        task,
        text_columns=args.text_columns,
        label_column=args.label_column,
        metric=args.metric,
        regression=args.regression,
        causal_lm=causal_lm,
    )
    return spec.to_dict()


def _registered_causal_lm(task: str, args: argparse.Namespace) -> dict[str, Any]:
    """``--task NAME --causal-lm``: causal-LM fine-tuning on a registered task's text."""
    from autopeft_ray.tasks import get_task
    from autopeft_ray.tasks.custom import causal_lm_task

    other = [
        flag
        for flag, given in (
            ("--text-columns", args.text_columns),
            ("--label-column", args.label_column),
            ("--regression", args.regression),
        )
        if given
    ]
    if other:
        raise ConfigurationError(
            f"`--task` {task!r} is a registered task, so {', '.join(other)} cannot change it; "
            f"with --causal-lm its text columns are modelled as they are. Use them with your "
            f"own data: --task FILE, FOLDER or HUB NAME."
        )
    return causal_lm_task(get_task(task), args.metric).to_dict()


def _resource_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p.add_argument_group("resources"), SearchOptions, only=RESOURCE_FIELDS)


def _settings(args: argparse.Namespace) -> TrainingSettings:
    """The training settings the flags give; for evaluate and transfer, the search's where not given."""
    given = given_values(TrainingSettings, args)
    if "task" in given:
        given["task"] = resolve_task(given["task"], args)
    if args.command in INHERITED:
        from autopeft_ray.run import RunFolder

        run = RunFolder(args.run)
        searched = run.read_options().settings if run.has_options() else TrainingSettings()
        for name in INHERITED[args.command]:
            given.setdefault(name, getattr(searched, name))
    return TrainingSettings(**given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autopeft-ray",
        description="Pareto-optimal PEFT configurations with Ray Tune (AutoPEFT).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="search the PEFT configuration space")
    s.set_defaults(func=_search)
    _training_arguments(s)
    _resource_arguments(s)
    add_arguments(s.add_argument_group("search"), SearchOptions, skip=RESOURCE_FIELDS)
    s.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in --output, with its own options (only --address may change)",
    )
    s.add_argument(
        "--trust-run-folder",
        action="store_true",
        help="resume a run folder that fails the safety checks (another user owns it, "
        "others can write it, or a file of its Ray Tune state changed since the search "
        "recorded its digest). This RUNS CODE FROM THE FOLDER: resuming unpickles its files, "
        "and a pickle runs whatever it holds. Give it only for a folder whose writers you trust",
    )

    d = sub.add_parser(
        "demo", help="a small real search on the offline default (minutes on 2 cores)"
    )
    d.set_defaults(func=_search)
    d.add_argument("--output", default=None, help="run folder (default: autopeft_runs/demo-<time>)")
    add_arguments(d, SearchOptions, only=("searcher",))

    for name, help_text in (
        ("evaluate", "re-train chosen configurations at full fidelity"),
        ("transfer", "evaluate configurations found on one task on other tasks"),
    ):
        e = sub.add_parser(name, help=help_text)
        e.set_defaults(func=_evaluate)
        e.add_argument(
            "run", help="run folder (or URI) of a finished search (its Pareto set is used)"
        )
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
            e.add_argument(
                "--to",
                nargs="+",
                required=True,
                metavar="TASK",
                help="target tasks: registered names, or your own data (as --task)",
            )
        _training_arguments(e, inherit=INHERITED[name])
        _resource_arguments(e)

    r = sub.add_parser("report", help="Pareto plot, hypervolume trace and table of a run")
    r.set_defaults(func=_report)
    r.add_argument("run", help="run folder (or URI: s3://bucket/prefix/name)")
    r.add_argument(
        "--compare", nargs="*", default=[], help="other run folders (e.g. a random search)"
    )
    r.add_argument(
        "--report-dir",
        default=None,
        help="local folder for the report (default: <run>/report, in the bucket for a URI)",
    )
    r.add_argument(
        "--max-fraction",
        type=float,
        default=None,
        help="print the best configuration under this fraction",
    )

    x = sub.add_parser("export-ax", help="write a run's trials as an Ax experiment (JSON)")
    x.set_defaults(func=_export_ax)
    x.add_argument("run", help="run folder")
    x.add_argument("--output", default=None, help="default: <run>/ax_experiment.json")
    return parser


#: What ``search --resume`` may be given besides the run folder.
RESUME_FLAGS = ("output", "address")


def _search_options(args: argparse.Namespace) -> SearchOptions:
    settings = _settings(args)
    given = given_values(SearchOptions, args)
    if args.resume:
        changed = [
            *given_values(TrainingSettings, args),
            *(name for name in given if name not in RESUME_FLAGS),
        ]
        if changed:
            names = ", ".join(FLAGS.get(name, name) for name in changed)
            raise ConfigurationError(
                f"`--resume` continues the search with the options it was started with, so "
                f"{names} cannot be given with it. Resume with --output (and --address) only, "
                f"or start a new search in another --output."
            )
    return SearchOptions(settings=settings, seed=settings.seed, **given)


def in_cli_terms(message: str) -> str:
    """An error message with each field name written as the flag that sets it."""
    for name, flag in FLAGS.items():
        message = message.replace(f"`{name}`", f"`{flag}`")
    return message


def demo_options(output: str | None, searcher: str = "autopeft") -> Any:
    """The README's main job: Rotten Tomatoes, MiniLM-L6, 4 random + 4 model-based configurations.

    Low fidelity, minutes on 2 cores: 1,024 training examples in 64 steps of
    16 with the ``short`` learning-rate policy (per-module rates calibrated for
    this budget, BENCHMARKS.md), 320 dev examples; two trials at a time with
    one CPU each (more trials per hour than one trial with two CPUs; the
    ratio is in BENCHMARKS.md). Then the head-only model and the ``lora`` and ``serial``
    presets are trained with the same settings, so the report shows what the
    found configurations beat.
    """
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


def _print_front(folder: str) -> None:
    from autopeft_ray.run import RunFolder, baselines_table, markdown_table, top_dimensions
    from autopeft_ray.run.records import comparison_line, preset_comparison
    from autopeft_ray.run.report import REPORT_FILE

    run = RunFolder(folder)
    pareto = run.read_pareto()
    print(f"\nPareto front ({len(pareto)} configurations):\n{markdown_table(pareto)}")
    baselines = run.read_baselines()
    if baselines:
        print(f"\nBaselines at the same fidelity:\n{baselines_table(baselines)}")
        print(f"\n{comparison_line(preset_comparison(run.completed(), baselines))}")
    relevance = run.read_relevance()
    if relevance is not None:
        print(f"\nDimensions that matter most (SAAS GP relevance): {top_dimensions(relevance)}")
    report = run.location.uri(RunFolder.REPORT, REPORT_FILE)
    print(f"\nRun folder: {folder}\nReport:     {report}")


def _refit_relevance(folder: str) -> None:
    """Fit which dimensions matter for a run that has no ``relevance.json`` (if it can)."""
    from autopeft_ray.experiment.insight import run_space, save_relevance
    from autopeft_ray.run import RunFolder

    run = RunFolder(folder)
    run.check_exists()
    if run.read_relevance() is not None or not run.has_options():
        return
    try:
        save_relevance(run, run_space(run))
    except AutoPeftError as exc:
        print(f"Which dimensions matter was not fitted: {exc}", file=sys.stderr)


def _chosen(args: argparse.Namespace) -> list[Any]:
    from autopeft_ray.experiment.search import configurations_from_run

    chosen: list[Any] = list(configurations_from_run(args.run, max_fraction=args.max_fraction))
    from autopeft_ray.builder import PRESETS

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


def _search(args: argparse.Namespace) -> None:
    """``search`` and ``demo``: run (or resume) a search, then print its front."""
    from autopeft_ray.experiment.search import run_search

    options = (
        _search_options(args)
        if args.command == "search"
        else demo_options(args.output, **given_values(SearchOptions, args, only=["searcher"]))
    )
    folder = run_search(
        options,
        resume=getattr(args, "resume", False),
        trust_run_folder=getattr(args, "trust_run_folder", False),
    )
    _print_front(folder)


def _evaluate(args: argparse.Namespace) -> None:
    """``evaluate`` and ``transfer``: re-train chosen configurations, on the search's
    task or on others."""
    from autopeft_ray.experiment.evaluate import (
        evaluate_configurations,
        transfer_caveat,
        transfer_configurations,
    )
    from autopeft_ray.run import RunFolder

    chosen = _chosen(args)
    output = args.output or RunFolder(args.run).location.child(args.command).uri()
    resources = {"seeds": args.seeds, **given_values(SearchOptions, args, RESOURCE_FIELDS)}
    if args.command == "evaluate":
        _print_summary(evaluate_configurations(chosen, _settings(args), output=output, **resources))
    else:
        targets = [resolve_task(task, args) for task in args.to]
        settings = _settings(args)
        for task, summary in transfer_configurations(
            chosen, settings, targets, output=output, **resources
        ).items():
            _print_summary(summary)
            caveat = transfer_caveat(settings.task, task)
            if caveat:
                print(caveat)
    print(f"Results: {output}")


def _report(args: argparse.Namespace) -> None:
    """``report``: the Pareto plot, hypervolume trace and table of a run."""
    from autopeft_ray.run import best_under, write_report

    _refit_relevance(args.run)
    report = write_report(args.run, compare=args.compare, report_dir=args.report_dir)
    print(f"Report: {report}")
    if args.max_fraction is not None:
        best = best_under(args.run, args.max_fraction)
        print(
            f"Best under {100 * args.max_fraction:g}% parameters: "
            f"{json.dumps(best['configuration'])} score {best['metrics']['score']:.4f}"
        )


def _export_ax(args: argparse.Namespace) -> None:
    """``export-ax``: a run's trials as an Ax experiment."""
    from ax.utils.common.logger import set_stderr_log_level

    from autopeft_ray.experiment.insight import export_ax

    set_stderr_log_level(logging.WARNING)  # not one INFO line per attached trial
    path = export_ax(args.run, args.output)
    print(f"Ax experiment: {path}\nLoad it with ax.api.client.Client.load_from_json_file.")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except AutoPeftError as exc:
        print(f"autopeft-ray {args.command}: error: {in_cli_terms(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before Ray took over the signal (data preparation)
        output = getattr(args, "output", None)
        resume = (
            f" If {output} holds a search, `autopeft-ray search --output {output} --resume` "
            f"continues it."
            if args.command == "search" and output
            else ""
        )
        print(f"autopeft-ray {args.command}: interrupted (Ctrl-C).{resume}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
