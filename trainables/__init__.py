"""Ray Tune trainables for AutoPEFT (installed as ``autopeft_ray.trainables``)."""

from .loop import TrainingRun, configuration_from_trial
from .peft_trainable import (
    granted_resources,
    peft_trainable,
    run_training,
    trial_settings,
    with_resources,
)

__all__ = [
    "TrainingRun",
    "configuration_from_trial",
    "granted_resources",
    "peft_trainable",
    "run_training",
    "trial_settings",
    "with_resources",
]
