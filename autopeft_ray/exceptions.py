"""The project's exception hierarchy.

Every error raised on user input names the field, the value that came and what
to do instead, and is raised before any training starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class AutoPeftError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(AutoPeftError, ValueError):
    """A user-supplied value (argument, configuration field, file) is invalid."""


class SearchSpaceError(ConfigurationError):
    """A configuration does not belong to the search space."""


class TaskError(ConfigurationError):
    """A task name, data file or column is invalid."""


class ModelLoadError(ConfigurationError):
    """A model checkpoint could not be found or loaded."""


class UnsupportedError(AutoPeftError, NotImplementedError):
    """A combination the libraries underneath cannot do."""


class TrialFailedError(AutoPeftError, RuntimeError):
    """A trial failed for a reason worth reporting (NaN loss, out of memory)."""


class SearchInterrupted(AutoPeftError):
    """A search stopped before its budget (Ctrl-C); its run folder can be resumed."""


def _show(values: Iterable[Any], limit: int = 20) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", ... ({len(values)} in all)"
    return shown


def invalid_value(
    field: str,
    value: Any,
    *,
    valid: Iterable[Any] | None = None,
    expected: str | None = None,
    fix: str | None = None,
    cls: type[ConfigurationError] = ConfigurationError,
) -> ConfigurationError:
    """Build an error that names the field, the value and the way out.

    Example:
        >>> raise invalid_value("task", "rtee", valid=["rte", "mrpc"])
        ConfigurationError: `task` should be one of 'rte', 'mrpc', got 'rtee'.
    """
    if valid is not None:
        message = f"`{field}` should be one of {_show(valid)}, got {value!r}."
    elif expected is not None:
        message = f"`{field}` should be {expected}, got {value!r}."
    else:
        message = f"`{field}` is invalid: got {value!r}."
    if fix:
        message += f" {fix}"
    return cls(message)
