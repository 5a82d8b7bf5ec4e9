"""Configuration -> model: loading, the adapter setup, building, presets, saving.

* :mod:`.setup`: what to add to a plain ``adapters`` model (JSON-ready);
* :mod:`.build`: :func:`build_peft_model`, the task head and parameter counts;
* :mod:`.composition`: serial + parallel bottlenecks at one site, done right;
* :mod:`.presets`: the paper's baselines by name;
* :mod:`.groups`: trained parameters by learning-rate group;
* :mod:`.saving`: save and load what was trained.
"""

from .build import (
    BuiltModel,
    build_peft_model,
    deployable_params,
    is_causal_lm,
    task_head_parameters,
)
from .groups import parameter_groups
from .presets import BASELINE_NAMES, HEAD_ONLY_BASELINE, PRESET_NAMES, PRESETS, baseline, get_preset
from .saving import HEAD_FILE, SETUP_FILE, load_adapters, save_adapters
from .setup import (
    FULL,
    HEAD_ONLY,
    LORA,
    PA,
    PARALLEL_THEN_SERIAL,
    PT,
    SA,
    STACK,
    STACK_ORDER,
    adapter_setup_dict,
)

__all__ = [
    "BASELINE_NAMES",
    "FULL",
    "HEAD_FILE",
    "HEAD_ONLY",
    "HEAD_ONLY_BASELINE",
    "LORA",
    "PA",
    "PARALLEL_THEN_SERIAL",
    "PRESETS",
    "PRESET_NAMES",
    "PT",
    "SA",
    "SETUP_FILE",
    "STACK",
    "STACK_ORDER",
    "BuiltModel",
    "adapter_setup_dict",
    "baseline",
    "build_peft_model",
    "deployable_params",
    "get_preset",
    "is_causal_lm",
    "load_adapters",
    "parameter_groups",
    "save_adapters",
    "task_head_parameters",
]
