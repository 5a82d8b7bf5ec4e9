"""autopeft-ray: Pareto-optimal PEFT configurations with Ray Tune (AutoPEFT)."""

from autopeft_ray.exceptions import (
    AutoPeftError,
    ConfigurationError,
    ModelLoadError,
    SearchSpaceError,
    TaskError,
    UnsupportedError,
)
from autopeft_ray.space import PeftConfiguration, SearchSpace

__version__ = "0.1.0"

__all__ = [
    "AutoPeftError",
    "ConfigurationError",
    "ModelLoadError",
    "PeftConfiguration",
    "SearchSpace",
    "SearchSpaceError",
    "TaskError",
    "UnsupportedError",
]
