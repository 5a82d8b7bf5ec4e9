"""Learning rates per parameter group, on the real offline model built by ``adapters``."""

from __future__ import annotations

import pytest

from autopeft_ray.builder import build_peft_model, task_head_parameters
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.learning_rates import (
    GROUPS,
    POLICIES,
    check_rates,
    group_rates,
    parameter_groups,
)
from autopeft_ray.models import DEFAULT_MODEL
from autopeft_ray.presets import PRESET_NAMES
from autopeft_ray.settings import TrainingSettings
from autopeft_ray.space import PeftConfiguration

ALL = (True,) * 6

#: Groups that train, per configuration or preset.
EXPECTED = {
    "sa": (PeftConfiguration(8, 0, 0, ALL), {"head", "sa"}),
    "pa": (PeftConfiguration(0, 8, 0, ALL), {"head", "pa"}),
    "pt": (PeftConfiguration(0, 0, 4, ALL), {"head", "pt"}),
    "sa+pa+pt": (PeftConfiguration(8, 4, 2, ALL), {"head", "sa", "pa", "pt"}),
    "head-only": (PeftConfiguration(0, 0, 0, ALL), {"head"}),
    "full": ("full", {"head", "base"}),
    "serial": ("serial", {"head", "sa"}),
    "parallel": ("parallel", {"head", "pa"}),
    "prefix": ("prefix", {"head", "pt"}),
    "lora": ("lora", {"head", "lora"}),
    "mam": ("mam", {"head", "pa", "pt"}),
    "unipelt": ("unipelt", {"head", "sa", "pt", "lora"}),
}


def test_every_preset_is_covered() -> None:
    assert set(PRESET_NAMES) <= set(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_every_trained_parameter_is_in_exactly_one_group(name: str) -> None:
    configuration, expected = EXPECTED[name]
    built = build_peft_model(DEFAULT_MODEL, configuration, num_labels=2, seed=0)
    head = task_head_parameters(built.model)
    groups = parameter_groups(built.model, head)
    assert set(groups) == expected
    grouped = [id(p) for params in groups.values() for p in params]
    trained = [id(p) for p in built.model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trained)  # each once, none left out
    assert {id(p) for p in groups["head"]} == {id(p) for p in head}
    # The head is the pooler and the classifier: 4 tensors on BERT.
    assert len(groups["head"]) == 4


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
