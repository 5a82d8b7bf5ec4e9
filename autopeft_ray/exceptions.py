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


class RunFolderError(ConfigurationError):
    """A run folder's files are missing or damaged."""


class UnsupportedError(AutoPeftError, NotImplementedError):
    """A combination the libraries underneath cannot do."""


class TrialFailedError(AutoPeftError, RuntimeError):
    """A trial failed for a reason worth reporting (NaN loss, out of memory)."""


class SearchInterrupted(AutoPeftError):
    """A search stopped before its budget (Ctrl-C); its run folder can be resumed."""


class SearchFailed(AutoPeftError):
    """Every trial of a search failed: nothing was measured."""


#: Longest value an error message shows (a 5 MB CSV cell must not be echoed whole).
SHOWN_CHARACTERS = 80


def shorten(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


def show_values(values: Iterable[Any], limit: int = 20) -> str:
    """At most ``limit`` values, each cut short, and how many there were in all."""
    values = list(values)
    shown = ", ".join(shorten(repr(v)) for v in values[:limit])
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
    got = shorten(repr(value))
    if valid is not None:
        message = f"`{field}` should be one of {show_values(valid)}, got {got}."
    elif expected is not None:
        message = f"`{field}` should be {expected}, got {got}."
    else:
        message = f"`{field}` is invalid: got {got}."
    if fix:
        message += f" {fix}"
    return cls(message)
