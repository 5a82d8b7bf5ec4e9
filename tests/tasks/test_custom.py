"""Your own task: files, folders, a task-spec file and the hub code path, and each bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from autopeft_ray.config import TrainingSettings
from autopeft_ray.exceptions import TaskError
from autopeft_ray.tasks import TaskSpec, get_task, load_task, task_from_data

REVIEWS = Path(__file__).resolve().parents[1] / "fixtures" / "reviews.csv"


def _csv(path: Path, rows: list[tuple[str, object]], header: str = "sentence,label") -> Path:
    path.write_text(header + "\n" + "".join(f'"{text}",{label}\n' for text, label in rows))
    return path


def _rows(n: int, labels: tuple[object, ...] = ("pos", "neg")) -> list[tuple[str, object]]:
    return [(f"sentence number {i}", labels[i % len(labels)]) for i in range(n)]


def test_a_csv_with_string_labels_becomes_a_task(tmp_path):
    spec = task_from_data(REVIEWS, text_columns=["review"], label_column="verdict")
    assert spec.name == "reviews" and spec.text_columns == ("review",)
    assert spec.label_names == ("bad", "good") and spec.num_labels == 2  # sorted
    assert spec.data_files == str(REVIEWS) and not spec.is_registered
    data = load_task(spec, seed=0)
    assert [len(data[s]) for s in ("train", "validation", "test")] == [32, 8, 8]
    assert set(data["train"]["label"]) == {0, 1}
    again = load_task(spec, seed=0)
    assert again["validation"]["review"] == data["validation"]["review"]  # seeded cut


def test_a_folder_with_its_own_splits_and_a_spec_file(tmp_path):
    _csv(tmp_path / "train.csv", _rows(20, (0, 1, 2)))
    _csv(tmp_path / "dev.csv", _rows(18, (2, 1, 0)))
    spec = task_from_data(tmp_path, metric="f1_macro")
    assert spec.text_columns == ("sentence",) and spec.num_labels == 3 and not spec.label_names
    assert spec.metrics == ("f1_macro",)
    data = load_task(spec)
    assert (len(data["train"]), len(data["validation"]), len(data["test"])) == (20, 9, 9)
    spec_file = tmp_path / "task.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    assert task_from_data(spec_file) == spec


def test_regression_and_a_pair_of_text_columns(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "label": i / 10} for i in range(30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = task_from_data(path, regression=True)
    assert spec.text_columns == ("sentence1", "sentence2") and spec.is_regression
    assert spec.metrics == ("pearson", "spearman")
    assert len(load_task(spec)["train"]) == 14


def test_the_hub_code_path_loads_a_local_dataset_folder(tmp_path):
    """``load_dataset(name)`` as for a hub name, offline: a folder of csv files."""
    from autopeft_ray.tasks.custom import _read_hub_train

    folder = tmp_path / "hub_like"
    folder.mkdir()
    _csv(folder / "train.csv", _rows(40))
    columns, labels, where = _read_hub_train(str(folder))
    assert columns == ["sentence", "label"] and set(labels("label")) == {"pos", "neg"}
    spec = TaskSpec(
        name="hub_like",
        text_columns=("sentence",),
        num_labels=2,
        metrics=("accuracy",),
        label_names=("neg", "pos"),
        hub_path=(str(folder), ""),
        user_data=True,
    )
    data = load_task(spec)
    assert len(data["train"]) + len(data["validation"]) + len(data["test"]) == 40


def test_an_unknown_hub_name_offline_says_what_to_do():
    with pytest.raises(TaskError, match="not a registered task .* no hub dataset of that name"):
        task_from_data("no-such-user/no-such-dataset")


@pytest.mark.parametrize(
    ("kwargs", "rows", "header", "match"),
    [
        ({"label_column": "verdict"}, 30, "sentence,label", r"'verdict' is not in .*columns found"),
        ({"text_columns": ["review"]}, 30, "sentence,label", r"\['review'\] not in .*found"),
        ({}, 30, "body,label", r"No text column .*columns found: \['body', 'label'\]"),
        ({"regression": True}, 30, "sentence,label", r"'pos' .* is not a number.*--regression"),
        ({}, 6, "sentence,label", r"has 6 training rows and no validation split"),
    ],
)
def test_bad_own_data_is_named(tmp_path, kwargs, rows, header, match):
    path = _csv(tmp_path / "data.csv", _rows(rows), header=header)
    with pytest.raises(TaskError, match=match):
        load_task(task_from_data(path, **kwargs))


def test_a_single_class_an_empty_file_and_unseen_dev_labels(tmp_path):
    with pytest.raises(TaskError, match="single class"):
        task_from_data(_csv(tmp_path / "one.csv", _rows(30, ("pos",))))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TaskError, match="Could not read"):
        task_from_data(tmp_path / "empty.csv")
    folder = tmp_path / "splits"
    folder.mkdir()
    _csv(folder / "train.csv", _rows(20))
    _csv(folder / "validation.csv", _rows(20, ("pos", "neutral")))
    with pytest.raises(TaskError, match=r"'neutral' in .*validation.* not valid .*training split"):
        load_task(task_from_data(folder))
    small = tmp_path / "small"
    small.mkdir()
    _csv(small / "train.csv", _rows(20))
    _csv(small / "validation.csv", _rows(5))
    with pytest.raises(TaskError, match="'validation' .* has 3 rows; at least 8"):
        load_task(task_from_data(small))


def _jsonl(path: Path, labels: list[object]) -> Path:
    path.write_text(
        "".join(json.dumps({"text": f"row {i}", "label": v}) + "\n" for i, v in enumerate(labels))
    )
    return path


def test_labels_that_mix_numbers_and_strings_are_named_with_their_file(tmp_path):
    """1.5 and 'pos' in one file: the message says the types mix (it used to reject 1.5
    while listing '1.5' as a valid name), and which file."""
    mixed = _jsonl(tmp_path / "train.jsonl", [1.5, "pos"] * 20)
    with pytest.raises(TaskError) as caught:
        task_from_data(mixed)
    message = str(caught.value)
    assert "mix types (numbers and strings)" in message and str(mixed) in message
    assert "1.5" in message and "'1.5'" not in message
    # A number with a fraction and no strings: class ids are integers (or --regression).
    with pytest.raises(TaskError, match=r"Label 1.5 in .*fraction.*--regression"):
        task_from_data(_jsonl(tmp_path / "numbers.jsonl", [0, 1.5] * 20))
    # Ids as numbers and as digit strings are the same ids: not a mix.
    assert task_from_data(_jsonl(tmp_path / "ids.jsonl", [0, "1"] * 20)).num_labels == 2


def test_a_number_in_another_file_that_spells_a_name_is_a_mix(tmp_path):
    """The training file's labels are the strings '1.5' and 'pos' (a CSV); a validation
    file in JSON lines writes 1.5 as a number: named as a mix, with that file."""
    folder = tmp_path / "splits"
    folder.mkdir()
    _csv(folder / "train.csv", _rows(20, ("1.5", "pos")), header="text,label")
    _jsonl(folder / "validation.jsonl", [1.5, "pos"] * 10)
    spec = task_from_data(folder)
    assert spec.label_names == ("1.5", "pos")
    with pytest.raises(TaskError) as caught:
        load_task(spec)
    message = str(caught.value)
    assert "mix types (numbers and strings)" in message and "validation.jsonl" in message
    assert "Write it as the name '1.5'" in message


def test_a_huge_cell_is_cut_in_messages(tmp_path):
    path = _csv(tmp_path / "big.csv", [("short", "x" * 5000)] + _rows(30), header="text,label")
    with pytest.raises(TaskError) as caught:
        load_task(task_from_data(path, regression=True))
    assert len(str(caught.value)) < 400 and "characters)" in str(caught.value)


def test_settings_carry_the_task_to_workers_and_back(tmp_path):
    spec = task_from_data(REVIEWS, text_columns=["review"], label_column="verdict")
    settings = TrainingSettings(task=spec, max_steps=2)
    assert isinstance(settings.task, dict) and settings.task_name == "reviews"
    assert get_task(settings.task) == spec
    assert TrainingSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert TrainingSettings(task=spec.to_dict(), max_steps=2) == settings
