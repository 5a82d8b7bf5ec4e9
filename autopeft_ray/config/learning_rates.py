"""Learning rates per parameter group: which rate each trained parameter gets.

A trained parameter belongs to one group (:mod:`autopeft_ray.builder.groups`
says which): ``head`` (the task head), ``sa``, ``pa``, ``pt`` (the searched
modules), ``lora`` (presets ``lora``, ``unipelt``) or ``base`` (base-model
weights, full fine-tuning).

A policy gives each group its rate. ``paper`` is the AutoPEFT paper's: 1e-4
for every PEFT module and the head, 2e-5 for full fine-tuning, which works at
its fidelity (epochs of training on GPUs). ``short`` is calibrated on this
project's CPU fidelity (64-256 optimiser steps of 16 examples, MiniLM-L6,
Rotten Tomatoes; BENCHMARKS.md, "Learning-rate calibration"): at 1e-4 nothing
learns in 64 steps, while one rate high enough for serial adapters and the
head (3e-3) made parallel adapters and prefixes collapse to the majority class.
Its prefix rate is 3e-4, not the 1e-3 that scored best at 64 steps: at 256
steps 1e-3 made ``mam`` collapse (BENCHMARKS.md, "Fidelity").

``TrainingSettings.learning_rate`` sets one rate for every group instead, and
``TrainingSettings.module_learning_rates`` overrides single groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopeft_ray.builder.groups import BASE, GROUPS, HEAD, LORA, PARALLEL, PREFIX, SERIAL
from autopeft_ray.exceptions import invalid_value
from autopeft_ray.validation import check_number

#: Per policy, the rates of PEFT training (``peft``) and of full fine-tuning (``full``).
POLICIES: dict[str, dict[str, dict[str, float]]] = {
    "paper": {
        "peft": {HEAD: 1e-4, SERIAL: 1e-4, PARALLEL: 1e-4, PREFIX: 1e-4, LORA: 1e-4},
        "full": {HEAD: 2e-5, BASE: 2e-5},
    },
    "short": {
        "peft": {HEAD: 3e-3, SERIAL: 3e-3, PARALLEL: 3e-4, PREFIX: 3e-4, LORA: 3e-3},
        "full": {HEAD: 3e-3, BASE: 1e-4},
    },
}
POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)


def check_rates(policy: str, overrides: Mapping[str, Any]) -> None:
    """Raise on an unknown policy, an unknown group or a rate outside (0, 1)."""
    if policy not in POLICIES:
        raise invalid_value("learning_rate_policy", policy, valid=POLICY_NAMES)
    if not isinstance(overrides, Mapping):
        raise invalid_value(
            "module_learning_rates",
            overrides,
            expected=f"a mapping of {', '.join(GROUPS)} to rates",
        )
    for group, rate in overrides.items():
        if group not in GROUPS:
            raise invalid_value("module_learning_rates", group, valid=GROUPS)
        check_number(f"module_learning_rates[{group!r}]", rate, low=0, high=1)


def group_rates(
    policy: str,
    *,
    full: bool,
    single: float | None = None,
    overrides: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The rate of each group that trains: ``single`` for all, else the policy with ``overrides``.

    Args:
        policy: a name in ``POLICIES``.
        full: full fine-tuning (groups ``head`` and ``base``) rather than PEFT.
        single: one rate for every group (wins over the rest).
        overrides: group -> rate, over the policy's.
    """
    check_rates(policy, overrides or {})
    table = POLICIES[policy]["full" if full else "peft"]
    if single is not None:
        return dict.fromkeys(table, float(single))
    return {group: float((overrides or {}).get(group, rate)) for group, rate in table.items()}
