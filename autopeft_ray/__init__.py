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

import os as _os


def _checkout_path() -> list[str] | None:
    """This package's import path when it lies in a source checkout, else ``None``.

    A checkout keeps ``searchers/`` and ``trainables/`` beside this folder; installed,
    they are ``autopeft_ray.searchers`` and ``.trainables``. The editable install is
    a tree of links to the checkout's files (``editable_mode=strict``: a static path
    that mypy reads, unlike setuptools' import hook); it lacks files added since,
    and a checkout on ``sys.path`` (``python -m pytest`` in it) shadows it without
    the two folders. Here both import every module from the checkout itself.
    """
    here = _os.path.dirname(_os.path.realpath(__file__))
    root = _os.path.dirname(here)
    markers = ("pyproject.toml", "searchers/__init__.py", "trainables/__init__.py")
    if all(_os.path.isfile(_os.path.join(root, marker)) for marker in markers):
        return [here, root]
    return None


_checkout = _checkout_path()
if _checkout is not None:
    __path__[:] = _checkout

from autopeft_ray.exceptions import (  # noqa: E402
    AutoPeftError,
    ConfigurationError,
    ModelLoadError,
    SearchSpaceError,
    TaskError,
    UnsupportedError,
)
from autopeft_ray.space import PeftConfiguration, SearchSpace  # noqa: E402

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
