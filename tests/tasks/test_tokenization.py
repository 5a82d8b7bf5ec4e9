"""The tokenisation cache, on the real offline tokenizer and real shipped data."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from autopeft_ray.exceptions import ModelLoadError, TaskError
from autopeft_ray.models import DEFAULT_MODEL
from autopeft_ray.tasks import (
    default_cache_dir,
    load_task,
    load_tokenizer,
    tokenize_task,
    tokenized_cache_path,
    training_subset,
)
from autopeft_ray.tasks.tokenization import _publish


class CountingTokenizer:
    """A real tokenizer that counts how often it is asked to encode."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def polarity() -> Any:
    return load_task("pang_lee_polarity", seed=0)


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_tokenizes_without_padding(polarity: Any, tokenizer: Any, tmp_path: Path) -> None:
    out = tokenize_task(polarity, "pang_lee_polarity", DEFAULT_MODEL, 32, cache_dir=tmp_path)
    assert set(out) == {"train", "validation", "test"}
    train = out["train"]
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    lengths = [len(ids) for ids in train["input_ids"]]
    assert max(lengths) == 32 and min(lengths) < 32  # truncated, not padded
    assert train["labels"] == polarity["train"]["label"]
    assert train.features["labels"].dtype == "int64"
    first = tokenizer(polarity["train"][0]["sentence"], truncation=True, max_length=32)
    assert train[0]["input_ids"] == first["input_ids"]


def test_second_call_reads_the_cache(polarity: Any, tokenizer: Any, tmp_path: Path) -> None:
    counting = CountingTokenizer(tokenizer)
    first = tokenize_task(polarity, "pang_lee_polarity", counting, 24, cache_dir=tmp_path)
    assert counting.calls > 0
    folder = tokenized_cache_path(polarity, "pang_lee_polarity", tokenizer, 24, cache_dir=tmp_path)
    assert first["train"].cache_files[0]["filename"].startswith(str(folder))
    before = _mtimes(folder)

    again = CountingTokenizer(tokenizer)
    second = tokenize_task(polarity, "pang_lee_polarity", again, 24, cache_dir=tmp_path)
    assert again.calls == 0
    assert second["train"].cache_files == first["train"].cache_files
    assert _mtimes(folder) == before
    # The name resolves to the same tokenizer definition, hence the same cache.
    by_name = tokenize_task(polarity, "pang_lee_polarity", DEFAULT_MODEL, 24, cache_dir=tmp_path)
    assert by_name["test"].cache_files == first["test"].cache_files
    assert [p.name for p in (tmp_path / "tokenized").iterdir()] == [folder.name]

    # A different max_length, or different data, is a different cache entry.
    longer = CountingTokenizer(tokenizer)
    tokenize_task(polarity, "pang_lee_polarity", longer, 48, cache_dir=tmp_path)
    assert longer.calls > 0
    reseeded = load_task("pang_lee_polarity", seed=1)
    other = tokenized_cache_path(reseeded, "pang_lee_polarity", tokenizer, 24, cache_dir=tmp_path)
    assert other != folder


def test_concurrent_misses_leave_one_entry(polarity: Any, tokenizer: Any, tmp_path: Path) -> None:
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def work() -> None:
        barrier.wait()
        results.append(tokenize_task(polarity, "pang_lee_polarity", tokenizer, 16, tmp_path))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert results[0]["train"]["input_ids"] == results[1]["train"]["input_ids"]
    entries = list((tmp_path / "tokenized").iterdir())
    assert len(entries) == 1 and ".tmp-" not in entries[0].name


def test_publish_loser_discards_its_copy(polarity: Any, tokenizer: Any, tmp_path: Path) -> None:
    tokenize_task(polarity, "pang_lee_polarity", tokenizer, 20, cache_dir=tmp_path)
    final = tokenized_cache_path(polarity, "pang_lee_polarity", tokenizer, 20, cache_dir=tmp_path)
    loser = tmp_path / "loser"
    (loser / "train").mkdir(parents=True)
    assert _publish(loser, final) is False
    assert not loser.exists() and (final / "dataset_dict.json").is_file()


def test_regression_labels_are_float32(tokenizer: Any, tmp_path: Path) -> None:
    rows = "sentence1,sentence2,label\nA man sings.,A man is singing.,4.8\nA cat.,A car.,0.4\n"
    for split in ("train", "validation"):
        (tmp_path / f"{split}.csv").write_text(rows)
    data = load_task("stsb", data_files=tmp_path)
    out = tokenize_task(data, "stsb", tokenizer, 32, cache_dir=tmp_path / "cache")
    assert out["train"].features["labels"].dtype == "float32"
    assert out["train"]["labels"] == pytest.approx([4.8, 0.4])
    assert 1 in out["train"][0]["token_type_ids"]  # a sentence pair


def test_default_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOPEFT_RAY_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("AUTOPEFT_RAY_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "autopeft_ray"


@pytest.mark.parametrize("max_length", [0, 1, 513, 64.0])
def test_bad_max_length(polarity: Any, tokenizer: Any, tmp_path: Path, max_length: Any) -> None:
    with pytest.raises(TaskError, match=rf"`max_length`.*got {max_length!r}"):
        tokenize_task(polarity, "pang_lee_polarity", tokenizer, max_length, cache_dir=tmp_path)


def test_wrong_task_columns(polarity: Any, tokenizer: Any, tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"'sentence1' of task 'rte' is missing.*\['sentence'"):
        tokenize_task(polarity, "rte", tokenizer, 32, cache_dir=tmp_path)


def test_bad_tokenizer_path(polarity: Any, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="`tokenizer`"):
        tokenize_task(polarity, "pang_lee_polarity", str(tmp_path / "nope"), 32, tmp_path)


def test_training_subset(polarity: Any, tokenizer: Any, tmp_path: Path) -> None:
    train = tokenize_task(polarity, "pang_lee_polarity", tokenizer, 32, cache_dir=tmp_path)["train"]
    quarter = training_subset(train, fraction=0.25, seed=0)
    half = training_subset(train, fraction=0.5, seed=0)
    assert (len(quarter), len(half)) == (30, 60)
    assert quarter.cache_files == train.cache_files  # rows selected, not re-tokenised
    assert set(map(tuple, quarter["input_ids"])) <= set(map(tuple, half["input_ids"]))
    assert training_subset(train, count=30, seed=0)["input_ids"] == quarter["input_ids"]
    assert training_subset(train, count=30, seed=1)["input_ids"] != quarter["input_ids"]
    assert len(training_subset(train, count=10_000)) == len(train)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({}, "`fraction/count`"), ({"fraction": 0.5, "count": 3}, "(0.5, 3)"),
     ({"fraction": 0.0}, "`fraction`.*got 0.0"), ({"fraction": 1.5}, "got 1.5"),
     ({"count": 0}, "`count`.*got 0"), ({"count": 5, "seed": -2}, "`seed`.*got -2")],
)  # fmt: skip
def test_training_subset_errors(polarity: Any, kwargs: dict, needle: str) -> None:
    with pytest.raises(TaskError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        training_subset(polarity["train"], **kwargs)
