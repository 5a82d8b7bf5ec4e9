"""The one set of value checks: each raises naming the field, the value and the fix.

Every layer validates its arguments with these, so an integer, a rate, a
reference point or a resource request follows one rule everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from autopeft_ray.exceptions import invalid_value


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


#: The largest integer any option takes: what its consumers accept (NumPy seeds are
#: below 2^32, torch's random generators and step counters are 64-bit signed).
MAX_INT = 2**31 - 1


def check_int(
    name: str, value: Any, minimum: int = 1, *, allow_none: bool = False, maximum: int = MAX_INT
) -> Any:
    """Return ``value`` if it is an integer in ``[minimum, maximum]`` (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if not is_int(value) or not minimum <= value <= maximum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        expected += f" up to {maximum}"
        raise invalid_value(name, value, expected=expected + (", or None" if allow_none else ""))
    return value


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_number(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = True,
    high_open: bool = True,
    allow_none: bool = False,
) -> Any:
    """Return ``value`` as a float if it is finite and inside the interval (NaN never is)."""
    if value is None and allow_none:
        return None
    number = finite_number(value)
    inside = number is not None and (
        (low < number if low_open else low <= number)
        and (number < high if high_open else number <= high)
    )
    if not inside:
        expected = _describe_interval(low, high, low_open, high_open)
        expected += ", or None" if allow_none else ""
        raise invalid_value(name, value, expected=expected)
    return number


def _describe_interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(high) and low == 0:
        return "a positive number" if low_open else "a number >= 0"
    if math.isinf(high) and math.isinf(low):
        return "a finite number"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"a number in {left}{low:g}, {high:g}{right}"


def check_reference_point(value: Any, name: str = "reference_point") -> tuple[float, float]:
    """A ``(score, param_fraction)`` pair: a finite score and a fraction in (0, 1]."""
    try:
        score, fraction = (finite_number(v) for v in value)
    except (TypeError, ValueError):
        score = fraction = None
    if score is None or fraction is None or not 0 < fraction <= 1:
        raise invalid_value(
            name,
            value,
            expected="(score, param_fraction): a finite score and a fraction in (0, 1]",
            fix="Leave it unset for score 0 and the fraction of the space's largest configuration.",
        )
    return score, fraction


def check_trial_resources(
    cpus: Any, gpus: Any, *, cpus_field: str = "cpus", gpus_field: str = "gpus"
) -> None:
    """``cpus > 0``, and ``gpus`` a fraction in [0, 1] or a whole number (NaN is neither)."""
    check_number(cpus_field, cpus, low=0)
    number = finite_number(gpus)
    if number is None or number < 0 or (number > 1 and number != int(number)):
        raise invalid_value(gpus_field, gpus, expected="a fraction in [0, 1] or a whole number")
