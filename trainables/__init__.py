"""Ray Tune trainables for AutoPEFT (installed as ``autopeft_ray.trainables``)."""

from .device import Granted, Precision, granted_resources
from .loop import TrainingRun, configuration_from_trial
from .peft_trainable import (
    peft_trainable,
    quiet_trial_logs,
    run_training,
    trial_settings,
    with_resources,
)

__all__ = [
    "Granted",
    "Precision",
    "TrainingRun",
    "configuration_from_trial",
    "granted_resources",
    "peft_trainable",
    "quiet_trial_logs",
    "run_training",
    "trial_settings",
    "with_resources",
]
