"""Checks of the searchers' constructor arguments: each error names the field, value and fix."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.space import PeftConfiguration, SearchSpace


def check_fixed_config(fixed: Mapping[str, Any] | None, peft_keys: Sequence[str]) -> dict[str, Any]:
    """``fixed_config`` as a dict: JSON-ready and free of the keys the searcher chooses."""
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping):
        raise invalid_value("fixed_config", fixed, expected="a dict of trial settings")
    clash = sorted(k for k in fixed if k in set(peft_keys))
    if clash:
        raise invalid_value(
            "fixed_config",
            clash,
            expected="no PEFT configuration keys (the searcher chooses them)",
            fix="Restrict the space with SearchSpace(variant=...) instead.",
        )
    try:
        json.dumps(dict(fixed))
    except (TypeError, ValueError) as error:
        raise invalid_value(
            "fixed_config",
            fixed,
            expected="JSON-serialisable values (they are saved with the searcher state)",
        ) from error
    return dict(fixed)


def check_points(
    points: Sequence[Mapping[str, Any] | PeftConfiguration] | None, space: SearchSpace
) -> list[PeftConfiguration]:
    """``points_to_evaluate`` as configurations of ``space``, without duplicate models."""
    if points is None:
        return []
    if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, Sequence):
        raise invalid_value("points_to_evaluate", points, expected="a list of configuration dicts")
    configs: list[PeftConfiguration] = []
    seen: set[PeftConfiguration] = set()
    for i, point in enumerate(points):
        if isinstance(point, PeftConfiguration):
            config = space.validate(point)
        elif isinstance(point, Mapping):
            config = space.from_trial_config(point)
        else:
            raise invalid_value(
                f"points_to_evaluate[{i}]", point, expected="a dict or PeftConfiguration"
            )
        if config.model_key() in seen:
            raise invalid_value(
                f"points_to_evaluate[{i}]",
                config.describe(),
                expected="a configuration not listed before (same model twice)",
                fix="Remove the duplicate.",
            )
        seen.add(config.model_key())
        configs.append(config)
    return configs


def check_candidates(
    candidates: Sequence[Mapping[str, Any] | PeftConfiguration] | None, space: SearchSpace
) -> list[PeftConfiguration] | None:
    """``candidates`` as distinct configurations of ``space`` (one per model), or ``None``.

    Configurations that build the same model (:meth:`PeftConfiguration.model_key`)
    count once; the first one listed is kept.
    """
    if candidates is None:
        return None
    if isinstance(candidates, (str, bytes, Mapping)) or not isinstance(candidates, Sequence):
        raise invalid_value(
            "candidates", candidates, expected="a list of configuration dicts or PeftConfigurations"
        )
    kept: dict[PeftConfiguration, PeftConfiguration] = {}
    for i, point in enumerate(candidates):
        if isinstance(point, PeftConfiguration):
            config = space.validate(point)
        elif isinstance(point, Mapping):
            config = space.from_trial_config(point)
        else:
            raise invalid_value(f"candidates[{i}]", point, expected="a dict or PeftConfiguration")
        kept.setdefault(config.model_key(), config)
    if not kept:
        raise invalid_value(
            "candidates",
            [],
            expected="at least one configuration",
            fix="Pass None to search the whole space.",
        )
    return list(kept.values())
