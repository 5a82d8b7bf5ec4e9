"""Fixed settings of a training trial, validated before Ray starts.

A Ray Tune trial config is the flat configuration dict of the search space
(``sa_size``, ``pa_size``, ``pt_length``, ``layer_0`` ...) or ``{"preset":
name}``. The trainable gets its ``TrainingSettings`` in one of two ways:

- bound once for all trials, ``tune.with_parameters(peft_trainable,
  settings=settings)`` (what ``with_resources(..., settings=settings)`` and
  ``autopeft-ray search`` do): Ray's progress output then shows only the
  configuration;
- per trial, under the config key ``TRIAL_SETTINGS_KEY`` holding
  ``TrainingSettings.to_dict()`` (:func:`trial_config`, or a searcher's
  ``fixed_config``), which wins over bound settings (``evaluate`` uses it
  for one seed per trial).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.learning_rates import check_rate, check_rates
from autopeft_ray.models import DEFAULT_MODEL

TRIAL_SETTINGS_KEY = "trial_settings"
PRESET_KEY = "preset"
DEFAULT_TASK = "rotten_tomatoes"


def _positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_value(name, value, expected="a positive integer")


@dataclass(frozen=True)
class TrainingSettings:
    """How one configuration is trained and evaluated.

    Attributes:
        model: hub name, local checkpoint, or ``"offline:minilm-l6"`` (default).
        task: task name from the registry (``autopeft_ray.tasks``).
        data_files: local files in the task's schema (split -> path, or a folder).
        learning_rate: one rate for every trained parameter; ``None`` (default)
            takes each group's rate from ``learning_rate_policy``.
        learning_rate_policy: ``paper`` (1e-4 for modules and head, 2e-5 for
            full fine-tuning: for epochs of training) or ``short`` (per-module
            rates calibrated for a few hundred CPU steps); see
            :mod:`autopeft_ray.learning_rates`.
        module_learning_rates: group (``head``, ``sa``, ``pa``, ``pt``,
            ``lora``, ``base``) -> rate, over the policy's.
        warmup_ratio: share of the steps with a linear warm-up (then linear decay).
        max_grad_norm: gradient-norm clipping (``None``: off), as HF ``Trainer``.
        batch_size, eval_batch_size, max_length: as usual; padding is dynamic.
        epochs, max_steps: the fidelity. ``max_steps`` wins when both are set.
        train_fraction, train_examples: train on a seeded subset (low fidelity).
        num_evaluations: dev evaluations (and reports, checkpoints) spread
            evenly over the budget; schedulers such as ASHA decide at these.
        max_eval_examples: cap on dev examples per evaluation (speed).
        evaluate_test: also score the test split at the end of training.
        seed: data order, initialisation and dropout.
    """

    model: str = DEFAULT_MODEL
    task: str = DEFAULT_TASK
    data_files: dict[str, str] | str | None = None
    learning_rate: float | None = None
    learning_rate_policy: str = "paper"
    module_learning_rates: dict[str, float] = field(default_factory=dict)
    batch_size: int = 32
    eval_batch_size: int = 64
    max_length: int = 128
    epochs: float | None = 1.0
    max_steps: int | None = None
    train_fraction: float = 1.0
    train_examples: int | None = None
    num_evaluations: int = 1
    max_eval_examples: int | None = None
    evaluate_test: bool = False
    warmup_ratio: float = 0.06
    max_grad_norm: float | None = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    cache_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise invalid_value("model", self.model, expected="a hub name or a local path")
        if not isinstance(self.task, str) or not self.task:
            raise invalid_value("task", self.task, expected="a task name")
        if self.learning_rate is not None:
            check_rate("learning_rate", self.learning_rate)
        check_rates(self.learning_rate_policy, self.module_learning_rates)
        for name in ("batch_size", "eval_batch_size", "max_length", "num_evaluations"):
            _positive_int(name, getattr(self, name))
        _positive_int("max_steps", self.max_steps, allow_none=True)
        _positive_int("train_examples", self.train_examples, allow_none=True)
        _positive_int("max_eval_examples", self.max_eval_examples, allow_none=True)
        if self.max_steps is None and self.epochs is None:
            raise invalid_value(
                "epochs", None, expected="a positive number", fix="Set `epochs` or `max_steps`."
            )
        if self.epochs is not None and not (
            isinstance(self.epochs, (int, float)) and self.epochs > 0 and math.isfinite(self.epochs)
        ):
            raise invalid_value("epochs", self.epochs, expected="a positive number")
        if not (isinstance(self.train_fraction, (int, float)) and 0 < self.train_fraction <= 1):
            raise invalid_value(
                "train_fraction", self.train_fraction, expected="a number in (0, 1]"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise invalid_value("warmup_ratio", self.warmup_ratio, expected="a number in [0, 1)")
        if self.max_grad_norm is not None and not (
            isinstance(self.max_grad_norm, (int, float)) and 0 < self.max_grad_norm < math.inf
        ):
            raise invalid_value(
                "max_grad_norm", self.max_grad_norm, expected="a positive number, or None"
            )
        if self.weight_decay < 0:
            raise invalid_value("weight_decay", self.weight_decay, expected="a number >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise invalid_value("seed", self.seed, expected="an integer")

    def replace(self, **changes: Any) -> TrainingSettings:
        data = self.to_dict()
        unknown = set(changes) - set(data)
        if unknown:
            raise invalid_value("setting", sorted(unknown)[0], valid=sorted(data))
        data.update(changes)
        return TrainingSettings.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise invalid_value(
                "training setting",
                sorted(unknown)[0],
                valid=sorted(known),
                fix="Check the spelling; unknown settings are not ignored.",
            )
        return cls(**dict(data))

    def total_steps(self, train_size: int) -> int:
        """Optimiser steps this budget means for a training set of ``train_size``."""
        if self.max_steps is not None:
            return self.max_steps
        assert self.epochs is not None  # guaranteed by __post_init__
        return max(1, math.ceil(self.epochs * math.ceil(train_size / self.batch_size)))

    def evaluation_steps(self, total_steps: int) -> list[int]:
        """Steps after which to evaluate, report and checkpoint (the last is ``total_steps``)."""
        n = min(self.num_evaluations, total_steps)
        return sorted({max(1, round(total_steps * (i + 1) / n)) for i in range(n)})


def check_trial_resources(
    cpus: float, gpus: float, *, cpus_field: str = "cpus", gpus_field: str = "gpus"
) -> None:
    """Raise unless ``cpus > 0`` and ``gpus`` is a fraction in [0, 1] or a whole number."""
    if not cpus > 0:
        raise invalid_value(cpus_field, cpus, expected="a number > 0")
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise invalid_value(gpus_field, gpus, expected="a fraction in [0, 1] or a whole number")


def trial_config(configuration: Any, settings: TrainingSettings) -> dict[str, Any]:
    """The Ray Tune trial config for a configuration (or preset name) and settings."""
    config = trial_config_dict(configuration)
    config[TRIAL_SETTINGS_KEY] = settings.to_dict()
    return config


def trial_config_dict(configuration: Any) -> dict[str, Any]:
    """The configuration part of a trial config: the configuration's dict or ``{"preset": name}``."""
    from autopeft_ray.space import PeftConfiguration

    if isinstance(configuration, PeftConfiguration):
        config: dict[str, Any] = configuration.to_dict()
    elif isinstance(configuration, str):
        config = {PRESET_KEY: configuration}
    else:
        raise ConfigurationError(
            f"`configuration` should be a PeftConfiguration or a preset name, "
            f"got {type(configuration).__name__}."
        )
    return config
