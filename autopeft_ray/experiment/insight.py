"""What a run tells beyond its front: which dimensions matter, and the run as an Ax experiment.

* :func:`save_relevance` writes ``relevance.json``: from the searcher's own
  score model when it has one (its spread over NUTS samples included), else
  from a MAP SAAS GP refitted to the completed trials (random search, runs
  from before this file existed).
* :func:`export_ax` writes the run as an Ax experiment that
  ``ax.api.client.Client.load_from_json_file`` loads, for Ax's analyses or to
  go on searching in Ax: from a run folder (``autopeft-ray search``, or a
  ``Tuner`` with :func:`autopeft_ray.run.search_callbacks`), a Ray Tune
  experiment folder, a ``ResultGrid`` or an ``ExperimentAnalysis``.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopeft_ray.config import PRESET_KEY
from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.objectives import (
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    FIDELITY,
    PARAM_FRACTION,
    SCORE,
    TARGET_FIDELITY,
    stopped_early,
)
from autopeft_ray.run import RunFolder
from autopeft_ray.space import SearchSpace
from autopeft_ray.validation import check_reference_point, finite_number

logger = logging.getLogger(__name__)

#: Fewer completed trials than this: no relevance and no Ax export (one point says nothing).
MIN_COMPLETED = 2


def run_space(run: RunFolder) -> SearchSpace:
    """The search space of a run, from its ``search.json`` (model shape and variant)."""
    from autopeft_ray.models import load_config

    options = run.read_options()
    return SearchSpace.from_model_config(load_config(options.settings.model), options.variant)


def _searched(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if PRESET_KEY not in r["configuration"]]


def _check_enough(run: RunFolder, completed: int, what: str) -> None:
    if completed < MIN_COMPLETED:
        raise ConfigurationError(
            f"{run} has {completed} completed trial{'s' * (completed != 1)}; {what} "
            f"needs at least {MIN_COMPLETED}. Let the search run longer (more "
            f"--num-trials), or resume it with --resume."
        )


def save_relevance(
    run: RunFolder, space: SearchSpace, searcher: Any = None, *, seed: int = 0
) -> dict[str, Any] | None:
    """Write which dimensions matter to ``relevance.json`` and return it.

    Taken from ``searcher.relevance()`` when the searcher has fitted a score
    model, else refitted (MAP SAAS) from the completed trials. ``None``, with
    nothing written, when fewer than ``MIN_COMPLETED`` trials completed or the
    fit fails (logged: a search's end must not fail for want of a chart).
    """
    from autopeft_ray.searchers import fit_relevance

    relevance = searcher.relevance() if hasattr(searcher, "relevance") else None
    if relevance is None:
        done = [r for r in _searched(run.completed()) if math.isfinite(r["metrics"][SCORE])]
        if len(done) < MIN_COMPLETED:
            return None
        results = [(space.from_trial_config(r["configuration"]), r["metrics"][SCORE]) for r in done]
        try:
            relevance = fit_relevance(space, results, seed=seed)
        except (RuntimeError, ValueError):
            logger.exception("%s: fitting which dimensions matter failed; skipped.", run)
            return None
    run.write_relevance(relevance)
    return relevance


def _tune_trials(source: Any) -> tuple[list[Any], str, Any]:
    """``(trials, experiment folder, filesystem)`` of a ``ResultGrid``, an
    ``ExperimentAnalysis`` or a Ray Tune experiment folder."""
    from ray import tune

    if hasattr(source, "trials") and hasattr(source, "experiment_path"):  # ExperimentAnalysis
        return list(source.trials), str(source.experiment_path), None
    if hasattr(source, "experiment_path"):  # ResultGrid
        filesystem = getattr(source, "filesystem", None)
        path = str(source.experiment_path)
    else:
        filesystem, path = None, os.fspath(source)
    try:
        analysis = tune.ExperimentAnalysis(path, storage_filesystem=filesystem)
    except (ValueError, OSError, RuntimeError) as exc:
        raise invalid_value(
            "folder",
            path,
            expected="a run folder (autopeft-ray search, or a Tuner with search_callbacks), "
            "a Ray Tune experiment folder, a ResultGrid or an ExperimentAnalysis",
            fix=f"Check the path ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).",
        ) from None
    return list(analysis.trials), path, filesystem


def _classified(records: list[dict[str, Any]], max_t: float | None) -> list[dict[str, Any]]:
    """``records`` with the searchers' rule applied (:func:`stopped_early`): a result
    without a target is measured against ``max_t``, else the largest fidelity of all."""
    fidelities = [finite_number(r["metrics"].get(FIDELITY)) for r in records]
    largest = max((f for f in fidelities if f is not None), default=None)
    for record, fidelity in zip(records, fidelities, strict=True):
        if record["status"] == FAILED:
            continue
        target = finite_number(record["metrics"].get(TARGET_FIDELITY))
        early = stopped_early(fidelity, target, max_t=max_t, largest_fidelity=largest)
        record["status"] = EARLY_STOPPED if early else COMPLETED
    return records


def export_ax(
    folder: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    space: SearchSpace | None = None,
    reference_point: Sequence[float] | None = None,
    max_t: float | None = None,
    seed: int | None = None,
) -> Path | str:
    """Write a search's trials as an Ax experiment JSON; return its path (or URI).

    Each ended trial is attached with its configuration as parameters;
    completed trials carry ``score`` and ``param_fraction`` (the two
    objectives, thresholds at the search's reference point) at their fidelity
    as progression, early-stopped ones their last result and are marked early
    stopped, failed ones are marked failed. Arms are named after Ray's trial
    ids (a configuration tried twice keeps its first name).

    Args:
        folder: a run folder (``autopeft-ray search``, or a ``Tuner`` with
            :func:`autopeft_ray.run.search_callbacks`); a Ray Tune experiment
            folder (``<storage_path>/<name>`` of a plain ``Tuner`` or
            ``tune.run``); or the ``ResultGrid`` of ``Tuner.fit()`` or the
            ``ExperimentAnalysis`` of ``tune.run``.
        path: where to write (default ``<folder>/ax_experiment.json``, in the
            Tune experiment folder for a ``ResultGrid``).
        space: the search space; needed unless the folder was written by
            ``autopeft-ray search`` (its ``search.json`` holds it).
        reference_point: ``(score, param_fraction)`` thresholds; default: the
            search's, else ``(0.0, 1.0)``.
        max_t: the target fidelity of trials that report none (Tune's results;
            the searchers' rule, :func:`autopeft_ray.objectives.stopped_early`).
        seed: the Ax client's seed; default: the search's, else 0.

    Raises:
        ConfigurationError: no search there, no ``space`` for one that does not
            record it, a trial config outside ``space``, or fewer than
            ``MIN_COMPLETED`` completed trials.

    Example:
        >>> results = tuner.fit()
        >>> export_ax(results, space=SearchSpace.from_model_config(model))
    """
    from ax.api.client import Client

    from autopeft_ray.run import reference_point_of
    from autopeft_ray.run.records import missing_records

    run: RunFolder | None = None
    if isinstance(folder, (str, os.PathLike, RunFolder)):
        candidate = folder if isinstance(folder, RunFolder) else RunFolder(folder)
        has_records = candidate.has_options() or candidate.location.exists(RunFolder.TRIALS)
        if has_records or candidate.location.list_files(RunFolder.TRIAL_OBJECTS):
            run = candidate
        elif not candidate.location.exists():
            candidate.check_exists()  # names the missing folder
    if run is not None:
        out_folder, records = run, _searched(run.read_records())
        options = run.read_options() if run.has_options() else None
        if space is None and options is not None:
            space = run_space(run)
        if reference_point is None and options is not None:
            reference_point = reference_point_of(run)
        if seed is None and options is not None:
            seed = options.seed
    else:
        trials, experiment, filesystem = _tune_trials(folder)
        out_folder = RunFolder(experiment, filesystem, field="folder")
        records = _classified(_searched(missing_records(set(), trials, max_t)), max_t)
    if space is None:
        raise invalid_value(
            "space",
            None,
            expected="the SearchSpace the search ran on",
            fix=f"{out_folder} does not record it (only autopeft-ray search writes "
            f"search.json): pass space=SearchSpace.from_model_config(model), in Python "
            f"(autopeft_ray.experiment.insight.export_ax).",
        )
    reference = check_reference_point(reference_point or (0.0, 1.0))
    _check_enough(out_folder, sum(r["status"] == COMPLETED for r in records), "an Ax export")
    client = Client(random_seed=0 if seed is None else seed)
    client.configure_experiment(
        parameters=space.to_ax_parameters(),
        name=out_folder.name,
        description=f"AutoPEFT search exported from {out_folder}",
    )
    client.configure_optimization(
        objective=f"{SCORE}, -{PARAM_FRACTION}",
        outcome_constraints=[f"{SCORE} >= {reference[0]}", f"{PARAM_FRACTION} <= {reference[1]}"],
    )
    # The exported trials are the initial design: without the centre point (whose node
    # hands over to Sobol without checking Sobol's budget), the next trial Ax generates
    # after loading is model-based, not one more Sobol point.
    client.configure_generation_strategy(initialize_with_center=False)
    named: set[tuple[tuple[str, int], ...]] = set()
    for record in records:
        configuration = space.from_trial_config(record["configuration"]).to_dict()
        parameters = {d.name: int(configuration[d.name]) for d in space.dimensions}
        signature = tuple(sorted(parameters.items()))
        index = client.attach_trial(
            parameters, arm_name=None if signature in named else record["trial_id"]
        )
        named.add(signature)
        metrics = record["metrics"]
        values = {k: finite_number(metrics.get(k)) for k in (SCORE, PARAM_FRACTION, FIDELITY)}
        data = {k: v for k, v in values.items() if v is not None and k != FIDELITY}
        fidelity = values[FIDELITY]
        progression = None if fidelity is None else int(fidelity)
        if record["status"] == COMPLETED:
            client.complete_trial(index, raw_data=data, progression=progression)
        elif record["status"] == EARLY_STOPPED:
            if data:
                client.attach_data(index, raw_data=data, progression=progression)
            client.mark_trial_early_stopped(index)
        else:
            client.mark_trial_failed(index, failed_reason=record.get("error"))
    if path is None and not out_folder.is_local:  # Ax writes local files: write, then upload
        with tempfile.TemporaryDirectory(prefix="autopeft-ax-") as tmp:
            client.save_to_json_file(str(Path(tmp) / RunFolder.AX_EXPERIMENT))
            out_folder.location.upload(tmp)
        return out_folder.location.uri(RunFolder.AX_EXPERIMENT)
    out = Path(path) if path is not None else out_folder.file(RunFolder.AX_EXPERIMENT)
    out.parent.mkdir(parents=True, exist_ok=True)
    client.save_to_json_file(str(out))
    return out
