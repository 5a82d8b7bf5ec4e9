"""The Ray Tune trainable: train one PEFT configuration and report both objectives.

Works with ``Tuner(peft_trainable, ...)`` and ``tune.run(peft_trainable, ...)``.
The trial config holds the configuration (or a preset); the fixed
``TrainingSettings`` are bound with ``tune.with_parameters`` or sit in the
config (see ``autopeft_ray.config.settings``). After each of the
settings' ``num_evaluations`` dev evaluations the trial reports (score, best
score, every task metric, parameter fraction, fidelity in optimiser steps,
throughput, peak memory) with a checkpoint, so a trial paused by a scheduler or retried
after a failure resumes from its last report, not from zero.

A trial prints two library lines that say nothing to the user of a search:
transformers' "Some weights of ... are newly initialized ... You should probably
TRAIN this model" (the task head is new by design, and it always trains) and
Ray's "Checkpoint successfully created at: ..." after every report.
``autopeft-ray search`` keeps all trial output off its terminal
(``ray.init(log_to_driver=False)``); a ``Tuner`` of your own shows the trials'
output, so the trainable drops these two lines itself (:func:`quiet_trial_logs`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from autopeft_ray.config import TRIAL_SETTINGS_KEY, TrainingSettings
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.tasks import prepare_data
from autopeft_ray.validation import check_trial_resources

from .device import granted_resources, reset_peak_memory, share_gpu
from .loop import TrainingRun, configuration_from_trial

Report = Callable[[dict[str, Any], str], None]

#: Logger -> the text of the one line :func:`quiet_trial_logs` drops from it.
QUIETED_LINES = {
    "transformers.modeling_utils": "newly initialized",
    "ray.train._internal.storage": "Checkpoint successfully created",
    "ray.train.v2._internal.execution.storage": "Checkpoint successfully created",
}


class _DropLine(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_trial_logs() -> None:
    """Drop the library lines of :data:`QUIETED_LINES` from this process's logs.

    Every other message of those loggers still shows; nothing is dropped when
    ``autopeft_ray`` logs at DEBUG. Safe to call more than once.
    """
    if logging.getLogger("autopeft_ray").isEnabledFor(logging.DEBUG):
        return
    for name, text in QUIETED_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLine) and f.text == text for f in logger.filters):
            logger.addFilter(_DropLine(text))


def trial_settings(
    config: dict[str, Any], settings: TrainingSettings | Mapping[str, Any] | None = None
) -> TrainingSettings:
    """The settings of a trial: ``config[TRIAL_SETTINGS_KEY]`` if present, else ``settings``."""
    if TRIAL_SETTINGS_KEY in config:
        return TrainingSettings.from_dict(config[TRIAL_SETTINGS_KEY])
    if isinstance(settings, TrainingSettings):
        return settings
    if isinstance(settings, Mapping):
        return TrainingSettings.from_dict(settings)
    raise ConfigurationError(
        f"The trial has no TrainingSettings: bind them with "
        f"tune.with_parameters(peft_trainable, settings=TrainingSettings(...)) or "
        f"with_resources(cpus, gpus, settings=...), or put them in the trial config with "
        f"autopeft_ray.config.trial_config(configuration, settings) or the searcher's "
        f"fixed_config={{{TRIAL_SETTINGS_KEY!r}: settings.to_dict()}}. Got settings={settings!r}."
    )


def run_training(
    config: dict[str, Any],
    report: Report,
    *,
    settings: TrainingSettings | Mapping[str, Any] | None = None,
    restore_from: str | Path | None = None,
    device: torch.device | None = None,
) -> TrainingRun:
    """Train the trial config's configuration, calling ``report(result, checkpoint_dir)``.

    This is the trainable without Ray: ``report`` receives the result dict and a
    folder holding a checkpoint that lives until ``report`` returns. ``settings``
    applies when the config holds none (see :func:`trial_settings`).
    """
    started = time.perf_counter()
    quiet_trial_logs()
    settings = trial_settings(config, settings)
    configuration = configuration_from_trial(config)
    granted = granted_resources()
    torch.set_num_threads(granted.threads)
    device = device or granted.device
    # Before the model is built: a shared GPU's memory is capped from the first allocation.
    memory_share = share_gpu(device, granted.gpus)
    reset_peak_memory(device)  # a reused worker process reports this trial's peak only
    run = TrainingRun(settings, configuration, prepare_data(settings), device)
    if restore_from is not None:
        run.load(restore_from)
    ready = time.perf_counter() - started
    steps = settings.evaluation_steps(run.total_steps)
    for step in steps:
        if step <= run.step:
            continue
        run.train_until(step)
        result = run.result(run.evaluate("validation"))
        if step == steps[-1] and settings.evaluate_test:
            result.update({f"test_{k}": v for k, v in run.evaluate("test").items()})
        result["seconds_to_first_step"] = ready
        result["threads"] = granted.threads
        result["device"] = str(run.device)
        if memory_share is not None:
            result["gpu_memory_fraction"] = memory_share
        with tempfile.TemporaryDirectory(prefix="autopeft_ckpt_") as folder:
            run.save(folder)
            report(result, folder)
    return run


def peft_trainable(
    config: dict[str, Any], settings: TrainingSettings | Mapping[str, Any] | None = None
) -> None:
    """Ray Tune function trainable (``Tuner(peft_trainable, ...)``, ``tune.run``).

    Bind the settings with ``tune.with_parameters(peft_trainable, settings=...)``,
    or put them in each trial config (see :func:`trial_settings`).
    """
    import ray
    from ray import tune

    def report(result: dict[str, Any], folder: str) -> None:
        # Tune adds node_ip, which all nodes of one host share: the node id tells them apart.
        result["node_id"] = ray.get_runtime_context().get_node_id()
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_training(config, report, settings=settings)
        return
    with checkpoint.as_directory() as folder:
        run_training(config, report, settings=settings, restore_from=folder)


def with_resources(
    cpus: float = 1, gpus: float = 0, settings: TrainingSettings | None = None
) -> Any:
    """``peft_trainable`` asking Ray for ``cpus`` CPUs and ``gpus`` (possibly fractional) GPUs.

    With ``settings``, they are bound to every trial (``tune.with_parameters``),
    so trial configs hold only the configuration.
    """
    from ray import tune

    check_trial_resources(cpus, gpus)
    if settings is not None and not isinstance(settings, TrainingSettings):
        raise ConfigurationError(
            f"`settings` should be a TrainingSettings, got {type(settings).__name__}."
        )

    # tune.with_resources sets an attribute on the function it is given: wrap a fresh one
    # so that the module-level peft_trainable stays free of resource requests.
    def peft_trainable_with_resources(
        config: dict[str, Any], settings: TrainingSettings | None = None
    ) -> None:
        peft_trainable(config, settings)

    trainable: Any = peft_trainable_with_resources
    if settings is not None:
        trainable = tune.with_parameters(trainable, settings=settings)
    return tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus})
