"""The task registry: contents, lookup and TaskSpec validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from autopeft_ray.exceptions import TaskError
from autopeft_ray.tasks import (
    DEFAULT_TASK,
    FAST_TASK,
    GLUE_TASKS,
    OFFLINE_TASKS,
    SUPERGLUE_TASKS,
    TASKS,
    TaskSpec,
    get_task,
)

# name -> (num_labels, metrics, score metrics, hub path)
EXPECTED = {
    "rte": (2, {"accuracy"}, ("accuracy",), ("nyu-mll/glue", "rte")),
    "mrpc": (2, {"f1", "accuracy"}, ("f1", "accuracy"), ("nyu-mll/glue", "mrpc")),
    "stsb": (1, {"pearson", "spearman"}, ("pearson", "spearman"), ("nyu-mll/glue", "stsb")),
    "cola": (2, {"matthews_correlation", "accuracy"}, ("matthews_correlation",), ("nyu-mll/glue", "cola")),
    "sst2": (2, {"accuracy"}, ("accuracy",), ("nyu-mll/glue", "sst2")),
    "qnli": (2, {"accuracy"}, ("accuracy",), ("nyu-mll/glue", "qnli")),
    "qqp": (2, {"f1", "accuracy"}, ("f1", "accuracy"), ("nyu-mll/glue", "qqp")),
    "mnli": (3, {"accuracy"}, ("accuracy",), ("nyu-mll/glue", "mnli")),
    "cb": (3, {"accuracy", "f1_macro"}, ("accuracy", "f1_macro"), ("aps/super_glue", "cb")),
    "copa": (2, {"accuracy"}, ("accuracy",), ("aps/super_glue", "copa")),
    "wic": (2, {"accuracy"}, ("accuracy",), ("aps/super_glue", "wic")),
    "boolq": (2, {"accuracy"}, ("accuracy",), ("aps/super_glue", "boolq")),
}  # fmt: skip


def test_all_twelve_benchmark_tasks_are_registered() -> None:
    assert set(GLUE_TASKS) | set(SUPERGLUE_TASKS) == set(EXPECTED)
    assert set(EXPECTED) | set(OFFLINE_TASKS) == set(TASKS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_task_metrics_and_source(name: str) -> None:
    num_labels, metrics, score_metrics, hub_path = EXPECTED[name]
    spec = TASKS[name]
    assert spec.num_labels == num_labels
    assert spec.is_regression == (num_labels == 1)
    assert set(spec.metrics) == metrics
    assert spec.score_metrics == score_metrics
    assert spec.hub_path == hub_path
    assert spec.offline_source is None
    assert 1 <= len(spec.text_columns) <= 2
    assert len(spec.label_names) == (0 if spec.is_regression else num_labels)


def test_mnli_uses_matched_validation_and_main_metric_names() -> None:
    assert TASKS["mnli"].hub_splits == ("train", "validation_matched")
    assert TASKS["mrpc"].main_metric == "mean(f1, accuracy)"
    assert TASKS["stsb"].main_metric == "mean(pearson, spearman)"
    assert TASKS["cola"].main_metric == "matthews_correlation"


def test_default_and_fast_tasks_are_offline() -> None:
    for name in (DEFAULT_TASK, FAST_TASK):
        spec = get_task(name)
        assert spec.offline_source == name
        assert spec.hub_path is None


@pytest.mark.parametrize(
    ("alias", "name"),
    [("SST-2", "sst2"), ("sst2", "sst2"), ("sst_2", "sst2"), ("STS-B", "stsb"), ("stsb", "stsb"),
     ("RTE", "rte"), (" MNLI ", "mnli"), ("Rotten-Tomatoes", "rotten_tomatoes"),
     ("pang_lee_polarity", "pang_lee_polarity"), ("BoolQ", "boolq")],
)  # fmt: skip
def test_get_task_aliases(alias: str, name: str) -> None:
    assert get_task(alias) is TASKS[name]


def test_get_task_passes_specs_through() -> None:
    custom = TaskSpec("mine", ("text",), 2, ("accuracy",))
    assert get_task(custom) is custom


@pytest.mark.parametrize("bad", ["rtee", "glue", "", 3])
def test_unknown_task_names_the_value_and_choices(bad: object) -> None:
    with pytest.raises(TaskError) as info:
        get_task(bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert "`task`" in message and repr(bad) in message
    assert "'rte'" in message and "'rotten_tomatoes'" in message


@pytest.mark.parametrize("name", sorted(TASKS))
def test_spec_round_trips_through_json(name: str) -> None:
    spec = TASKS[name]
    data = json.loads(json.dumps(spec.to_dict()))
    assert TaskSpec.from_dict(data) == spec


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TASKS["rte"].num_labels = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"text_columns": ("a", "b", "c")}, "text_columns", "('a', 'b', 'c')"),
        ({"text_columns": ("label",)}, "text_columns", "('label',)"),
        ({"text_columns": "text"}, "text_columns", "'text'"),
        ({"num_labels": 0}, "num_labels", "0"),
        ({"metrics": ("pearson",)}, "metrics", "'pearson'"),
        ({"metrics": ("accuracy",), "score_metrics": ("f1",)}, "score_metrics", "('f1',)"),
        ({"num_labels": 3, "metrics": ("f1",), "score_metrics": ("f1",)}, "metrics", "('f1',)"),
        ({"label_names": ("a",)}, "label_names", "('a',)"),
        ({"hub_path": ("nyu-mll/glue",)}, "hub_path", "('nyu-mll/glue',)"),
        ({"formatter": "copa2", "source_columns": ("x",)}, "formatter", "'copa2'"),
        ({"source_columns": ("x",)}, "source_columns", "('x',)"),
        ({"offline_source": "imdb"}, "offline_source", "'imdb'"),
        ({"name": "RTE"}, "name", "'RTE'"),
    ],
)
def test_spec_validation_names_field_and_value(kwargs: dict, field: str, value: str) -> None:
    base = {"name": "mine", "text_columns": ("text",), "num_labels": 2, "metrics": ("accuracy",)}
    with pytest.raises(TaskError) as info:
        TaskSpec(**{**base, **kwargs})
    assert f"`{field}`" in str(info.value)
    assert value in str(info.value)


def test_from_dict_rejects_unknown_keys() -> None:
    data = {**TASKS["rte"].to_dict(), "num_label": 2}
    with pytest.raises(TaskError, match="'num_labels'.*got 'num_label'"):
        TaskSpec.from_dict(data)
