"""The paper's baselines as named presets (arXiv 2301.12132, Table 1).

Each preset is one ``adapters`` configuration with that library's defaults
(which follow the method's paper), applied to every layer, and the learning
rate the AutoPEFT paper uses for it: 1e-4 for PEFT methods, 2e-5 for full
fine-tuning. ``build_peft_model(model, "lora", ...)`` builds them the same way
as searched configurations, so their parameter fractions are counted by the
same rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.space import PeftConfiguration

#: Learning rate for PEFT modules (searched configurations and PEFT presets).
PEFT_LEARNING_RATE = 1e-4
#: Learning rate for full fine-tuning.
FULL_LEARNING_RATE = 2e-5


@dataclass(frozen=True)
class Preset:
    """A named baseline.

    Attributes:
        name: the name users pass instead of a configuration.
        description: the method and its source.
        learning_rate: the default learning rate.
        config_name: the ``adapters`` configuration class, or ``None`` for full
            fine-tuning (no module added; everything trains).
    """

    name: str
    description: str
    learning_rate: float
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
        Preset("full", "Full fine-tuning: every weight trains.", FULL_LEARNING_RATE, None),
        Preset(
            "serial",
            "Serial adapter after the FFN, Pfeiffer et al. 2020 (SeqBnConfig defaults).",
            PEFT_LEARNING_RATE,
            "SeqBnConfig",
        ),
        Preset(
            "parallel",
            "Parallel adapter beside the FFN, He et al. 2022 (ParBnConfig defaults).",
            PEFT_LEARNING_RATE,
            "ParBnConfig",
        ),
        Preset(
            "prefix",
            "Prefix tuning, Li & Liang 2021 (PrefixTuningConfig defaults).",
            PEFT_LEARNING_RATE,
            "PrefixTuningConfig",
        ),
        Preset(
            "lora",
            "LoRA on attention query/value, Hu et al. 2022 (LoRAConfig defaults).",
            PEFT_LEARNING_RATE,
            "LoRAConfig",
        ),
        Preset(
            "mam",
            "Mix-and-match adapter (prefix + parallel), He et al. 2022 (MAMConfig).",
            PEFT_LEARNING_RATE,
            "MAMConfig",
        ),
        Preset(
            "unipelt",
            "Gated prefix + serial adapter + LoRA, Mao et al. 2022 (UniPELTConfig).",
            PEFT_LEARNING_RATE,
            "UniPELTConfig",
        ),
    )
}

PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


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


def default_learning_rate(configuration_or_preset: PeftConfiguration | str) -> float:
    """The paper's learning rate: 1e-4 for PEFT (searched or preset), 2e-5 for full fine-tuning."""
    if isinstance(configuration_or_preset, PeftConfiguration):
        return PEFT_LEARNING_RATE
    if isinstance(configuration_or_preset, str):
        return get_preset(configuration_or_preset).learning_rate
    raise invalid_value(
        "configuration",
        configuration_or_preset,
        expected=f"a PeftConfiguration or a preset name ({', '.join(PRESET_NAMES)})",
        cls=ConfigurationError,
    )
