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

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from autopeft_ray.builder.groups import GROUPS
from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.models import DEFAULT_MODEL
from autopeft_ray.tasks.registry import DEFAULT_TASK, TaskSpec
from autopeft_ray.validation import check_int, check_number

from .fields import option
from .learning_rates import POLICY_NAMES, check_rates

TRIAL_SETTINGS_KEY = "trial_settings"
PRESET_KEY = "preset"
#: Mixed precision of training and evaluation; ``auto`` is bf16 on GPUs that support it,
#: else fp32 (resolved on the trial's device, ``autopeft_ray.trainables.device``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def parse_data_files(text: str) -> dict[str, str] | str:
    """``--data-files``: a folder or file path, or JSON ``{split: path}``."""
    if not text.lstrip().startswith("{"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid_value(
            "data_files", text[:80], expected="a folder, or JSON {split: path}"
        ) from exc
    if not isinstance(value, dict):
        raise invalid_value("data_files", text[:80], expected="a JSON object {split: path}")
    return value


def parse_group_rate(text: str) -> tuple[str, float]:
    """``--module-learning-rate GROUP=RATE``."""
    group, _, rate = text.partition("=")
    try:
        return group.strip(), float(rate)
    except ValueError:
        raise invalid_value(
            "module_learning_rates", text[:80], expected="GROUP=RATE, e.g. pa=3e-4"
        ) from None


@dataclass(frozen=True)
class TrainingSettings:
    """How one configuration is trained and evaluated (a trial's fixed settings).

    Each field's help says what it does; ``autopeft-ray --help`` shows the same
    text. The fidelity is ``epochs`` or ``max_steps`` (which wins) on the
    training set, or on a seeded subset (``train_fraction``,
    ``train_examples``). Learning rates come per parameter group from
    ``learning_rate_policy`` (see :mod:`autopeft_ray.config.learning_rates`)
    unless ``learning_rate`` sets one for all.
    """

    model: str = option(DEFAULT_MODEL, help="hub name, local checkpoint or the offline default")
    task: str | dict[str, Any] = option(
        DEFAULT_TASK,
        help="a registered task name, or your own data: a file or folder (csv, tsv, json, "
        "jsonl, parquet), a task-spec JSON file or a hub dataset name (see --text-columns)",
        parse=str,
    )
    data_files: dict[str, str] | str | None = option(
        None,
        help="folder, or JSON {split: path}, of local files in the task's schema",
        parse=parse_data_files,
    )
    learning_rate: float | None = option(
        None,
        help="one learning rate for every trained parameter (default: per group, from the policy)",
    )
    learning_rate_policy: str = option(
        "paper",
        help="per-group learning rates: paper (1e-4; 2e-5 full fine-tuning) or short "
        "(calibrated for a few hundred CPU steps)",
        choices=POLICY_NAMES,
    )
    module_learning_rates: dict[str, float] = option(
        default_factory=dict,
        help=f"one group's learning rate over the policy's ({', '.join(GROUPS)}); repeatable",
        flag="--module-learning-rate",
        metavar="GROUP=RATE",
        parse=parse_group_rate,
        append=True,
        combine=dict,
    )
    batch_size: int = option(32, help="training batch size")
    eval_batch_size: int = option(64, help="evaluation batch size")
    max_length: int = option(128, help="longest tokenised sequence (padding is dynamic)")
    epochs: float | None = option(1.0, help="fidelity in epochs (the paper's search fidelity: 1)")
    max_steps: int | None = option(None, help="fidelity in optimiser steps (wins over --epochs)")
    train_fraction: float = option(1.0, help="train on this seeded fraction of the training set")
    train_examples: int | None = option(None, help="train on this many seeded training examples")
    num_evaluations: int = option(
        1, help="dev evaluations (reports, checkpoints) per trial; schedulers decide at them"
    )
    max_eval_examples: int | None = option(None, help="score at most this many dev examples")
    evaluate_test: bool = option(
        False, help="also score the test split at the end of training", cli=False
    )
    warmup_ratio: float = option(0.06, help="share of the steps with a linear warm-up")
    max_grad_norm: float | None = option(
        1.0, help="clip the gradient norm to this (as HF Trainer); none: no clipping"
    )
    weight_decay: float = option(0.0, help="AdamW weight decay")
    precision: str = option(
        "auto",
        help="autocast of training and evaluation: fp32, bf16, or fp16 (with a gradient "
        "scaler); auto: bf16 on GPUs that support it, else fp32 (on a CPU without bf16 "
        "units, bf16 and fp16 run but are slower than fp32)",
        choices=PRECISIONS,
    )
    seed: int = option(0, help="data order, initialisation, dropout, and the searcher's draws")
    cache_dir: str | None = option(
        None, help="tokenisation cache folder (default: $AUTOPEFT_RAY_CACHE or ~/.cache)"
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise invalid_value("model", self.model, expected="a hub name or a local path")
        if isinstance(self.task, TaskSpec):
            object.__setattr__(self, "task", self.task.to_dict())
        elif isinstance(self.task, Mapping):  # a TaskSpec as a dict: checked, kept as JSON
            object.__setattr__(self, "task", TaskSpec.from_dict(self.task).to_dict())
        elif not isinstance(self.task, str) or not self.task:
            raise invalid_value("task", self.task, expected="a task name, a TaskSpec or its dict")
        check_number("learning_rate", self.learning_rate, low=0, high=1, allow_none=True)
        check_rates(self.learning_rate_policy, self.module_learning_rates)
        for name in ("batch_size", "eval_batch_size", "max_length", "num_evaluations"):
            check_int(name, getattr(self, name))
        for name in ("max_steps", "train_examples", "max_eval_examples"):
            check_int(name, getattr(self, name), allow_none=True)
        if self.max_steps is None and self.epochs is None:
            raise invalid_value(
                "epochs", None, expected="a positive number", fix="Set `epochs` or `max_steps`."
            )
        check_number("epochs", self.epochs, low=0, allow_none=True)
        check_number("train_fraction", self.train_fraction, low=0, high=1, high_open=False)
        check_number("warmup_ratio", self.warmup_ratio, low=0, high=1, low_open=False)
        check_number("max_grad_norm", self.max_grad_norm, low=0, allow_none=True)
        check_number("weight_decay", self.weight_decay, low=0, low_open=False)
        check_int("seed", self.seed, minimum=0)
        if self.precision not in PRECISIONS:
            raise invalid_value("precision", self.precision, valid=PRECISIONS)

    @property
    def task_name(self) -> str:
        """The task's name (a registered one, or your own data's)."""
        return self.task if isinstance(self.task, str) else str(self.task["name"])

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
