"""Tasks: the registry, data loading, metrics, the tokenisation cache, trial data.

Importing this package is cheap: ``datasets`` and ``transformers`` are imported
only by the functions that need them.
"""

from autopeft_ray.models import load_tokenizer
from autopeft_ray.tasks.custom import is_task_name, task_from_data
from autopeft_ray.tasks.files import resolve_data_files
from autopeft_ray.tasks.loading import load_task
from autopeft_ray.tasks.metrics import compute_metrics
from autopeft_ray.tasks.prepare import DataSettings, PreparedData, prepare_data
from autopeft_ray.tasks.registry import (
    DEFAULT_TASK,
    FAST_TASK,
    GLUE_TASKS,
    OFFLINE_TASKS,
    SUPERGLUE_TASKS,
    TASKS,
    TaskSpec,
    get_task,
    shared_source,
)
from autopeft_ray.tasks.tokenization import (
    default_cache_dir,
    tokenize_task,
    tokenized_cache_path,
    training_subset,
)

__all__ = [
    "DEFAULT_TASK",
    "DataSettings",
    "FAST_TASK",
    "GLUE_TASKS",
    "OFFLINE_TASKS",
    "PreparedData",
    "SUPERGLUE_TASKS",
    "TASKS",
    "TaskSpec",
    "compute_metrics",
    "default_cache_dir",
    "get_task",
    "is_task_name",
    "load_task",
    "load_tokenizer",
    "prepare_data",
    "resolve_data_files",
    "shared_source",
    "task_from_data",
    "tokenize_task",
    "tokenized_cache_path",
    "training_subset",
]
