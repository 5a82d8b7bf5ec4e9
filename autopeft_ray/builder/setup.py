"""What to add to a plain ``adapters`` model to get a configuration: the adapter setup.

In each layer whose bit is on: ``"sa"``, a serial bottleneck adapter after the
FFN (``SeqBnConfig``, Pfeiffer placement, output site only) of size D_SA;
``"pa"``, a parallel bottleneck beside the FFN (``ParBnConfig``, output site)
of size D_PA; ``"pt"``, prefix tuning on the attention keys and values
(``PrefixTuningConfig``) of length L_PT; ``"lora"``, LoRA of rank R_LoRA on
the attention query and value (``LoRAConfig`` with ``alpha = r``: its update is
scaled by 1 at every rank, as in the ``lora`` preset, r = alpha = 8). They are
activated as ``Stack("pa", "sa", "pt", "lora")``: each layer applies the
adapters it holds, and LoRA and prefixes sit at sites of their own. When both
bottlenecks are present the stock ``Stack`` computes the wrong function at the
FFN site and :mod:`.composition` is installed. A decoder holding a prefix
runs eager attention (:func:`use_eager_attention`).
The setup is a JSON-ready dict, so a user can rebuild the model without this
project.
"""

from __future__ import annotations

from typing import Any

from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.space import PeftConfiguration
from autopeft_ray.space.support import (
    PREFIX_NEEDS_EAGER_ATTENTION,
    adapter_config,
)

from .presets import PRESET_NAMES, get_preset

#: Adapter names, in the order they are stacked (parallel branches first).
SA, PA, PT, LORA = "sa", "pa", "pt", "lora"
STACK_ORDER = (PA, SA, PT, LORA)
#: ``composition`` values of :func:`adapter_setup_dict`.
STACK, PARALLEL_THEN_SERIAL, HEAD_ONLY, FULL = "stack", "parallel_then_serial", "head_only", "full"


def adapter_setup_dict(
    configuration: PeftConfiguration | str, *, hidden_size: int | None = None
) -> dict[str, Any]:
    """What to add to a plain ``adapters`` model to get this configuration.

    Args:
        configuration: a ``PeftConfiguration`` or a preset name.
        hidden_size: the model width; needed when a bottleneck size is set
            (``adapters`` takes ``reduction_factor = hidden_size / D``).

    Returns:
        A JSON-ready dict: ``adapters`` (name -> ``adapters`` config dict, pass
        each to ``model.add_adapter(name, config=...)``), ``active`` (names to
        activate as ``Stack(*active)``), ``composition`` (``"stack"``;
        ``"parallel_then_serial"``: also call
        :func:`autopeft_ray.builder.composition.enable_parallel_then_serial`;
        ``"head_only"``; ``"full"``: no module, every weight trains) and
        ``configuration``.
    """
    if isinstance(configuration, str):
        preset = get_preset(configuration)
        if preset.is_full:
            return _setup({}, FULL, configuration)
        return _setup({preset.name: preset.adapter_config().to_dict()}, STACK, configuration)
    if not isinstance(configuration, PeftConfiguration):
        raise bad_configuration(configuration)
    described = configuration.to_dict()
    if configuration.is_degenerate:
        return _setup({}, HEAD_ONLY, described)
    off = [i for i, on in enumerate(configuration.layers) if not on]
    configs = {
        name: adapter_config(
            name, configuration.size(name), hidden_size=hidden_size, leave_out=off
        ).to_dict()
        for name in STACK_ORDER
        if configuration.size(name)
    }
    composition = PARALLEL_THEN_SERIAL if SA in configs and PA in configs else STACK
    return _setup(configs, composition, described)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _setup(configs: dict[str, Any], composition: str, configuration: Any) -> dict[str, Any]:
    return {
        "configuration": configuration,
        "adapters": configs,
        "active": list(configs),
        "composition": composition,
    }


def has_prefix(setup: dict[str, Any]) -> bool:
    """True when an adapter of ``setup`` holds prefix tuning (alone or in a union, as in ``mam``)."""

    def prefix(config: Any) -> bool:
        if isinstance(config, dict):
            return config.get("architecture") == "prefix_tuning" or any(
                prefix(v) for v in config.values()
            )
        if isinstance(config, list):
            return any(prefix(v) for v in config)
        return False

    return any(prefix(config) for config in setup["adapters"].values())


def use_eager_attention(model: Any, setup: dict[str, Any]) -> bool:
    """Switch a decoder to eager attention when ``setup`` holds a prefix; True if switched.

    Prefix tuning on GPT-2, Llama and Mistral computes the wrong attention under
    SDPA (:mod:`autopeft_ray.space.support`). Call it before the adapters are added.
    """
    family = str(getattr(model.config, "model_type", ""))
    if not has_prefix(setup) or family not in PREFIX_NEEDS_EAGER_ATTENTION:
        return False
    model.set_attn_implementation("eager")
    return True


def active_stack(setup: dict[str, Any]) -> Any:
    if not setup["active"]:
        return None
    from adapters.composition import Stack

    return Stack(*setup["active"])


def bad_configuration(value: Any) -> ConfigurationError:
    return invalid_value(
        "configuration",
        value,
        expected=f"a PeftConfiguration or a preset name ({', '.join(PRESET_NAMES)})",
    )
