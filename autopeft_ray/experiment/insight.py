"""What a run tells beyond its front: which dimensions matter, and the run as an Ax experiment.

* :func:`save_relevance` writes ``relevance.json``: from the searcher's own
  score model when it has one (its spread over NUTS samples included), else
  from a MAP SAAS GP refitted to the completed trials (random search, runs
  from before this file existed).
* :func:`export_ax` writes the run as an Ax experiment that
  ``ax.api.client.Client.load_from_json_file`` loads, for Ax's analyses or to
  go on searching in Ax.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from autopeft_ray.config import PRESET_KEY
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives import COMPLETED, EARLY_STOPPED, FIDELITY, PARAM_FRACTION, SCORE
from autopeft_ray.run import RunFolder
from autopeft_ray.space import SearchSpace
from autopeft_ray.validation import finite_number

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


def export_ax(
    folder: str | os.PathLike[str], path: str | os.PathLike[str] | None = None
) -> Path | str:
    """Write the run's trials as an Ax experiment JSON; return its path (or URI).

    Each ended trial is attached with its configuration as parameters;
    completed trials carry ``score`` and ``param_fraction`` (the two
    objectives, thresholds at the search's reference point) at their fidelity
    as progression, early-stopped ones their last result and are marked early
    stopped, failed ones are marked failed. Arms are named after Ray's trial
    ids (a configuration tried twice keeps its first name).

    Args:
        folder: a run folder.
        path: where to write (default ``<run>/ax_experiment.json``).

    Raises:
        ConfigurationError: no run folder there, or fewer than ``MIN_COMPLETED``
            completed trials.
    """
    from ax.api.client import Client

    from autopeft_ray.run import reference_point_of

    run = RunFolder(folder)
    run.check_exists()
    records = _searched(run.read_records())
    _check_enough(run, sum(r["status"] == COMPLETED for r in records), "an Ax export")
    space = run_space(run)
    reference = reference_point_of(run)
    client = Client(random_seed=run.read_options().seed)
    client.configure_experiment(
        parameters=space.to_ax_parameters(),
        name=run.name,
        description=f"AutoPEFT search exported from {run}",
    )
    client.configure_optimization(
        objective=f"{SCORE}, -{PARAM_FRACTION}",
        outcome_constraints=[f"{SCORE} >= {reference[0]}", f"{PARAM_FRACTION} <= {reference[1]}"],
    )
    client.configure_generation_strategy()
    named: set[tuple[tuple[str, int], ...]] = set()
    for record in records:
        parameters = {d.name: int(record["configuration"][d.name]) for d in space.dimensions}
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
    if path is None and not run.is_local:  # Ax writes local files: write one, then upload it
        with tempfile.TemporaryDirectory(prefix="autopeft-ax-") as tmp:
            client.save_to_json_file(str(Path(tmp) / RunFolder.AX_EXPERIMENT))
            run.location.upload(tmp)
        return run.location.uri(RunFolder.AX_EXPERIMENT)
    out = Path(path) if path is not None else run.file(RunFolder.AX_EXPERIMENT)
    out.parent.mkdir(parents=True, exist_ok=True)
    client.save_to_json_file(str(out))
    return out
