"""Re-train chosen configurations at full fidelity with several seeds, and transfer them.

Both run as one Ray Tune experiment (``FixedConfigurations`` over the given
trial configs), so they use the same trainable, resources, retries and
checkpoints as the search. Results are summarised as mean and standard
deviation per metric, as in the paper's tables.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopeft_ray.config import (
    TRIAL_SETTINGS_KEY,
    SearchOptions,
    TrainingSettings,
    trial_config,
    trial_config_dict,
)
from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives import BEST_SCORE, PARAM_FRACTION, SCORE
from autopeft_ray.run.storage import Location
from autopeft_ray.space import PeftConfiguration
from autopeft_ray.tasks import TaskSpec

from .resources import check_gpus

logger = logging.getLogger(__name__)


def evaluate_configurations(
    configurations: Sequence[PeftConfiguration | str],
    settings: TrainingSettings,
    *,
    output: str | Path | Location,
    seeds: Sequence[int] = (0, 1, 2),
    concurrency: int = SearchOptions.concurrency,
    cpus_per_trial: float = SearchOptions.cpus_per_trial,
    gpus_per_trial: float = SearchOptions.gpus_per_trial,
    address: str | None = SearchOptions.address,
    max_failures: int = SearchOptions.max_failures,
    reuse_actors: bool = SearchOptions.reuse_actors,
    name: str = "evaluation",
    test: bool = True,
) -> list[dict[str, Any]]:
    """Train each configuration (or preset) once per seed; return per-configuration summaries.

    ``output`` is a local folder or a URI (``s3://...``), as a run folder.
    Resources default to a search's (:class:`SearchOptions`). Summaries follow
    the order of ``configurations``. With ``test``, the test split is scored at
    the end of each training too (``test_*`` metrics).
    """
    import ray
    from ray import tune

    from autopeft_ray.searchers import FixedConfigurations
    from autopeft_ray.tasks import prepare_data
    from autopeft_ray.trainables import with_resources

    if not configurations:
        raise invalid_value("configurations", list(configurations), expected="at least one")
    if not seeds:
        raise invalid_value("seeds", list(seeds), expected="at least one seed")
    check_gpus(gpus_per_trial, address)
    prepare_data(settings)  # validate and tokenise once before Ray starts
    points = [
        trial_config(c, settings.replace(seed=int(s), evaluate_test=test))
        for c in configurations
        for s in seeds
    ]
    where = Location(output)
    where.check_writable("output")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=None, log_to_driver=False)
    results = tune.Tuner(
        with_resources(cpus_per_trial, gpus_per_trial),
        tune_config=tune.TuneConfig(
            search_alg=FixedConfigurations(points),
            num_samples=len(points),
            max_concurrent_trials=concurrency,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=name,
            **where.tune_storage(),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=1,
        ),
    ).fit()
    runs: dict[str, list[dict[str, Any]]] = {}
    for result in list(results):  # type: ignore[call-overload]
        if result.error is not None or not result.metrics:
            continue
        config = {k: v for k, v in result.config.items() if k != TRIAL_SETTINGS_KEY}
        key = json.dumps(config, sort_keys=True)
        runs.setdefault(key, []).append(result.metrics)
    order = [json.dumps(trial_config_dict(c), sort_keys=True) for c in configurations]
    summary = [summarise(json.loads(k), runs[k], settings.task_name) for k in order if k in runs]
    where.write_text(json.dumps(summary, indent=2) + "\n", f"{name}.json")
    return summary


def summarise(
    configuration: dict[str, Any], runs: list[dict[str, Any]], task: str
) -> dict[str, Any]:
    """Mean and standard deviation of every numeric task metric over seeds."""
    keys = sorted(
        k
        for k in runs[0]
        if k.startswith(("test_", "metric_")) or k in (SCORE, BEST_SCORE, PARAM_FRACTION)
    )
    stats: dict[str, dict[str, float]] = {}
    for key in keys:
        values = [float(r[key]) for r in runs if key in r]
        stats[key] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    return {"task": task, "configuration": configuration, "seeds": len(runs), "metrics": stats}


def transfer_caveat(source: Any, target: str) -> str | None:
    """Why scores on ``target`` of configurations found on ``source`` are no transfer result."""
    from autopeft_ray.tasks import get_task, shared_source

    source_name = get_task(source).name
    corpus = shared_source(source_name, target)
    if corpus is None:
        return None
    return (
        f"Not a transfer result: {source_name} and {target} both come from {corpus}; "
        f"the scores on {target} show the configurations on the same data, not on a new task."
    )


def transfer_configurations(
    configurations: Sequence[PeftConfiguration | str],
    settings: TrainingSettings,
    tasks: Sequence[str | TaskSpec | dict[str, Any]],
    *,
    output: str | Path | Location,
    **kwargs: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Evaluate configurations found on one task on each of ``tasks`` (the paper's transfer).

    ``tasks`` are registered names or ``TaskSpec``s (your own data); results
    are keyed by task name.
    """
    from autopeft_ray.tasks import get_task

    specs = [get_task(task) for task in tasks]  # fail before any training on a bad task
    for spec in specs:
        caveat = transfer_caveat(settings.task, spec.name)
        if caveat:
            logger.warning(caveat)
    return {
        spec.name: evaluate_configurations(
            configurations,
            settings.replace(task=spec.name if spec.is_registered else spec.to_dict()),
            output=output,
            name=f"transfer_{spec.name}",
            **kwargs,
        )
        for spec in specs
    }
