"""Causal-LM tasks: the spec, your own prompt/response data, a registered task's text,
tokenisation with the loss on the response only, the collator, the metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autopeft_ray.exceptions import TaskError
from autopeft_ray.models import CAUSAL_LM, DEFAULT_MODEL, load_tokenizer
from autopeft_ray.tasks import get_task, load_task, task_from_data, tokenize_task
from autopeft_ray.tasks.custom import causal_lm_task
from autopeft_ray.tasks.metrics import causal_lm_metrics
from autopeft_ray.tasks.prepare import CausalLMCollator
from autopeft_ray.tasks.registry import TaskSpec
from autopeft_ray.tasks.tokenization import IGNORE_INDEX

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROMPTS = FIXTURES / "prompt_response.csv"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(DEFAULT_MODEL)


def test_own_prompt_response_data_is_a_causal_lm_task() -> None:
    spec = task_from_data(PROMPTS, causal_lm=True)
    assert spec.kind == CAUSAL_LM and spec.is_causal_lm and not spec.is_regression
    assert spec.text_columns == ("prompt", "response") and spec.num_labels == 0
    assert spec.score_metrics == ("token_accuracy",)
    assert spec.data_columns == ("prompt", "response")
    assert TaskSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["kind"] == CAUSAL_LM
    by_loss = task_from_data(PROMPTS, causal_lm=True, metric="neg_loss", text_columns=["prompt"])
    assert by_loss.text_columns == ("prompt",) and by_loss.score_metrics == ("neg_loss",)


def test_classification_specs_are_written_as_before() -> None:
    """No ``kind`` key in a classification spec's dict: caches and run folders are unchanged."""
    assert "kind" not in get_task("rte").to_dict()
    assert TaskSpec.from_dict(get_task("rte").to_dict()).kind == "sequence_classification"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"label_column": "response"}, ["`label_column`", "no labels", "--causal-lm"]),
        ({"regression": True}, ["`regression`", "--causal-lm"]),
        ({"metric": "accuracy"}, ["`metric`", "'token_accuracy'", "got 'accuracy'"]),
        ({"text_columns": ["question"]}, ["['question']", "not in", "prompt"]),
    ],
    ids=["label", "regression", "metric", "column"],
)
def test_bad_causal_lm_options_name_the_field(kwargs, words) -> None:
    with pytest.raises(TaskError) as caught:
        task_from_data(PROMPTS, causal_lm=True, **kwargs)
    for word in words:
        assert word in str(caught.value)


def test_spec_checks_kind_labels_and_metrics() -> None:
    base = {"name": "x", "text_columns": ("text",), "kind": CAUSAL_LM}
    with pytest.raises(TaskError, match="`kind` should be one of"):
        TaskSpec(num_labels=2, metrics=("accuracy",), **{**base, "kind": "lm"})
    with pytest.raises(TaskError, match="`num_labels` should be 0 for a causal-LM task"):
        TaskSpec(
            num_labels=2, metrics=("token_accuracy",), score_metrics=("token_accuracy",), **base
        )
    with pytest.raises(TaskError, match="causal-LM fine-tuning"):
        TaskSpec(num_labels=0, metrics=("accuracy",), **base)


def test_registered_task_text_becomes_a_causal_lm_task() -> None:
    spec = causal_lm_task(get_task("pang_lee_polarity"))
    assert spec.name == "pang_lee_polarity_lm" and spec.is_causal_lm
    assert spec.offline_source == "pang_lee_polarity" and spec.text_columns == ("sentence",)
    assert causal_lm_task(spec) is spec
    data = load_task(spec)
    assert data["train"].column_names == ["sentence"]  # the labels are not read
    assert all(len(data[split]) > 0 for split in ("train", "validation", "test"))


def test_own_data_loads_text_only_with_validation_and_test_cut(tmp_path) -> None:
    data = load_task(task_from_data(PROMPTS, causal_lm=True))
    assert data["train"].column_names == ["prompt", "response"]
    assert sum(len(data[s]) for s in data) == 40 and all(len(data[s]) >= 8 for s in data)


def test_text_column_targets_every_token(tmp_cache, tokenizer) -> None:
    spec = causal_lm_task(get_task("pang_lee_polarity"))
    tokenized = tokenize_task(load_task(spec), spec, tokenizer, 16, cache_dir=tmp_cache)
    row = tokenized["train"][0]
    assert row["labels"] == row["input_ids"] and len(row["input_ids"]) <= 16
    assert tokenized["train"].column_names == ["input_ids", "attention_mask", "labels"]


def test_prompt_and_response_target_the_response_and_its_end(tmp_cache, tokenizer) -> None:
    spec = task_from_data(PROMPTS, causal_lm=True)
    data = load_task(spec)
    tokenized = tokenize_task(data, spec, tokenizer, 32, cache_dir=tmp_cache)
    example, row = data["train"][0], tokenized["train"][0]
    prompt = tokenizer(example["prompt"])["input_ids"]
    response = tokenizer(example["response"], add_special_tokens=False)["input_ids"]
    end = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    assert row["input_ids"] == prompt + response + end
    assert row["labels"] == [IGNORE_INDEX] * len(prompt) + row["input_ids"][len(prompt) :]


def test_a_long_pair_keeps_half_the_length_for_the_response(tmp_cache, tokenizer, tmp_path) -> None:
    long = tmp_path / "long.csv"
    rows = ["prompt,response"] + [
        f'"{" ".join(["word"] * 40)}","{" ".join(["answer"] * 40)}"' for _ in range(30)
    ]
    long.write_text("\n".join(rows) + "\n")
    spec = task_from_data(long, causal_lm=True)
    row = tokenize_task(load_task(spec), spec, tokenizer, 16, cache_dir=tmp_cache)["train"][0]
    assert len(row["input_ids"]) == 16
    assert sum(t != IGNORE_INDEX for t in row["labels"]) == 8  # the response's half
    assert row["input_ids"][7] != tokenizer.cls_token_id  # the prompt lost its start


def test_collator_pads_ids_with_pad_and_targets_with_ignore_index(tokenizer) -> None:
    batch = {"input_ids": [[5, 6, 7], [8]], "labels": [[-100, 6, 7], [8]]}
    padded = CausalLMCollator(tokenizer)(batch)
    assert padded["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert padded["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    as_list = CausalLMCollator(tokenizer)(
        [{"input_ids": [5, 6], "labels": [5, 6]}, {"input_ids": [8], "labels": [8]}]
    )
    assert torch.equal(as_list["labels"], torch.tensor([[5, 6], [8, -100]]))


def test_causal_lm_metrics_from_token_sums() -> None:
    spec = task_from_data(PROMPTS, causal_lm=True)
    metrics = causal_lm_metrics(spec, correct=3, tokens=4, loss_sum=2.0)
    assert metrics == {"score": 0.75, "token_accuracy": 0.75, "neg_loss": -0.5}
    by_loss = task_from_data(PROMPTS, causal_lm=True, metric="neg_loss")
    assert causal_lm_metrics(by_loss, correct=3, tokens=4, loss_sum=2.0)["score"] == -0.5
    with pytest.raises(TaskError, match="no target token"):
        causal_lm_metrics(spec, correct=0, tokens=0, loss_sum=0.0)
    with pytest.raises(TaskError, match="a causal-LM task"):
        causal_lm_metrics("rte", correct=1, tokens=1, loss_sum=0.0)
