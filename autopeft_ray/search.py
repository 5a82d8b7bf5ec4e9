"""Run an AutoPEFT search with Ray Tune, and re-evaluate what it found.

``run_search`` is what ``autopeft-ray search`` calls; it is also the Python API.
Everything a user can get wrong is checked in ``SearchOptions.__post_init__``
and ``prepare`` (task, model, data files, space), before Ray starts.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import ConfigurationError, SearchInterrupted, invalid_value
from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION, SCORE
from autopeft_ray.presets import BASELINE_NAMES
from autopeft_ray.settings import TrainingSettings, check_trial_resources, trial_config_dict
from autopeft_ray.space import VARIANTS, PeftConfiguration, SearchSpace

SEARCHERS = ("autopeft", "random")
SCHEDULERS = ("fifo", "asha", "hyperband")
#: Score models of the autopeft searcher: ``AutoPEFTSearcher``'s own ``SURROGATES``,
#: repeated here so that options are checked without importing torch and BoTorch
#: (a test keeps the two equal).
SURROGATES = ("saas-nuts", "saas-map")
OPTIONS_FILE = "search.json"
#: Scores of ``SearchOptions.baselines`` at the search fidelity, and Tune's folder for them.
BASELINES_FILE = "baselines.json"
BASELINES_DIR = "baselines"


@dataclass(frozen=True)
class SearchOptions:
    """Everything ``autopeft-ray search`` takes.

    Attributes:
        settings: how each configuration is trained at the search fidelity.
        output: the run folder (created; reused by ``resume``).
        variant: ``full`` or an ablated space (``sa``, ``sa-layer``, ``sa-pa-layer``).
        searcher: ``autopeft`` (SAAS GP + NEHVI) or ``random`` (the paper's baseline).
        num_initial, num_model_based: random initial configurations, then
            model-based ones (the paper: 100 + 100).
        concurrency: trials in flight at once.
        scheduler: ``fifo``, ``asha`` or ``hyperband`` (multi-objective rungs).
        cpus_per_trial, gpus_per_trial: Ray resources of each trial.
        address: Ray cluster address; ``None`` starts a local Ray.
        nuts: NUTS warmup steps, samples and thinning of the SAAS fit.
        surrogate: ``saas-nuts`` (the paper's fully Bayesian SAAS GP) or
            ``saas-map`` (one MAP-fitted SAAS GP: much cheaper suggestions at
            hundreds of observations, see BENCHMARKS.md).
        reference_point: ``(score, param_fraction)`` for the hypervolume; ``None``:
            score 0 and the fraction of the space's largest configuration.
        max_failures: retries of a failed trial (node loss) before it is marked failed.
        baselines: names from ``BASELINE_NAMES`` (``head-only`` and the presets)
            trained once after the search, with the same settings and seed as
            every searched configuration, and shown beside the Pareto front in
            the report: what the search's configurations must beat.
    """

    settings: TrainingSettings = field(default_factory=TrainingSettings)
    output: str = "autopeft_runs/search"
    variant: str = "full"
    searcher: str = "autopeft"
    num_initial: int = 100
    num_model_based: int = 100
    concurrency: int = 1
    scheduler: str = "fifo"
    cpus_per_trial: float = 2
    gpus_per_trial: float = 0
    address: str | None = None
    nuts: tuple[int, int, int] = (128, 64, 4)
    surrogate: str = "saas-nuts"
    reference_point: tuple[float, float] | None = None
    max_failures: int = 1
    seed: int = 0
    baselines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise invalid_value("variant", self.variant, valid=VARIANTS)
        if self.searcher not in SEARCHERS:
            raise invalid_value("searcher", self.searcher, valid=SEARCHERS)
        if self.scheduler not in SCHEDULERS:
            raise invalid_value("scheduler", self.scheduler, valid=SCHEDULERS)
        if self.surrogate not in SURROGATES:
            raise invalid_value("surrogate", self.surrogate, valid=SURROGATES)
        for name in ("num_initial", "num_model_based", "max_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise invalid_value(name, value, expected="an integer >= 0")
        if self.num_initial + self.num_model_based < 1:
            raise invalid_value(
                "num_initial", self.num_initial, expected="> 0 when num_model_based is 0"
            )
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise invalid_value("concurrency", self.concurrency, expected="a positive integer")
        check_trial_resources(
            self.cpus_per_trial,
            self.gpus_per_trial,
            cpus_field="cpus_per_trial",
            gpus_field="gpus_per_trial",
        )
        if self.scheduler != "fifo" and self.settings.num_evaluations < 2:
            raise ConfigurationError(
                f"`scheduler` {self.scheduler!r} stops trials at intermediate evaluations, but "
                f"`num_evaluations` is {self.settings.num_evaluations}. Set num_evaluations >= 2 "
                f"(e.g. 3), or use scheduler='fifo'."
            )
        if self.reference_point is not None and not _valid_reference(self.reference_point):
            raise invalid_value(
                "reference_point",
                self.reference_point,
                expected="(score, param_fraction) with a parameter fraction in (0, 1]",
                fix="Leave it unset for score 0 and the largest configuration's fraction.",
            )
        for name in self.baselines:
            if name not in BASELINE_NAMES:
                raise invalid_value("baselines", name, valid=BASELINE_NAMES)
        if len(self.nuts) != 3 or any(int(n) < 1 for n in self.nuts):
            raise invalid_value(
                "nuts", self.nuts, expected="(warmup, samples, thinning), each >= 1"
            )

    @property
    def num_trials(self) -> int:
        return self.num_initial + self.num_model_based

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = self.settings.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchOptions:
        data = dict(data)
        data["settings"] = TrainingSettings.from_dict(data["settings"])
        data["nuts"] = tuple(data["nuts"])
        data["baselines"] = tuple(data.get("baselines", ()))
        if data.get("reference_point") is not None:
            data["reference_point"] = tuple(data["reference_point"])
        return cls(**data)


def _valid_reference(point: Any) -> bool:
    """A finite ``(score, param_fraction)`` pair with the fraction in (0, 1]."""
    try:
        score, fraction = (float(v) for v in point)
    except (TypeError, ValueError):
        return False
    return math.isfinite(score) and 0 < fraction <= 1


def check_gpus(gpus_per_trial: float, address: str | None) -> None:
    """Before Ray starts: fail early when GPUs are asked for on a local machine that has none.

    With an ``address``, the cluster is checked once connected, by
    :func:`check_cluster_resources`.
    """
    if gpus_per_trial <= 0 or address is not None:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigurationError(
            f"`gpus_per_trial` is {gpus_per_trial!r}, but this machine has no CUDA GPU and no "
            f"cluster `address` was given, so the trials would wait forever. Use "
            f"gpus_per_trial=0, or pass the address of a Ray cluster with GPU nodes."
        )


def check_cluster_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Once connected to Ray: fail early when no node can ever hold a trial.

    A trial's CPUs and GPUs must fit on one node. When no alive node holds them,
    an autoscaler may still add one (:func:`autopeft_ray.monitoring.find_autoscaler`
    says how that is told): then the trials wait for it, with a warning. Without
    one, or when none of its node types is big enough, this raises instead.
    """
    import logging

    import ray

    from autopeft_ray.monitoring import alive_node_resources, find_autoscaler, fits

    request = {"CPU": float(cpus_per_trial), "GPU": float(gpus_per_trial)}
    nodes = alive_node_resources()
    if any(fits(node, request) for node in nodes):
        return
    address = ray.get_runtime_context().gcs_address
    autoscaler = find_autoscaler()
    if autoscaler is not None and (
        autoscaler.node_shapes is None or any(fits(s, request) for s in autoscaler.node_shapes)
    ):
        logging.getLogger(__name__).warning(
            "No node of the Ray cluster at %s has %g CPUs and %g GPUs for a trial yet: the "
            "trials wait until the autoscaler (%s) adds one.",
            address,
            cpus_per_trial,
            gpus_per_trial,
            autoscaler.source,
        )
        return
    most_gpus = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
    if gpus_per_trial > most_gpus:
        field, value, kind, most = "gpus_per_trial", gpus_per_trial, "GPUs", most_gpus
        fix = (
            f"Use gpus_per_trial <= {most_gpus:g} (0 trains on CPUs), or add nodes with GPUs "
            f"(`ray start --address {address} --num-gpus N`, or a cluster/ config whose "
            f"workers have GPUs)."
        )
    else:
        most = max(
            (n.get("CPU", 0.0) for n in nodes if n.get("GPU", 0.0) >= gpus_per_trial), default=0.0
        )
        field, value, kind = "cpus_per_trial", cpus_per_trial, "CPUs"
        fix = (
            f"Use cpus_per_trial <= {most:g}, or add bigger nodes "
            f"(`ray start --address {address} --num-cpus N`)."
        )
    why = (
        "no autoscaler was found that could add one"
        if autoscaler is None
        else f"no node type of the autoscaler ({autoscaler.source}) is that big"
    )
    raise ConfigurationError(
        f"`{field}` is {value!r}, but no node of the Ray cluster at {address} has that many "
        f"{kind} (at most {most:g} on one node) and {why}, so the trials would wait forever. "
        f"{fix}"
    )


def prepare(options: SearchOptions) -> tuple[SearchSpace, Any]:
    """Validate task, model and data, tokenise once (shared by all trials), build the cost."""
    from autopeft_ray.cost import ParamCost
    from autopeft_ray.models import load_config
    from autopeft_ray.trainables import prepare_data

    check_gpus(options.gpus_per_trial, options.address)
    space = SearchSpace.from_model_config(load_config(options.settings.model), options.variant)
    prepare_data(options.settings)  # raises on a bad task or data file; fills the Arrow cache
    return space, ParamCost.from_model(options.settings.model)


def make_searcher(options: SearchOptions, space: SearchSpace, cost: Any) -> Any:
    from autopeft_ray.searchers import AutoPEFTSearcher, RandomPEFTSearcher

    if options.searcher == "random":
        return RandomPEFTSearcher(space, cost_fn=cost, seed=options.seed)
    warmup, samples, thinning = options.nuts
    return AutoPEFTSearcher(
        space,
        cost_fn=cost,
        num_initial=options.num_initial,
        nuts_warmup=warmup,
        nuts_samples=samples,
        nuts_thinning=thinning,
        surrogate=options.surrogate,
        reference_point=options.reference_point,
        seed=options.seed,
    )


def make_scheduler(options: SearchOptions, target_steps: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    from autopeft_ray.schedulers import MultiObjectiveASHA

    if options.scheduler == "fifo":
        return FIFOScheduler()
    evaluations = options.settings.num_evaluations
    grace = max(1, math.ceil(target_steps / evaluations))
    return MultiObjectiveASHA(
        time_attr=FIDELITY,
        max_t=target_steps,
        grace_period=grace,
        reduction_factor=3,
        brackets=1 if options.scheduler == "asha" else 3,
    )


def run_search(options: SearchOptions, *, resume: bool = False) -> Path:
    """Run (or resume) a search; return the run folder with its Pareto set and report.

    Raises:
        SearchInterrupted: after Ctrl-C, once what ended is written to the run
            folder; ``resume=True`` continues the search.
    """
    import ray
    from ray import tune

    from autopeft_ray.monitoring import SearchMetrics
    from autopeft_ray.run_folder import TrialLog
    from autopeft_ray.trainables import prepare_data, with_resources

    output = Path(options.output).resolve()
    if resume:
        saved = output / OPTIONS_FILE
        if not saved.exists():
            raise invalid_value(
                "output",
                str(output),
                expected=f"a run folder holding {OPTIONS_FILE}",
                fix="Pass the folder of the search to resume as --output.",
            )
        options = replace(
            SearchOptions.from_dict(json.loads(saved.read_text())), address=options.address
        )
        check_not_moved(Path(options.output), output)
    elif (output / "tune").exists():
        raise invalid_value(
            "output",
            str(output),
            expected="a new folder",
            fix="It holds a search already: pass --resume to continue it, or another --output.",
        )
    options = replace(options, output=str(output))  # absolute: check_not_moved reads it
    space, cost = prepare(options)
    if options.reference_point is None:
        from autopeft_ray.pareto import reference_point_for

        options = replace(options, reference_point=reference_point_for(space, cost))
    reference: tuple[float, float] = options.reference_point  # type: ignore[assignment]
    output.mkdir(parents=True, exist_ok=True)
    (output / OPTIONS_FILE).write_text(json.dumps(options.to_dict(), indent=2) + "\n")
    train_size = len(prepare_data(options.settings).train)
    target_steps = options.settings.total_steps(train_size)

    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=None, log_to_driver=False)
    check_cluster_resources(options.cpus_per_trial, options.gpus_per_trial)
    # Settings bound to the trainable, not in each trial config: Ray's progress
    # output then shows the configuration only.
    trainable = with_resources(
        options.cpus_per_trial, options.gpus_per_trial, settings=options.settings
    )
    if resume and tune.Tuner.can_restore(str(output / "tune")):
        tuner = tune.Tuner.restore(str(output / "tune"), trainable, resume_errored=True)
    else:
        searcher = make_searcher(options, space, cost)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=make_scheduler(options, target_steps),
                metric=SCORE,
                mode="max",
                num_samples=options.num_trials,
                max_concurrent_trials=options.concurrency,
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(output),
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                # num_to_keep makes Tune snapshot its experiment state (trials, searcher)
                # after every trial checkpoint, i.e. every report, before the trial can end
                # and reach trials.jsonl. With Tune's default (a snapshot at most every
                # 10 s), a driver killed just after a trial ended resumed from a state
                # without that trial's final checkpoint and trained it again.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[TrialLog(output, reference), SearchMetrics(output, reference, searcher)],
                verbose=1,
            ),
        )
    tuner.fit()
    finalize(output, space, reference)
    # On Ctrl-C Tune saves its state and returns as if the search were done (its
    # in-memory trials all end up TERMINATED); the saved state still says which
    # trials were pending or running. Say so, and let the CLI exit non-zero.
    # A trial whose node was lost may also stay RUNNING in the saved state (Ray
    # 2.60 marks it ERROR without saving); trials.jsonl knows that it ended.
    from autopeft_ray.run_folder import read_records

    records = read_records(output)
    ended = {r["trial_id"] for r in records}
    saved_trials = tune.ExperimentAnalysis(str(output / "tune")).trials
    if any(
        t.status not in ("TERMINATED", "ERROR") and t.trial_id not in ended for t in saved_trials
    ):
        raise SearchInterrupted(
            f"The search was interrupted: {len(records)} of {options.num_trials} "
            f"trials ended, and what they measured is in {output}. Continue it with "
            f"`autopeft-ray search --output {output} --resume`."
        )
    if options.baselines and not (output / BASELINES_FILE).exists():
        from autopeft_ray.report import write_report

        run_baselines(options, space, output)
        write_report(output, reference_point=reference)
    return output


def run_baselines(options: SearchOptions, space: SearchSpace, output: Path) -> list[dict[str, Any]]:
    """Train ``options.baselines`` at the search fidelity; write and return ``baselines.json``."""
    from autopeft_ray.evaluate import evaluate_configurations
    from autopeft_ray.presets import baseline

    chosen = {name: baseline(name, space.num_layers) for name in options.baselines}
    summary = evaluate_configurations(
        list(chosen.values()),
        options.settings,
        output=output / BASELINES_DIR,
        seeds=[options.settings.seed],
        concurrency=options.concurrency,
        cpus_per_trial=options.cpus_per_trial,
        gpus_per_trial=options.gpus_per_trial,
        address=options.address,
        name=BASELINES_DIR,
        test=False,
    )
    # A baseline whose training failed has no summary: match the others by configuration.
    names = {json.dumps(trial_config_dict(c), sort_keys=True): n for n, c in chosen.items()}
    rows = [
        {"name": names[json.dumps(row["configuration"], sort_keys=True)], **row} for row in summary
    ]
    (output / BASELINES_FILE).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def check_not_moved(saved: Path, output: Path) -> None:
    """Refuse to resume a run folder that was moved since the search started.

    Ray Tune 2.60 keeps each trial's absolute folder in its saved state: after a
    move, a trial that was running at the interruption fails on resume (tried:
    it errored twice, looking for its checkpoint at the old place). ``saved`` is
    the folder recorded in ``search.json`` (relative in folders of older
    versions, which are not checked).
    """
    if saved.is_absolute() and saved.resolve() != output:
        raise invalid_value(
            "output",
            str(output),
            expected=f"the folder the search was started in, {saved}",
            fix=f"Ray Tune keeps absolute trial paths in its state, so a moved run folder "
            f"cannot be resumed: move it back to {saved} and resume it there.",
        )


def finalize(
    output: Path, space: SearchSpace, reference_point: tuple[float, float]
) -> list[dict[str, Any]]:
    """Write trials/Pareto tables, adapters configurations and the report."""
    from autopeft_ray.builder import adapter_setup_dict
    from autopeft_ray.report import write_report
    from autopeft_ray.run_folder import completed_points, pareto_records, read_records, write_tables

    records = read_records(output)
    pareto = pareto_records(completed_points(records))
    write_tables(output, records, pareto)
    for rank, record in enumerate(pareto):
        configuration = space.from_trial_config(record["configuration"])
        folder = output / "adapters" / f"{rank:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_setup.json").write_text(
            json.dumps(adapter_setup_dict(configuration, hidden_size=space.hidden_size), indent=2)
            + "\n"
        )
        configuration.to_json(folder / "configuration.json")
    write_report(output, reference_point=reference_point)
    return pareto


def configurations_from_run(
    folder: str | Path, *, max_fraction: float | None = None
) -> list[PeftConfiguration]:
    """The Pareto set of a finished run, optionally only those under a parameter budget."""
    path = Path(folder) / "pareto.json"
    if not path.exists():
        raise invalid_value(
            "run folder", str(folder), expected="a finished search (with pareto.json)"
        )
    pareto = json.loads(path.read_text())
    chosen = [
        PeftConfiguration.from_dict(r["configuration"])
        for r in pareto
        if max_fraction is None or r["metrics"][PARAM_FRACTION] <= max_fraction
    ]
    if not chosen:
        raise invalid_value(
            "max_fraction",
            max_fraction,
            expected=f"at least the smallest parameter fraction on the front in {path}",
        )
    return chosen
