"""Ray Tune searchers for AutoPEFT (installed as ``autopeft_ray.searchers``).

* :class:`AutoPEFTSearcher`: SAAS GP + qLogNEHVI over (score, parameter fraction).
* :class:`RandomPEFTSearcher`: the paper's random-search baseline.
* :class:`FixedConfigurations`: a given list of trial configs (evaluate, transfer).

They import only the library layers of the core (``space``, ``objectives``,
``builder``, ``tasks``, ``config``) and meet trainables through the flat trial
config and the names in :mod:`autopeft_ray.objectives`; only
``autopeft_ray.experiment`` imports them (a test checks the direction).
"""

from .autopeft import AutoPEFTSearcher
from .base import PeftSearcherBase
from .fixed import FixedConfigurations
from .random_search import RandomPEFTSearcher
from .records import TrialRecord
from .surrogate import NutsSettings

__all__ = [
    "AutoPEFTSearcher",
    "FixedConfigurations",
    "NutsSettings",
    "PeftSearcherBase",
    "RandomPEFTSearcher",
    "TrialRecord",
]
