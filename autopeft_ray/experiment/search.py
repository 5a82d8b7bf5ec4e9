"""Run an AutoPEFT search with Ray Tune, and what it leaves in its run folder.

``run_search`` is what ``autopeft-ray search`` calls; it is also the Python API.
Everything a user can get wrong is checked in ``SearchOptions.__post_init__``
and :func:`prepare` (task, model, data files, space, resources), before Ray starts.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from autopeft_ray.config import SearchOptions, trial_config_dict
from autopeft_ray.exceptions import (
    ConfigurationError,
    SearchFailed,
    SearchInterrupted,
    invalid_value,
    shorten,
)
from autopeft_ray.objectives import FAILED, FIDELITY, PARAM_FRACTION, SCORE
from autopeft_ray.run import RunFolder, search_callbacks
from autopeft_ray.run.digest import StateDigest, check_digest, record_digest
from autopeft_ray.run.storage import Location, is_uri
from autopeft_ray.space import SIZE_KEYS, PeftConfiguration, SearchSpace

from .resources import check_cluster_resources, check_gpus


def prepare(options: SearchOptions) -> tuple[SearchSpace, Any, int]:
    """Validate task, model and data, tokenise once (shared by all trials), build the cost.

    Returns the space, the cost and the number of training examples a trial sees.
    """
    from autopeft_ray.models import load_config, model_family
    from autopeft_ray.objectives import ParamCost
    from autopeft_ray.space.support import check_causal_lm
    from autopeft_ray.tasks import get_task, prepare_data

    check_gpus(options.gpus_per_trial, options.address)
    model_config = load_config(options.settings.model)
    space = SearchSpace.from_model_config(model_config, options.variant)
    if get_task(options.settings.task).is_causal_lm:
        check_causal_lm(model_family(model_config))
    for module, why in space.refused:
        logging.getLogger(__name__).warning(
            "The %r space searches %s fixed at 0 on this model. %s",
            options.variant,
            SIZE_KEYS[module],
            why,
        )
    data = prepare_data(options.settings)  # raises on a bad task or data file; fills the cache
    return space, ParamCost.from_model(options.settings.model), len(data.train)


def make_searcher(options: SearchOptions, space: SearchSpace, cost: Any) -> Any:
    # One import per searcher: random search then loads neither Ax nor JAX.
    if options.searcher == "random":
        from autopeft_ray.searchers import RandomPEFTSearcher

        return RandomPEFTSearcher(space, cost_fn=cost, seed=options.seed)
    warmup, samples, thinning = options.nuts
    # SearchOptions resolved the defaults of these three (``_resolve_scheduler_defaults``).
    assert options.surrogate is not None and options.multi_fidelity is not None
    common: dict[str, Any] = dict(
        cost_fn=cost,
        num_initial=options.num_initial,
        nuts_warmup=warmup,
        nuts_samples=samples,
        nuts_thinning=thinning,
        surrogate=options.surrogate,
        reference_point=options.reference_point,
        seed=options.seed,
    )
    if options.searcher == "ax":
        from autopeft_ray.searchers import AxPEFTSearcher

        return AxPEFTSearcher(space, **common)
    from autopeft_ray.searchers import AutoPEFTSearcher

    return AutoPEFTSearcher(
        space,
        background=options.background,
        # One fit computes a candidate for each trial slot (BENCHMARKS.md, "Driver idle time").
        queue_size=max(2, options.concurrency),
        fill_with_random=options.fill_with_random,
        max_baseline=options.max_baseline,
        multi_fidelity=options.multi_fidelity,
        cost_input=bool(options.cost_input),
        **common,
    )


def make_scheduler(options: SearchOptions, target_steps: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    from .schedulers import MultiObjectiveASHA

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


def run_search(
    options: SearchOptions,
    *,
    resume: bool = False,
    trust_run_folder: bool = False,
    filesystem: pafs.FileSystem | None = None,
) -> str:
    """Run (or resume) a search; return the run folder (a path or URI) with its Pareto set and report.

    Args:
        options: the search (with ``resume``, only ``output`` and ``address`` are read).
            ``output`` is a local folder or a URI (``s3://bucket/prefix/name``,
            ``gs://...``: :mod:`autopeft_ray.run.storage`).
        resume: continue the search in ``options.output``.
        trust_run_folder: resume even when the folder is writable by others or
            not owned by this user (a run folder is code to Ray: resume only
            your own).
        filesystem: a ``pyarrow.fs.FileSystem`` in which ``output`` is a path,
            as Ray Tune's ``storage_filesystem`` (instead of a URI).

    Raises:
        SearchInterrupted: after Ctrl-C, once what ended is written to the run
            folder; ``resume=True`` continues the search.
    """
    import ray
    from ray import tune

    from autopeft_ray.trainables import with_resources

    run = RunFolder(options.output, filesystem, field="output")
    output = run.location.uri()
    run.check_writable()  # object storage: one marker object, before anything else
    if resume:
        if not run.has_options():
            raise invalid_value(
                "output",
                output,
                expected=f"a run folder holding {RunFolder.OPTIONS}",
                fix="Pass the folder of the search to resume as --output.",
            )
        untrusted = [] if trust_run_folder else run.untrusted_entries()
        if untrusted:
            raise ConfigurationError(
                f"`output` {output} cannot be resumed safely: resuming unpickles files in it "
                f"(Ray Tune's state), and {'; '.join(untrusted)}. Resume only your own run "
                f"folders: fix the ownership and permissions (chmod -R go-w), or pass "
                f"--trust-run-folder if you know who wrote it."
            )
        if not trust_run_folder:
            check_digest(run)  # a pickle in tune/ changed or added since the search recorded it
        options = replace(run.read_options(), address=options.address)
        check_not_moved(options.output, run)
        run.repair_records()
        run.read_records()  # a damaged trials.jsonl fails here, before Ray starts
    elif run.tune.exists():
        raise invalid_value(
            "output",
            output,
            expected="a new folder",
            fix="It holds a search already: pass --resume to continue it, or another --output.",
        )
    options = replace(options, output=output)  # absolute: check_not_moved reads it
    space, cost, train_size = prepare(options)
    options = options.with_initial_design(space)  # --initial unset: scaled to the space
    if options.reference_point is None:
        from autopeft_ray.objectives.pareto import reference_point_for

        options = replace(options, reference_point=reference_point_for(space, cost))
    reference: tuple[float, float] = options.reference_point  # type: ignore[assignment]
    run.write_options(options)
    record_digest(run)  # tune/ as checked (or trusted): what a resume may unpickle
    target_steps = options.settings.total_steps(train_size)

    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=None, log_to_driver=False)
    check_cluster_resources(options.cpus_per_trial, options.gpus_per_trial)
    # Settings bound to the trainable, not in each trial config: Ray's progress
    # output then shows the configuration only.
    trainable = with_resources(
        options.cpus_per_trial, options.gpus_per_trial, settings=options.settings
    )
    searcher = None  # a restored Tuner restores its own; relevance is then refitted
    tune_path, storage = run.tune.root, run.location.tune_storage()
    tune_fs = storage.get("storage_filesystem")
    if resume and tune.Tuner.can_restore(tune_path, storage_filesystem=tune_fs):
        tuner = tune.Tuner.restore(
            tune_path, trainable, resume_errored=True, storage_filesystem=tune_fs
        )
    else:
        searcher = make_searcher(options, space, cost)
        scheduler = make_scheduler(options, target_steps)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                metric=SCORE,
                mode="max",
                num_samples=options.num_trials,
                max_concurrent_trials=options.concurrency,
                reuse_actors=options.reuse_actors,
            ),
            run_config=tune.RunConfig(
                name=RunFolder.TUNE,
                **storage,
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                # num_to_keep makes Tune snapshot its experiment state (trials, searcher)
                # after every trial checkpoint, i.e. every report, before the trial can end
                # and reach trials.jsonl. With Tune's default (a snapshot at most every
                # 10 s), a driver killed just after a trial ended resumed from a state
                # without that trial's final checkpoint and trained it again.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                # The ones a Python user adds too: records, metrics, start and end notes;
                # and the digest of Tune's state at each snapshot (run/digest.py).
                callbacks=[
                    *search_callbacks(
                        searcher, run, scheduler=scheduler, reference_point=reference
                    ),
                    StateDigest(run),
                ],
                verbose=1,
            ),
        )
    record_digest(run)  # tuner.pkl, just written
    try:
        tuner.fit()
    finally:  # ended, interrupted (Ctrl-C) or failed: what Tune left is this search's
        record_digest(run)
    saved_trials = tune.ExperimentAnalysis(tune_path, storage_filesystem=tune_fs).trials
    # A record cut short by a crash, or a damaged line deleted, is rebuilt from Tune's
    # saved state: a resumed search never ends with fewer records than ended trials.
    run.rebuild_records(saved_trials)
    records = finalize(run, space, reference, searcher)
    # On Ctrl-C Tune saves its state and returns as if the search were done (its
    # in-memory trials all end up TERMINATED); the saved state still says which
    # trials were pending or running. Say so, and let the CLI exit non-zero.
    # A trial whose node was lost may also stay RUNNING in the saved state (Ray
    # 2.60 marks it ERROR without saving); trials.jsonl knows that it ended.
    ended = {r["trial_id"] for r in records}
    if any(
        t.status not in ("TERMINATED", "ERROR") and t.trial_id not in ended for t in saved_trials
    ):
        raise SearchInterrupted(
            f"The search was interrupted: {len(records)} of {options.num_trials} "
            f"trials ended, and what they measured is in {output}. Continue it with "
            f"`autopeft-ray search --output {output} --resume`."
        )
    check_something_was_measured(records, output)
    if options.baselines and not run.has_baselines():
        from autopeft_ray.run import write_report

        run_baselines(options, space, run)
        run.write_front(records)  # each front member marked with the baselines dominating it
        write_report(run, reference_point=reference)
    return output


def check_something_was_measured(records: list[dict[str, Any]], output: str) -> None:
    """Raise ``SearchFailed`` when every trial failed, saying why the first one did."""
    if not records or any(r["status"] != FAILED for r in records):
        return
    first = records[0].get("error")
    reason = ""
    if first and Path(first).is_file():
        lines = [line for line in Path(first).read_text(errors="replace").splitlines() if line]
        reason = f" The first trial's error: {shorten(lines[-1], 300)}" if lines else ""
        reason += f" (whole traceback: {first})."
    raise SearchFailed(
        f"Every trial of the search failed ({len(records)} of {len(records)}): nothing was "
        f"measured, and the front is empty.{reason} The records are in {output}; fix the "
        f"cause, then start a new search."
    )


def run_baselines(
    options: SearchOptions, space: SearchSpace, run: RunFolder
) -> list[dict[str, Any]]:
    """Train ``options.baselines`` at the search fidelity; write and return ``baselines.json``."""
    from autopeft_ray.builder import baseline

    from .evaluate import evaluate_configurations

    chosen = {name: baseline(name, space.num_layers) for name in options.baselines}
    summary = evaluate_configurations(
        list(chosen.values()),
        options.settings,
        output=run.location.child(RunFolder.BASELINES_DIR),
        seeds=[options.settings.seed],
        name=RunFolder.BASELINES_DIR,
        test=False,
        **options.resources,
    )
    # A baseline whose training failed has no summary: match the others by configuration.
    names = {json.dumps(trial_config_dict(c), sort_keys=True): n for n, c in chosen.items()}
    rows = [
        {"name": names[json.dumps(row["configuration"], sort_keys=True)], **row} for row in summary
    ]
    run.write_baselines(rows)
    return rows


def check_not_moved(saved: str, run: RunFolder) -> None:
    """Refuse to resume a run folder that was moved since the search started.

    Ray Tune keeps each trial's absolute folder in its saved state: after a
    move, a trial that was running at the interruption fails on resume, looking
    for its checkpoint at the old place. ``saved`` is
    the folder recorded in ``search.json``: a local one must be absolute and,
    resolved (symbolic links, ``..``), the same folder as ``run``'s; a URI must
    name the same bucket and path (its query, such as an endpoint, may change).
    """
    shown = run.location.uri()
    if not (is_uri(saved) or Path(saved).is_absolute()):
        raise invalid_value(
            "output",
            shown,
            expected=f"a run folder whose {RunFolder.OPTIONS} names its absolute path",
            fix=f"{RunFolder.OPTIONS} says {saved!r}: this folder was not written by "
            f"`autopeft-ray search` as it is, so it is not resumed.",
        )
    try:
        same = Location(saved) == run.location
    except ConfigurationError:
        same = False
    if not same:
        raise invalid_value(
            "output",
            shown,
            expected=f"the folder the search was started in, {saved}",
            fix=f"Ray Tune keeps absolute trial paths in its state, so a moved run folder "
            f"cannot be resumed: move it back to {saved} and resume it there.",
        )


def finalize(
    run: RunFolder, space: SearchSpace, reference_point: tuple[float, float], searcher: Any = None
) -> list[dict[str, Any]]:
    """Write trials/Pareto tables, adapters setups, relevance and the report; return the records.

    Relevance (which dimensions matter) comes from ``searcher``'s score model
    when it has one, else from a refit (:func:`.insight.save_relevance`).
    """
    from autopeft_ray.builder import adapter_setup_dict
    from autopeft_ray.run import write_report

    from .insight import save_relevance

    records = run.read_records()
    pareto = run.write_front(records)
    for rank, record in enumerate(pareto):
        configuration = space.from_trial_config(record["configuration"])
        setup = adapter_setup_dict(configuration, hidden_size=space.hidden_size)
        run.write_adapter_setup(rank, setup, configuration)
    save_relevance(run, space, searcher)
    write_report(run, reference_point=reference_point)
    return records


def configurations_from_run(
    folder: str | Path | RunFolder, *, max_fraction: float | None = None
) -> list[PeftConfiguration]:
    """The Pareto set of a finished run, optionally only those under a parameter budget."""
    run = folder if isinstance(folder, RunFolder) else RunFolder(folder)
    run.read_records()  # a damaged trials.jsonl stops here, naming the line, as in every command
    pareto = run.read_pareto()
    chosen = [
        PeftConfiguration.from_dict(r["configuration"])
        for r in pareto
        if max_fraction is None or r["metrics"][PARAM_FRACTION] <= max_fraction
    ]
    if not chosen:
        raise invalid_value(
            "max_fraction",
            max_fraction,
            expected=f"at least the smallest parameter fraction on the front in {run}",
        )
    return chosen
