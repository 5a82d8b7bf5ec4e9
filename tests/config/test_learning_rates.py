"""Learning-rate policies: the rate of each group, and their validation."""

from __future__ import annotations

import pytest

from autopeft_ray.config import TrainingSettings
from autopeft_ray.config.learning_rates import (
    GROUPS,
    POLICIES,
    check_rates,
    group_rates,
)
from autopeft_ray.exceptions import ConfigurationError


@pytest.mark.parametrize("policy", POLICIES)
def test_policies_cover_every_group(policy: str) -> None:
    peft, full = group_rates(policy, full=False), group_rates(policy, full=True)
    assert set(peft) == set(GROUPS) - {"base"} and set(full) == {"head", "base"}


def test_paper_policy_is_the_papers() -> None:
    assert set(group_rates("paper", full=False).values()) == {1e-4}
    assert set(group_rates("paper", full=True).values()) == {2e-5}


def test_single_rate_and_overrides() -> None:
    assert group_rates("short", full=True, single=1e-3) == {"head": 1e-3, "base": 1e-3}
    rates = group_rates("short", full=False, overrides={"pa": 1e-5, "base": 1.0e-4})
    assert rates["pa"] == 1e-5 and rates["sa"] == POLICIES["short"]["peft"]["sa"]
    assert "base" not in rates


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"learning_rate_policy": "fast"}, ["`learning_rate_policy`", "'fast'", "'short'"]),
        ({"module_learning_rates": {"adapter": 1e-3}}, ["`module_learning_rates`", "'adapter'"]),
        ({"module_learning_rates": {"pa": 2.0}}, ["module_learning_rates['pa']", "got 2.0"]),
        ({"learning_rate": float("nan")}, ["`learning_rate`", "nan"]),
    ],
)
def test_bad_rates_name_the_field(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        TrainingSettings(**kwargs)
    for word in words:
        assert word in str(caught.value)
    with pytest.raises(ConfigurationError):
        check_rates("paper", [("pa", 1e-3)])  # type: ignore[arg-type]


def test_settings_round_trip_keeps_the_policy() -> None:
    settings = TrainingSettings(learning_rate_policy="short", module_learning_rates={"pa": 1e-4})
    assert TrainingSettings.from_dict(settings.to_dict()) == settings
