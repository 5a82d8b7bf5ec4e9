"""Harmless numerical warnings of a surrogate fit: counted, not printed per fit."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

logger = logging.getLogger(__name__)

#: Warnings that say the numerics coped, by category, message start, and what
#: the run's summary line calls them: jitter added to a covariance matrix;
#: every observed score equal (early in a tiny search), so the standardised
#: outcomes are all zero and their spread is 0, not 1.
HARMLESS_WARNINGS = (
    ("NumericalWarning", "A not p.d., added jitter", "jitter added to a covariance"),
    (
        "InputDataWarning",
        "Data (outcome observations) is not standardized (std = tensor([0.]",
        "every score fitted was the same",
    ),
)


def _harmless(warning: warnings.WarningMessage) -> str | None:
    """What the summary calls a known-harmless warning, else ``None``."""
    name, text = warning.category.__name__, str(warning.message)
    for category, start, called in HARMLESS_WARNINGS:
        if name == category and text.startswith(start):
            return called
    return None


@contextlib.contextmanager
def count_harmless_warnings(counts: dict[str, int]) -> Iterator[None]:
    """Count known-harmless numerical warnings in ``counts`` instead of printing them.

    GPyTorch adds jitter to a covariance that is not numerically positive
    definite and warns each time (half of all runs): it is counted (the run's
    ``RunLog`` prints one summary line of the searcher's counts) and logged at
    DEBUG. Every other warning is shown as usual.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        key = _harmless(warning)
        if key is None:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
            continue
        counts[key] = counts.get(key, 0) + 1
        logger.debug("%s: %s", warning.category.__name__, warning.message)
