"""Ray Tune searchers for AutoPEFT (installed as ``autopeft_ray.searchers``).

* :class:`AutoPEFTSearcher`: SAAS GP + qLogNEHVI over (score, parameter fraction).
* :class:`RandomPEFTSearcher`: the paper's random-search baseline.
* :class:`FixedConfigurations`: a given list of trial configs (evaluate, transfer).

Both use only the core (``autopeft_ray.*``) and meet trainables through the
flat trial config and the metric names in :mod:`autopeft_ray.objectives`.
"""

from .autopeft import AutoPEFTSearcher
from .base import PeftSearcherBase
from .fixed import FixedConfigurations
from .random_search import RandomPEFTSearcher
from .records import COMPLETED, EARLY_STOPPED, FAILED, TrialRecord
from .surrogate import NutsSettings

__all__ = [
    "COMPLETED",
    "EARLY_STOPPED",
    "FAILED",
    "AutoPEFTSearcher",
    "FixedConfigurations",
    "NutsSettings",
    "PeftSearcherBase",
    "RandomPEFTSearcher",
    "TrialRecord",
]
