"""Training settings: validation, fidelity arithmetic, dict round trip."""

from __future__ import annotations

import pytest

from autopeft_ray.config import (
    PRESET_KEY,
    TRIAL_SETTINGS_KEY,
    TrainingSettings,
    trial_config,
)
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.space import SearchSpace


def test_round_trip_through_dict():
    settings = TrainingSettings(task="rte", max_steps=10, data_files={"train": "a.csv"})
    assert TrainingSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"batch_size": 0}, r"`batch_size` should be a positive integer up to 2147483647, got 0"),
        (
            {"learning_rate": 3.0},
            r"`learning_rate` should be a number in \(0, 1\), or None, got 3.0",
        ),
        (
            {"learning_rate": float("nan")},
            r"`learning_rate` should be a number in \(0, 1\).*got nan",
        ),
        ({"train_fraction": 1.5}, r"`train_fraction` should be a number in \(0, 1\], got 1.5"),
        ({"epochs": None}, r"`epochs` should be a positive number.*Set `epochs` or `max_steps`"),
        ({"epochs": -1.0}, r"`epochs` should be a positive number, or None, got -1.0"),
        (
            {"max_steps": 2.5},
            r"`max_steps` should be a positive integer up to 2147483647, or None, got 2.5",
        ),
        ({"seed": "x"}, r"`seed` should be an integer >= 0 up to 2147483647, got 'x'"),
        # Larger than what NumPy and torch take: every trial would fail.
        ({"seed": 10**23}, r"`seed` should be an integer >= 0 up to 2147483647, got 10{23}"),
        ({"max_steps": 10**20}, r"`max_steps` should be a positive integer up to 2147483647"),
        ({"max_grad_norm": 0.0}, r"`max_grad_norm` should be a positive number, or None, got 0.0"),
    ],
)
def test_bad_settings_name_field_and_value(kwargs, pattern):
    with pytest.raises(ConfigurationError, match=pattern):
        TrainingSettings(**kwargs)


def test_unknown_setting_is_not_silently_dropped():
    with pytest.raises(ConfigurationError, match=r"`training setting` should be one of .*got 'lr'"):
        TrainingSettings.from_dict({"lr": 0.1})


def test_fidelity_in_steps():
    assert TrainingSettings(batch_size=32, epochs=1.0).total_steps(100) == 4
    assert TrainingSettings(batch_size=32, epochs=0.5).total_steps(100) == 2
    assert TrainingSettings(max_steps=7).total_steps(100) == 7


def test_evaluation_steps_end_at_the_budget():
    assert TrainingSettings(num_evaluations=3).evaluation_steps(10) == [3, 7, 10]
    assert TrainingSettings(num_evaluations=5).evaluation_steps(2) == [1, 2]


def test_trial_config_for_configuration_and_preset():
    config = SearchSpace(6, 384).configuration(sa_size=4)
    settings = TrainingSettings()
    trial = trial_config(config, settings)
    assert trial["sa_size"] == 4 and trial[TRIAL_SETTINGS_KEY] == settings.to_dict()
    assert trial_config("lora", settings)[PRESET_KEY] == "lora"
    with pytest.raises(ConfigurationError, match="PeftConfiguration or a preset name"):
        trial_config(42, settings)


@pytest.mark.parametrize(
    ("cpus", "gpus", "pattern"),
    [
        (0, 0, r"`cpus` should be a positive number, got 0"),
        (float("nan"), 0, r"`cpus` should be a positive number, got nan"),
        (1, float("nan"), r"`gpus` should be a fraction in \[0, 1\] or a whole number, got nan"),
        (1, -0.5, r"`gpus` should be a fraction in \[0, 1\] or a whole number, got -0.5"),
        (1, 1.5, r"`gpus` should be a fraction in \[0, 1\] or a whole number, got 1.5"),
    ],
)
def test_trial_resources_are_checked_in_one_place(cpus, gpus, pattern):
    from autopeft_ray.config import SearchOptions
    from autopeft_ray.trainables import with_resources
    from autopeft_ray.validation import check_trial_resources

    with pytest.raises(ConfigurationError, match=pattern):
        check_trial_resources(cpus, gpus)
    with pytest.raises(ConfigurationError, match=pattern):
        with_resources(cpus, gpus)
    with pytest.raises(ConfigurationError, match=pattern.replace("pus`", "pus_per_trial`")):
        SearchOptions(cpus_per_trial=cpus, gpus_per_trial=gpus)
    check_trial_resources(2, 0.5)
    check_trial_resources(1, 2)


@pytest.mark.parametrize("point", [(0.5,), (0.0, 0.0), (0.0, 1.5), (float("nan"), 0.1), "ab", 3])
def test_bad_reference_point_names_the_field(point):
    from autopeft_ray.config import SearchOptions

    with pytest.raises(ConfigurationError, match=r"`reference_point` should be .*fraction in"):
        SearchOptions(reference_point=point)  # type: ignore[arg-type]
    assert SearchOptions(reference_point=(0.5, 0.02)).reference_point == (0.5, 0.02)
