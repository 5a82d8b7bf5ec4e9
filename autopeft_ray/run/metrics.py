"""The search's metrics, exported through ``ray.util.metrics`` from the driver.

Trials ended (by status), the hypervolume of the current Pareto front, the
best score and the searcher's suggestion times. Ray serves them on each
node's metrics endpoint with a ``ray_`` prefix (``cluster/README.md`` lists
the names as Prometheus shows them). :class:`autopeft_ray.run.RunLog` feeds
them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

TRIALS_FINISHED_METRIC = "autopeft_trials_finished"
HYPERVOLUME_METRIC = "autopeft_hypervolume"
BEST_SCORE_METRIC = "autopeft_best_score"
SUGGESTION_SECONDS_METRIC = "autopeft_suggestion_seconds"
#: Histogram buckets (seconds): a model-based suggestion takes from about a second
#: (MAP fit, few observations) to many minutes (NUTS, hundreds of observations).
SUGGESTION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


#: The longest run tag: Prometheus shows it as a label on every series.
MAX_TAG_LENGTH = 120


def run_tag(run: str) -> str:
    """The run folder as a metric tag Ray accepts: itself when it is short printable
    ASCII; else its printable ASCII characters (the end of it, where the run's name is)
    and a digest of the whole, so that two runs never share a tag. Ray's metrics
    encode tags as ASCII and fail the search on any other character; the readable
    path stays in the run folder's ``search.json``."""
    if run.isascii() and run.isprintable() and len(run) <= MAX_TAG_LENGTH:
        return run
    digest = hashlib.sha256(run.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    safe = re.sub(r"[^ -~]", "_", run)[-(MAX_TAG_LENGTH - len(digest) - 1) :]
    return f"{safe}#{digest}"


def create_metrics(run: str) -> dict[str, Any]:
    """The search's metric handles, each tagged with the run folder ``run`` (:func:`run_tag`)."""
    from ray.util.metrics import Counter, Gauge, Histogram

    metrics: dict[str, Any] = {
        TRIALS_FINISHED_METRIC: Counter(
            TRIALS_FINISHED_METRIC,
            description="AutoPEFT trials that ended (completed, stopped early or errored).",
            tag_keys=("run", "status"),
        ),
        HYPERVOLUME_METRIC: Gauge(
            HYPERVOLUME_METRIC,
            description="Hypervolume of the current Pareto front (score vs parameter fraction).",
            tag_keys=("run",),
        ),
        BEST_SCORE_METRIC: Gauge(
            BEST_SCORE_METRIC, description="Best dev score of a completed trial.", tag_keys=("run",)
        ),
        SUGGESTION_SECONDS_METRIC: Histogram(
            SUGGESTION_SECONDS_METRIC,
            description="Seconds the searcher took to propose a model-based configuration.",
            boundaries=list(SUGGESTION_BUCKETS),
            tag_keys=("run",),
        ),
    }
    for metric in metrics.values():
        metric.set_default_tags({"run": run_tag(run)})
    return metrics
