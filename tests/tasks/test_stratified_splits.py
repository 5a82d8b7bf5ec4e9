"""Your own small data: missing splits are cut stratified by label, thin classes warned."""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import pytest

from autopeft_ray.tasks import load_task, task_from_data

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _counts(split) -> dict[int, int]:
    return dict(sorted(collections.Counter(split["label"]).items()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_single_file_is_cut_keeping_the_class_balance(seed, caplog):
    """48 reviews, 24 of each verdict: 16 cut off as dev, halved into validation and test."""
    spec = task_from_data(FIXTURES / "reviews.csv", text_columns=["review"], label_column="verdict")
    with caplog.at_level(logging.WARNING):
        data = load_task(spec, seed=seed)
    assert _counts(data["validation"]) == _counts(data["test"]) == {0: 4, 1: 4}
    assert _counts(data["train"]) == {0: 16, 1: 16}
    texts = [set(data[s]["review"]) for s in ("train", "validation", "test")]
    assert sum(len(t) for t in texts) == len(set().union(*texts)) == 48  # a partition
    assert load_task(spec, seed=seed)["validation"]["review"] == data["validation"]["review"]
    assert "fewer than 2 examples" not in caplog.text


def test_a_split_with_a_thin_class_is_warned(tmp_path, caplog):
    rows = [f"review {i},{'rare' if i < 3 else 'common'}" for i in range(60)]
    path = tmp_path / "skewed.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        data = load_task(task_from_data(path), seed=0)
    # 3 rare rows in 60: the 16-row dev cut takes its share (one), which one half keeps.
    rare = data["train"].features["label"].str2int("rare")
    train, validation, test = (
        data[s]["label"].count(rare) for s in ("train", "validation", "test")
    )
    assert train == 2 and sorted([validation, test]) == [0, 1]
    (message,) = [r.getMessage() for r in caplog.records if "fewer than 2" in r.getMessage()]
    assert f"validation (8 rows; 'rare': {validation})" in message
    assert f"test (8 rows; 'rare': {test})" in message and "Add rows" in message
