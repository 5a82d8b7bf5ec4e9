"""Settings of a trial and options of a search: defaults and help on the fields.

* :mod:`.settings`: :class:`TrainingSettings` (how one configuration trains)
  and the trial config that carries a configuration to a trainable;
* :mod:`.options`: :class:`SearchOptions` (what a search takes) and the names
  of searchers, schedulers and surrogates;
* :mod:`.learning_rates`: learning-rate policies per parameter group;
* :mod:`.fields`: how the CLI is built from the fields.
"""

from .learning_rates import POLICIES, POLICY_NAMES, group_rates
from .options import (
    PAPER_NUTS,
    RESOURCE_FIELDS,
    SCHEDULERS,
    SEARCHERS,
    SURROGATES,
    SearchOptions,
    check_searcher_flags,
    initial_design_size,
)
from .settings import (
    PRECISIONS,
    PRESET_KEY,
    TRIAL_SETTINGS_KEY,
    TrainingSettings,
    trial_config,
    trial_config_dict,
)

__all__ = [
    "POLICIES",
    "POLICY_NAMES",
    "PRECISIONS",
    "PRESET_KEY",
    "RESOURCE_FIELDS",
    "SCHEDULERS",
    "SEARCHERS",
    "PAPER_NUTS",
    "SURROGATES",
    "check_searcher_flags",
    "TRIAL_SETTINGS_KEY",
    "SearchOptions",
    "TrainingSettings",
    "group_rates",
    "initial_design_size",
    "trial_config",
    "trial_config_dict",
]
