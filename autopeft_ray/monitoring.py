"""What a running search tells about itself, and what its Ray cluster can hold.

* :class:`SearchMetrics`, a Ray Tune callback, exports the search's progress
  through ``ray.util.metrics`` from the driver: trials ended, the hypervolume of
  the current Pareto front, the best score and the searcher's suggestion times.
  Ray serves them on each node's metrics endpoint with a ``ray_`` prefix
  (``cluster/README.md`` lists the names as Prometheus shows them).
* :func:`alive_node_resources` and :func:`find_autoscaler` tell
  :func:`autopeft_ray.search.check_cluster_resources` whether a trial can ever
  be placed, so that a search fails early instead of waiting forever.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

from autopeft_ray.objectives import PARAM_FRACTION, SCORE
from autopeft_ray.pareto import ParetoFront
from autopeft_ray.run_folder import ended_status

logger = logging.getLogger(__name__)

TRIALS_FINISHED = "autopeft_trials_finished"
HYPERVOLUME = "autopeft_hypervolume"
BEST_SCORE = "autopeft_best_score"
SUGGESTION_SECONDS = "autopeft_suggestion_seconds"
#: Histogram buckets (seconds): a model-based suggestion takes from about a second
#: (MAP fit, few observations) to many minutes (NUTS, hundreds of observations).
SUGGESTION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
#: Where the Ray cluster launcher (``ray up``) leaves its config on the head node.
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")


class SearchMetrics(Callback):
    """Ray Tune callback: export the search's progress through ``ray.util.metrics``.

    Every metric carries the tag ``run`` (the run folder), so that searches sharing
    a cluster stay apart. ``autopeft_trials_finished`` (tag ``status``:
    ``completed``, ``stopped_early`` or ``error``) counts the trials that ended
    since this driver started: a resumed search counts from 0 again, as any
    Prometheus counter does after a restart. The gauges start from the run
    folder's ``trials.jsonl``, so a resumed search keeps its front.
    ``autopeft_suggestion_seconds`` observes each entry of ``searcher.timings``
    with a ``total_s`` (the AutoPEFT searcher times its model-based suggestions;
    random ones cost nothing and are not timed).

    Args:
        run_folder: the search's output folder.
        reference_point: ``(score, param_fraction)`` bounding the hypervolume.
        searcher: the searcher whose ``timings`` to export, or ``None``.

    Example:
        >>> tune.RunConfig(callbacks=[SearchMetrics(output, (0.0, 0.05), searcher)])
    """

    def __init__(
        self,
        run_folder: str | Path,
        reference_point: tuple[float, float],
        searcher: Any = None,
    ) -> None:
        self.run_folder = Path(run_folder)
        self.reference_point = reference_point
        self.searcher = searcher
        self.front = ParetoFront(reference_point)
        self.best_score: float | None = None
        self.hypervolume = 0.0
        self.finished: dict[str, int] = {}
        self.suggestion_seconds: list[float] = []
        self._timings_seen = 0
        self._metrics: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into tuner.pkl; metric handles are rebuilt in setup().
        state = self.__dict__.copy()
        state["_metrics"] = None
        return state

    # -- Tune hooks -----------------------------------------------------------
    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        from autopeft_ray.run_folder import completed_points, read_records

        self._metrics = _create_metrics(str(self.run_folder))
        for record in completed_points(read_records(self.run_folder)):
            metrics = record["metrics"]
            self._add_point(record["trial_id"], metrics[SCORE], metrics[PARAM_FRACTION])
        # Tune restores the searcher before setup(): its old timings were exported
        # by the driver that measured them.
        self._timings_seen = len(self._timings())
        self._publish()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        status = ended_status(result)
        if status == "completed" and SCORE in result and PARAM_FRACTION in result:
            self._add_point(trial.trial_id, result[SCORE], result[PARAM_FRACTION])
        self._count(status)
        self._export_timings()
        self._publish()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._count("error")
        self._export_timings()

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._export_timings()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._export_timings()

    # -- bookkeeping ------------------------------------------------------------
    def _add_point(self, trial_id: str, score: float, fraction: float) -> None:
        self.front.add(float(score), float(fraction), payload=trial_id)
        self.best_score = max(float(score), self.best_score or float("-inf"))
        self.hypervolume = self.front.hypervolume()

    def _count(self, status: str) -> None:
        self.finished[status] = self.finished.get(status, 0) + 1
        if self._metrics is not None:
            self._metrics[TRIALS_FINISHED].inc(1, tags={"status": status})

    def _timings(self) -> list[dict[str, Any]]:
        return list(getattr(self.searcher, "timings", None) or [])

    def _export_timings(self) -> None:
        timings = self._timings()
        for timing in timings[self._timings_seen :]:
            seconds = timing.get("total_s")
            if seconds is None:  # a step that failed before timing (see AutoPEFTSearcher)
                continue
            self.suggestion_seconds.append(float(seconds))
            if self._metrics is not None:
                self._metrics[SUGGESTION_SECONDS].observe(float(seconds))
        self._timings_seen = len(timings)

    def _publish(self) -> None:
        if self._metrics is None:
            return
        self._metrics[HYPERVOLUME].set(self.hypervolume)
        if self.best_score is not None:
            self._metrics[BEST_SCORE].set(self.best_score)


def _create_metrics(run: str) -> dict[str, Any]:
    from ray.util.metrics import Counter, Gauge, Histogram

    metrics: dict[str, Any] = {
        TRIALS_FINISHED: Counter(
            TRIALS_FINISHED,
            description="AutoPEFT trials that ended (completed, stopped early or errored).",
            tag_keys=("run", "status"),
        ),
        HYPERVOLUME: Gauge(
            HYPERVOLUME,
            description="Hypervolume of the current Pareto front (score vs parameter fraction).",
            tag_keys=("run",),
        ),
        BEST_SCORE: Gauge(
            BEST_SCORE, description="Best dev score of a completed trial.", tag_keys=("run",)
        ),
        SUGGESTION_SECONDS: Histogram(
            SUGGESTION_SECONDS,
            description="Seconds the searcher took to propose a model-based configuration.",
            boundaries=list(SUGGESTION_BUCKETS),
            tag_keys=("run",),
        ),
    }
    for metric in metrics.values():
        metric.set_default_tags({"run": run})
    return metrics


# -- what the cluster can hold ------------------------------------------------------


@dataclass(frozen=True)
class Autoscaler:
    """An autoscaler seen in the connected Ray cluster.

    Attributes:
        source: where it was seen, for messages.
        node_shapes: the resources of each node type it may add, when the source
            tells them; ``None`` when it runs but what it can add is not visible.
    """

    source: str
    node_shapes: tuple[dict[str, float], ...] | None = None


def alive_node_resources() -> list[dict[str, float]]:
    """Total resources of each alive node of the connected cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node["Alive"]]


def find_autoscaler(bootstrap_config: Path = BOOTSTRAP_CONFIG) -> Autoscaler | None:
    """Look for an autoscaler that can add nodes to the connected cluster.

    Ray 2.60 has no public call for this; these are the signals, most precise first:

    1. the cluster config in the GCS, which platforms report and Ray Train and Ray
       Data read for the same purpose: node groups with resources and max count;
    2. ``~/ray_bootstrap_config.yaml``, the cluster launcher's config on the head
       (Ray Tune checks the same file): node types, ``max_workers``, ``resources``;
    3. autoscaler v2 switched on in the GCS (``ray up``'s default since Ray 2.50,
       KubeRay's ``autoscalerOptions.version: v2``): what it can add is not visible;
    4. the v1 autoscaler's status in the GCS (``__autoscaling_status``, written
       every 5 s): with a config it names the config's node types; the read-only
       monitor of a plain ``ray start`` cluster names each node ``node_<id>``.

    Returns:
        ``None`` only when the v1 status shows the read-only monitor and no other
        signal is present: a cluster of fixed nodes. A cluster whose monitor has
        not reported yet, or a v2 monitor without a provider
        (``RAY_enable_autoscaler_v2=1 ray start``), counts as autoscaling.
    """
    from ray._private import ray_constants
    from ray._private.state import state
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    from ray.experimental.internal_kv import _internal_kv_get

    config = state.get_cluster_config()
    if config is not None and config.node_group_configs:
        shapes = tuple(
            {k: float(v) for k, v in group.resources.items()}
            for group in config.node_group_configs
            if group.max_count != 0
        )
        return Autoscaler("the cluster config in the GCS", shapes)
    launcher = _launcher_node_shapes(bootstrap_config.expanduser())
    if launcher is not None:
        return launcher
    if is_autoscaler_v2(fetch_from_server=True):
        return Autoscaler("autoscaler v2 (enabled in the GCS)")
    raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    if not raw:
        return Autoscaler("no autoscaler status in the GCS yet")
    report = json.loads(raw).get("autoscaler_report") or {}
    mapping: dict[str, str] = report.get("node_type_mapping") or {}
    if mapping and all(name == f"node_{node_id}" for node_id, name in mapping.items()):
        return None  # Ray's read-only monitor: it mirrors fixed nodes, launches none
    return Autoscaler(f"autoscaler v1 with node types {sorted(set(mapping.values()))}")


def _launcher_node_shapes(path: Path) -> Autoscaler | None:
    if not path.exists():
        return None
    import yaml

    config = yaml.safe_load(path.read_text()) or {}
    head = config.get("head_node_type")
    types = {k: v for k, v in (config.get("available_node_types") or {}).items() if k != head}
    default_max = config.get("max_workers", 0)
    addable = [t for t in types.values() if t.get("max_workers", default_max) > 0]
    source = f"the cluster launcher's {path}"
    if any("resources" not in t for t in addable):
        return Autoscaler(source)  # resources come from the instance type: not visible here
    shapes = tuple({k: float(v) for k, v in t["resources"].items()} for t in addable)
    return Autoscaler(source, shapes)


def fits(resources: Mapping[str, float], request: Mapping[str, float]) -> bool:
    """Whether one node with ``resources`` holds a trial asking for ``request``."""
    return all(resources.get(k, 0.0) >= v for k, v in request.items() if v > 0)
