"""Checks of what Ray Tune passes to ``Searcher.set_search_properties``.

``TuneConfig(metric=..., mode=...)`` may name the score alone or list both
objectives (``["score", "param_fraction"]`` with ``["max", "min"]``); the
parameter fraction is always the known, minimised objective, so only the other
entry is the searcher's metric. A ``param_space`` may hold constant settings
(Tune merges them into every trial) and the PEFT keys, which narrow the
searcher's space; any other search domain would reach the trainable
unresolved, so it is refused here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.objectives import PARAM_FRACTION
from autopeft_ray.space import SearchSpace

MODES = ("max", "min")


def parse_metric(metric: Any, mode: Any) -> tuple[str, str]:
    """``(score metric, its mode)`` from a name and mode, or from lists of both."""
    if isinstance(metric, str):
        if mode not in MODES:
            raise invalid_value("mode", mode, valid=MODES)
        if metric == PARAM_FRACTION:
            raise invalid_value(
                "metric",
                metric,
                expected="the score metric (e.g. 'score')",
                fix="The parameter fraction is the known objective, given by cost_fn.",
            )
        return metric, mode
    if isinstance(metric, (list, tuple)):
        if not isinstance(mode, (list, tuple)) or len(mode) != len(metric):
            raise invalid_value(
                "mode", mode, expected=f"a list of {len(metric)} modes matching metric {metric!r}"
            )
        pairs = dict(zip(metric, mode, strict=True))
        for name, direction in pairs.items():
            if direction not in MODES:
                raise invalid_value(f"mode of {name!r}", direction, valid=MODES)
        if pairs.get(PARAM_FRACTION, "min") != "min":
            raise invalid_value(f"mode of {PARAM_FRACTION!r}", pairs[PARAM_FRACTION], valid=["min"])
        scores = [name for name in metric if name != PARAM_FRACTION]
        if len(scores) != 1 or not isinstance(scores[0], str):
            raise invalid_value(
                "metric",
                list(metric),
                expected=f"one score metric, optionally with {PARAM_FRACTION!r}",
                fix="AutoPEFT optimises a score and the parameter fraction, nothing else.",
            )
        return scores[0], pairs[scores[0]]
    raise invalid_value("metric", metric, expected="a metric name or a list of names")


def _is_unresolved(value: Any) -> bool:
    from ray.tune.search.sample import Domain

    return isinstance(value, Domain) or (isinstance(value, Mapping) and "grid_search" in value)


def _unresolved_paths(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if _is_unresolved(value):
            paths.append(path)
        elif isinstance(value, Mapping):
            paths.extend(_unresolved_paths(value, path + "/"))
    return paths


class _Shown(str):
    """A value as the user wrote it: its ``repr`` is itself (used in error messages)."""

    def __repr__(self) -> str:
        return str(self)


def shown(value: Any) -> Any:
    """``value`` for an error message: a Tune search domain as the call that makes it
    (``tune.choice([0, 3])``, ``tune.randint(0, 10)``), not ``<Categorical object at
    0x...>``; anything else as it is."""
    from ray.tune.search.sample import Categorical, Domain, Float, Function, Integer

    if not isinstance(value, Domain):
        return value
    if isinstance(value, Categorical):
        return _Shown(f"tune.choice({list(value.categories)!r})")
    if not isinstance(value, (Integer, Float)):
        return _Shown("tune.sample_from(...)" if isinstance(value, Function) else repr(value))
    sampler = value.sampler
    q = getattr(sampler, "q", None)
    inner = getattr(sampler, "sampler", sampler)
    kind = type(inner).__name__.lstrip("_")
    if kind == "Normal":
        return _Shown(f"tune.randn({getattr(inner, 'mean', 0)!r}, {getattr(inner, 'sd', 1)!r})")
    name = ("log" if kind == "LogUniform" else "") + (
        "randint" if isinstance(value, Integer) else "uniform"
    )
    if q is not None:
        return _Shown(f"tune.q{name}({value.lower!r}, {value.upper!r}, {q!r})")
    return _Shown(f"tune.{name}({value.lower!r}, {value.upper!r})")


def _domain_values(key: str, value: Any) -> list[int]:
    """The values a ``param_space`` entry allows for a PEFT key, or a clear refusal."""
    from ray.tune.search.sample import Categorical, Domain, Integer

    if isinstance(value, Categorical):
        values = list(value.categories)
    elif isinstance(value, Integer) and getattr(value.sampler, "q", 1) in (None, 1):
        if isinstance(value.upper, int) and value.upper - value.lower <= 4096:
            values = list(range(value.lower, value.upper))  # randint: upper excluded
        else:
            values = []
    elif isinstance(value, (Domain, Mapping)):
        raise invalid_value(
            f"param_space[{key!r}]",
            shown(value),
            expected="a constant or tune.choice([...]) of this key's values",
            fix="The searcher chooses from a discrete set of sizes and layer bits; a "
            "continuous or grid domain cannot narrow it.",
        )
    else:
        values = [value]
    ints = [
        int(v)
        for v in values
        if isinstance(v, (int, bool)) or (isinstance(v, float) and v.is_integer())
    ]
    if not values or len(ints) != len(values):
        raise invalid_value(
            f"param_space[{key!r}]", shown(value), expected="integer sizes or layer bits (0 or 1)"
        )
    return ints


def check_param_space(
    config: Mapping[str, Any], space: SearchSpace, fixed_config: Mapping[str, Any]
) -> dict[str, list[int]]:
    """Raise if Tune's ``param_space`` conflicts with the searcher; return its narrowing.

    A PEFT key in ``param_space`` narrows the searcher's space: a constant fixes
    it, ``tune.choice([...])`` (or ``tune.randint``) of some of its values
    restricts sampling, local search and acquisition to them. A value the space
    does not have, or a domain that cannot narrow a discrete key (a float or
    grid domain), is refused naming the key.

    Args:
        config: Tune's ``param_space``.
        space: the searcher's space.
        fixed_config: the searcher's ``fixed_config``.

    Returns:
        key -> allowed values, for the keys ``param_space`` narrows.
    """
    fixed = space.fixed()
    searched = {d.name: d.choices for d in space.dimensions}
    narrowing: dict[str, list[int]] = {}
    for key, value in config.items():
        if key not in searched and key not in fixed:
            continue
        values = _domain_values(key, value)
        allowed = searched.get(key, (fixed.get(key),))
        outside = sorted(set(values) - set(allowed))
        if outside:
            raise invalid_value(
                f"param_space[{key!r}]",
                shown(value),
                expected=f"values of {key} in this space, {list(allowed)} (not {outside})",
                fix="Narrow it with tune.choice([...]) of those values, or one of them.",
            )
        if key in searched and set(values) != set(allowed):
            narrowing[key] = sorted(set(values))
    others = {k: v for k, v in config.items() if k not in searched and k not in fixed}
    unresolved = _unresolved_paths(others)
    if unresolved:
        raise ConfigurationError(
            f"`param_space` has search domains {unresolved} that the AutoPEFT searcher "
            "does not choose; Tune would pass them unresolved to the trainable. Give them "
            "constant values (or put them in the searcher's fixed_config)."
        )
    clashes = sorted(k for k, v in others.items() if k in fixed_config and fixed_config[k] != v)
    if clashes:
        raise invalid_value(
            "param_space",
            {k: others[k] for k in clashes},
            expected=f"the same values as fixed_config {dict((k, fixed_config[k]) for k in clashes)}",
            fix="Set each trial setting in one place.",
        )
    return narrowing
