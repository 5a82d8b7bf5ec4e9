"""autopeft-ray: Pareto-optimal PEFT configurations with Ray Tune (AutoPEFT).

Layers, lowest first (each imports only those below it; ``docs/architecture.md``):

* ``exceptions``, ``validation``, ``models``: errors, value checks, where models come from;
* ``space``: configurations and the search space;
* ``objectives``: metric names, statuses, the parameter cost, Pareto fronts;
* ``builder``, ``tasks``: configuration -> model; task data and metrics;
* ``config``: trial settings and search options;
* ``searchers``, ``trainables``: the Ray Tune plug-ins;
* ``run``: the run folder, its Tune callback, the report;
* ``experiment``: running searches and evaluations on Ray;
* ``cli``.
"""

from autopeft_ray.exceptions import (
    AutoPeftError,
    ConfigurationError,
    ModelLoadError,
    SearchSpaceError,
    TaskError,
    UnsupportedError,
)
from autopeft_ray.space import PeftConfiguration, SearchSpace

__version__ = "0.1.0"

__all__ = [
    "AutoPeftError",
    "ConfigurationError",
    "ModelLoadError",
    "PeftConfiguration",
    "SearchSpace",
    "SearchSpaceError",
    "TaskError",
    "UnsupportedError",
]
