"""The paper's baselines as named presets (arXiv 2301.12132, Table 1).

Each preset is one ``adapters`` configuration with that library's defaults
(which follow the method's paper), applied to every layer.
``build_peft_model(model, "lora", ...)`` builds them the same way as searched
configurations, so their parameter fractions are counted by the same rule, and
they train with the same task head and learning-rate policy
(:mod:`autopeft_ray.config.learning_rates`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.space import PeftConfiguration


@dataclass(frozen=True)
class Preset:
    """A named baseline.

    Attributes:
        name: the name users pass instead of a configuration.
        description: the method and its source.
        config_name: the ``adapters`` configuration class, or ``None`` for full
            fine-tuning (no module added; everything trains).
    """

    name: str
    description: str
    config_name: str | None

    def adapter_config(self) -> Any:
        """A fresh ``adapters`` configuration object (``None`` for full fine-tuning)."""
        if self.config_name is None:
            return None
        import adapters

        factory: Callable[[], Any] = getattr(adapters, self.config_name)
        return factory()

    @property
    def is_full(self) -> bool:
        return self.config_name is None


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("full", "Full fine-tuning: every weight trains.", None),
        Preset(
            "serial",
            "Serial adapter after the FFN, Pfeiffer et al. 2020 (SeqBnConfig defaults).",
            "SeqBnConfig",
        ),
        Preset(
            "parallel",
            "Parallel adapter beside the FFN, He et al. 2022 (ParBnConfig defaults).",
            "ParBnConfig",
        ),
        Preset(
            "prefix",
            "Prefix tuning, Li & Liang 2021 (PrefixTuningConfig defaults).",
            "PrefixTuningConfig",
        ),
        Preset(
            "lora",
            "LoRA on attention query/value, Hu et al. 2022 (LoRAConfig defaults).",
            "LoRAConfig",
        ),
        Preset(
            "mam",
            "Mix-and-match adapter (prefix + parallel), He et al. 2022 (MAMConfig).",
            "MAMConfig",
        ),
        Preset(
            "unipelt",
            "Gated prefix + serial adapter + LoRA, Mao et al. 2022 (UniPELTConfig).",
            "UniPELTConfig",
        ),
    )
}

PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)

#: The baseline in which no PEFT module is added and only the task head trains.
HEAD_ONLY_BASELINE = "head-only"
#: What a search can train beside its Pareto front, at its own fidelity (``--baseline``).
BASELINE_NAMES: tuple[str, ...] = (HEAD_ONLY_BASELINE, *PRESET_NAMES)


def baseline(name: str, num_layers: int) -> PeftConfiguration | str:
    """The configuration (head-only) or preset name of a baseline in ``BASELINE_NAMES``."""
    if name == HEAD_ONLY_BASELINE:
        return PeftConfiguration(0, 0, 0, (False,) * num_layers)
    if name not in PRESETS:
        raise invalid_value("baseline", name, valid=BASELINE_NAMES)
    return name


def get_preset(name: str) -> Preset:
    """The preset called ``name``; raises ``ConfigurationError`` naming the valid names."""
    if not isinstance(name, str) or name not in PRESETS:
        raise invalid_value(
            "configuration",
            name,
            valid=PRESET_NAMES,
            fix="Pass a preset name or a PeftConfiguration.",
        )
    return PRESETS[name]
