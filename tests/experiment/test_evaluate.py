"""Re-evaluation summaries (the Ray part runs in tests/e2e/test_cli.py)."""

from __future__ import annotations

import pytest

from autopeft_ray.config import SearchOptions, TrainingSettings
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.experiment import evaluate_configurations
from autopeft_ray.experiment.evaluate import summarise
from autopeft_ray.tasks import get_task


def test_summary_is_mean_and_spread_over_seeds():
    runs = [
        {"score": 0.8, "test_accuracy": 0.7, "param_fraction": 0.01, "train_loss": 0.3},
        {"score": 0.6, "test_accuracy": 0.9, "param_fraction": 0.01, "train_loss": 0.5},
    ]
    summary = summarise({"preset": "lora"}, runs, "rte")
    assert summary["seeds"] == 2 and summary["task"] == "rte"
    assert summary["metrics"]["score"] == {
        "mean": pytest.approx(0.7),
        "std": pytest.approx(0.1414, abs=1e-4),
    }
    assert summary["metrics"]["test_accuracy"]["mean"] == pytest.approx(0.8)
    assert "train_loss" not in summary["metrics"]


def test_resource_defaults_are_a_searchs():
    import inspect

    parameters = inspect.signature(evaluate_configurations).parameters
    for name, value in SearchOptions().resources.items():
        assert parameters[name].default == value, name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"configurations": []}, "`configurations`"), ({"seeds": []}, "`seeds`")],
)
def test_bad_input_fails_before_ray(kwargs, match, tmp_path):
    args = {"configurations": ["lora"], "seeds": [0], **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        evaluate_configurations(
            args.pop("configurations"), TrainingSettings(), output=tmp_path, **args
        )


@pytest.mark.parametrize(
    ("source", "target", "caveat"),
    [
        ("pang_lee_polarity", "rotten_tomatoes", True),
        ("rotten_tomatoes", "sst2", True),  # SST-2 was built from the same snippets
        ("rotten_tomatoes", "rotten_tomatoes", False),  # evaluate, not transfer
        ("rte", "mrpc", False),
        ({**get_task("sst2").to_dict(), "name": "reviews"}, "sst2", False),  # your own data
    ],
)
def test_transfer_between_tasks_of_one_corpus_is_called_no_transfer(source, target, caveat):
    from autopeft_ray.experiment.evaluate import transfer_caveat

    text = transfer_caveat(source, target)
    assert bool(text) == caveat
    if caveat:
        assert text.startswith("Not a transfer result: ")
        assert "Pang & Lee's Rotten Tomatoes snippets" in text and target in text
