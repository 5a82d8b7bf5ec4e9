"""Trained parameters of a built model by learning-rate group.

* ``head``: the task head (pooler and classifier), trained in every configuration;
* ``sa``: serial bottleneck adapters; ``pa``: parallel bottleneck adapters;
* ``pt``: prefix tuning (its reparametrisation MLP and gates);
* ``lora``: LoRA modules (presets ``lora``, ``unipelt``);
* ``base``: base-model weights (full fine-tuning).

Their rates come from a policy of :mod:`autopeft_ray.config.learning_rates`.
"""

from __future__ import annotations

from typing import Any

HEAD, SERIAL, PARALLEL, PREFIX, LORA, BASE = "head", "sa", "pa", "pt", "lora", "base"
GROUPS: tuple[str, ...] = (HEAD, SERIAL, PARALLEL, PREFIX, LORA, BASE)


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
