"""The CLI is built from the dataclass fields: one source for each default and help text."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from autopeft_ray.config import RESOURCE_FIELDS, SearchOptions, TrainingSettings
from autopeft_ray.config.fields import add_arguments, cli_fields, flag_of, given_values


@pytest.mark.parametrize("cls", [TrainingSettings, SearchOptions])
def test_every_field_has_help(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f.name


def _parse(cls: type, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    return parser.parse_args(argv)


def test_no_flag_given_leaves_every_default():
    assert given_values(TrainingSettings, _parse(TrainingSettings, [])) == {}
    assert TrainingSettings(**given_values(TrainingSettings, _parse(TrainingSettings, []))) == (
        TrainingSettings()
    )


def test_flags_parse_into_field_values():
    args = _parse(
        TrainingSettings,
        [
            "--max-steps",
            "7",
            "--max-grad-norm",
            "none",
            "--module-learning-rate",
            "pa=1e-4",
            "--module-learning-rate",
            "head=2e-3",
            "--data-files",
            '{"train": "t.csv"}',
        ],
    )
    settings = TrainingSettings(**given_values(TrainingSettings, args))
    assert settings.max_steps == 7 and settings.max_grad_norm is None
    assert settings.module_learning_rates == {"pa": 1e-4, "head": 2e-3}
    assert settings.data_files == {"train": "t.csv"}


def test_search_flags_and_their_names():
    args = _parse(SearchOptions, ["--initial", "3", "--space", "sa", "--baseline", "lora"])
    options = SearchOptions(**given_values(SearchOptions, args))
    assert (options.num_initial, options.variant, options.baselines) == (3, "sa", ("lora",))
    assert options.reuse_actors  # the default: Ray Tune's reuse_actors, on
    args = _parse(SearchOptions, ["--no-reuse-actors"])
    assert SearchOptions(**given_values(SearchOptions, args)).reuse_actors is False
    flags = {f.name: flag_of(f) for f in cli_fields(SearchOptions)}
    assert flags["num_model_based"] == "--model-based" and "settings" not in flags
    assert set(RESOURCE_FIELDS) <= set(flags)


def test_help_shows_the_field_default(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainingSettings, only=["warmup_ratio"], inherited=[])
    parser.print_help()
    assert "(default: 0.06)" in " ".join(capsys.readouterr().out.split())


def test_a_bad_value_names_the_field(capsys):
    with pytest.raises(SystemExit):
        _parse(TrainingSettings, ["--module-learning-rate", "pa"])
    assert "GROUP=RATE" in capsys.readouterr().err
