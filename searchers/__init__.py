"""Ray Tune searchers for AutoPEFT (installed as ``autopeft_ray.searchers``).

* :class:`AutoPEFTSearcher`: SAAS GP + qLogNEHVI over (score, parameter fraction).
* :class:`AxPEFTSearcher`: the same search through Ax's ``Client`` (Ax-native option).
* :class:`RandomPEFTSearcher`: the paper's random-search baseline.
* :class:`FixedConfigurations`: a given list of trial configs (evaluate, transfer).

They import only the library layers of the core (``space``, ``objectives``,
``builder``, ``tasks``, ``config``) and meet trainables through the flat trial
config and the names in :mod:`autopeft_ray.objectives`; only
``autopeft_ray.experiment`` imports them (a test checks the direction).
"""

import logging as _logging
import os as _os

# XLA prints ERROR-level lines ("cpu_aot_loader.cc ... could lead to execution errors
# such as SIGILL") each time JAX loads a compiled NUTS program from its persistent
# cache: CPU features it compiled for that the host lacks, harmless here, and about
# 1,700 characters each. They alarm users; they are kept out of the terminal unless
# TF_CPP_MIN_LOG_LEVEL is set (0 shows everything) or autopeft_ray logs at DEBUG. This
# must run before jaxlib loads, which importing BoTorch's fully Bayesian models does.
if not _logging.getLogger("autopeft_ray").isEnabledFor(_logging.DEBUG):
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import importlib as _importlib
from typing import TYPE_CHECKING

# Each searcher is imported when first used (PEP 562): the random searcher and the
# fixed configurations of ``evaluate`` need neither Ax, JAX nor the surrogate's
# BoTorch models, which take seconds to import (BENCHMARKS.md, "Test suite time").
_MODULES = {
    "AutoPEFTSearcher": ".autopeft",
    "AxPEFTSearcher": ".axsearch",
    "FixedConfigurations": ".fixed",
    "NutsSettings": ".surrogate",
    "PeftSearcherBase": ".base",
    "RandomPEFTSearcher": ".random_search",
    "TrialRecord": ".records",
    "fit_relevance": ".relevance",
}

if TYPE_CHECKING:
    from .autopeft import AutoPEFTSearcher
    from .axsearch import AxPEFTSearcher
    from .base import PeftSearcherBase
    from .fixed import FixedConfigurations
    from .random_search import RandomPEFTSearcher
    from .records import TrialRecord
    from .relevance import fit_relevance
    from .surrogate import NutsSettings


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(_MODULES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULES))


__all__ = [
    "AutoPEFTSearcher",
    "AxPEFTSearcher",
    "FixedConfigurations",
    "NutsSettings",
    "PeftSearcherBase",
    "RandomPEFTSearcher",
    "TrialRecord",
    "fit_relevance",
]
