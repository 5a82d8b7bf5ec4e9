"""Running things on Ray: searches, re-evaluations, schedulers, capacity checks.

The only layer that imports the Ray Tune plug-ins (``autopeft_ray.searchers``
and ``autopeft_ray.trainables``).

* :mod:`.search`: :func:`run_search` and what it writes in the run folder;
* :mod:`.evaluate`: re-training at full fidelity, and transfer;
* :mod:`.schedulers`: :class:`MultiObjectiveASHA`;
* :mod:`.resources`: can a trial run here?
"""

from .evaluate import evaluate_configurations, transfer_configurations
from .schedulers import MultiObjectiveASHA
from .search import configurations_from_run, run_search

__all__ = [
    "MultiObjectiveASHA",
    "configurations_from_run",
    "evaluate_configurations",
    "run_search",
    "transfer_configurations",
]
