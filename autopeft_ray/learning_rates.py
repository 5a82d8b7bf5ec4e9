"""Learning rates per parameter group: which rate each trained parameter gets.

A trained parameter belongs to one group:

* ``head``: the task head (pooler and classifier), trained in every configuration;
* ``sa``: serial bottleneck adapters; ``pa``: parallel bottleneck adapters;
* ``pt``: prefix tuning (its reparametrisation MLP and gates);
* ``lora``: LoRA modules (presets ``lora``, ``unipelt``);
* ``base``: base-model weights (full fine-tuning).

A policy gives each group its rate. ``paper`` is the AutoPEFT paper's: 1e-4
for every PEFT module and the head, 2e-5 for full fine-tuning, which works at
its fidelity (epochs of training on GPUs). ``short`` is calibrated on this
project's CPU fidelity (64-256 optimiser steps of 16 examples, MiniLM-L6,
Rotten Tomatoes; BENCHMARKS.md, "Learning-rate calibration"): at 1e-4 nothing
learns in 64 steps, while one rate high enough for serial adapters and the
head (3e-3) made parallel adapters and prefixes collapse to the majority class.

``TrainingSettings.learning_rate`` sets one rate for every group instead, and
``TrainingSettings.module_learning_rates`` overrides single groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopeft_ray.exceptions import invalid_value

HEAD, SERIAL, PARALLEL, PREFIX, LORA, BASE = "head", "sa", "pa", "pt", "lora", "base"
GROUPS: tuple[str, ...] = (HEAD, SERIAL, PARALLEL, PREFIX, LORA, BASE)

#: Per policy, the rates of PEFT training (``peft``) and of full fine-tuning (``full``).
POLICIES: dict[str, dict[str, dict[str, float]]] = {
    "paper": {
        "peft": {HEAD: 1e-4, SERIAL: 1e-4, PARALLEL: 1e-4, PREFIX: 1e-4, LORA: 1e-4},
        "full": {HEAD: 2e-5, BASE: 2e-5},
    },
    "short": {
        "peft": {HEAD: 3e-3, SERIAL: 3e-3, PARALLEL: 3e-4, PREFIX: 1e-3, LORA: 3e-3},
        "full": {HEAD: 3e-3, BASE: 1e-4},
    },
}
POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)


def check_rate(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise invalid_value(field, value, expected="a number in (0, 1)")


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
        check_rate(f"module_learning_rates[{group!r}]", rate)


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


def parameter_groups(model: Any, head: Any) -> dict[str, list[Any]]:
    """Trained parameters of an ``adapters`` model by group (empty groups left out).

    Args:
        model: a model prepared with ``adapters.init``.
        head: the task head's parameters (``builder.task_head_parameters``).
    """
    from adapters.methods.lora import LoRA
    from adapters.methods.modeling import Adapter, ParallelAdapter
    from adapters.methods.prefix_tuning import PrefixTuningLayer, PrefixTuningPool

    group_of = {id(p): HEAD for p in head}
    for module in model.modules():
        if isinstance(module, ParallelAdapter):
            group = PARALLEL
        elif isinstance(module, Adapter):
            group = SERIAL
        elif isinstance(module, (PrefixTuningPool, PrefixTuningLayer)):
            group = PREFIX
        elif isinstance(module, LoRA):
            group = LORA
        else:
            continue
        for p in module.parameters():
            group_of.setdefault(id(p), group)
    groups: dict[str, list[Any]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(group_of.get(id(p), BASE), []).append(p)
    return groups
