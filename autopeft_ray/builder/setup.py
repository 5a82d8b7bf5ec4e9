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
FFN site and :mod:`.composition` is installed.
The setup is a JSON-ready dict, so a user can rebuild the model without this
project.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from autopeft_ray.exceptions import ConfigurationError, SearchSpaceError, invalid_value
from autopeft_ray.space import PeftConfiguration

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
    import adapters

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
    needs_width = configuration.sa_size or configuration.pa_size
    if needs_width and not (is_int(hidden_size) and int(hidden_size or 0) >= 1):
        raise invalid_value(
            "hidden_size",
            hidden_size,
            expected="the model's hidden size (a positive integer)",
            fix="Bottleneck sizes are set through reduction_factor = hidden_size / size.",
        )
    width = int(hidden_size or 0)
    configs: dict[str, Any] = {}
    if configuration.pa_size:
        configs[PA] = adapters.ParBnConfig(
            reduction_factor=_reduction(width, configuration.pa_size, "pa_size"), leave_out=off
        )
    if configuration.sa_size:
        configs[SA] = adapters.SeqBnConfig(
            reduction_factor=_reduction(width, configuration.sa_size, "sa_size"), leave_out=off
        )
    if configuration.pt_length:
        configs[PT] = adapters.PrefixTuningConfig(
            prefix_length=configuration.pt_length, leave_out=off
        )
    if configuration.lora_rank:
        configs[LORA] = adapters.LoRAConfig(
            r=configuration.lora_rank, alpha=configuration.lora_rank, leave_out=off
        )
    composition = PARALLEL_THEN_SERIAL if SA in configs and PA in configs else STACK
    return _setup({k: v.to_dict() for k, v in configs.items()}, composition, described)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reduction(width: int, size: int, field: str) -> float:
    """``adapters``' reduction factor for a bottleneck of exactly ``size`` units."""
    factor = width / size
    if int(width // factor) != size:  # adapters builds int(hidden_size // factor) units
        raise invalid_value(
            field,
            size,
            expected=f"a size adapters can build exactly on hidden size {width}",
            fix="Use 0 or a power of two up to the hidden size.",
            cls=SearchSpaceError,
        )
    return factor


def _setup(configs: dict[str, Any], composition: str, configuration: Any) -> dict[str, Any]:
    return {
        "configuration": configuration,
        "adapters": configs,
        "active": list(configs),
        "composition": composition,
    }


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


class _DropActivationWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "none are activated" not in record.getMessage()


@contextlib.contextmanager
def quiet_activation_warning() -> Iterator[None]:
    # adapters warns "adapters available but none are activated" from inside
    # set_active_adapters itself (reset_adapter runs a ForwardContext before the
    # setup is stored): misleading while building, so it is dropped there only.
    logger = logging.getLogger("adapters.model_mixin")
    drop = _DropActivationWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
