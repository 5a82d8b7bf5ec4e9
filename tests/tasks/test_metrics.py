"""Task metrics: known answers, scikit-learn agreement and degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autopeft_ray.exceptions import TaskError
from autopeft_ray.tasks import compute_metrics


def test_accuracy_task() -> None:
    out = compute_metrics("rte", [0, 1, 1, 0], [0, 1, 0, 0])
    assert out == {"score": 0.75, "accuracy": 0.75}


def test_mrpc_score_is_mean_of_f1_and_accuracy() -> None:
    # tp=2, fp=1, fn=1, tn=1: F1 = 2*2 / (3 + 3) = 2/3, accuracy = 3/5.
    out = compute_metrics("mrpc", [1, 1, 1, 0, 0], [1, 1, 0, 1, 0])
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["score"] == pytest.approx((2 / 3 + 3 / 5) / 2)


def test_cola_matthews_correlation() -> None:
    # tp=1, fp=1, tn=2, fn=0: (1*2 - 1*0) / sqrt(2 * 1 * 3 * 2).
    out = compute_metrics("cola", [1, 1, 0, 0], [1, 0, 0, 0])
    assert out["matthews_correlation"] == pytest.approx(2 / math.sqrt(12))
    assert out["score"] == out["matthews_correlation"]
    assert out["accuracy"] == 0.75


def test_stsb_pearson_and_spearman() -> None:
    out = compute_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert out["pearson"] == pytest.approx(0.8)
    assert out["spearman"] == pytest.approx(0.8)
    assert out["score"] == pytest.approx(0.8)
    # A monotone but non-linear relation: Spearman 1, Pearson below 1.
    out = compute_metrics("stsb", np.array([[1.0], [2.0], [3.0], [4.0]]), [1.0, 2.0, 4.0, 16.0])
    assert out["spearman"] == pytest.approx(1.0)
    assert 0.8 < out["pearson"] < 1.0


def test_cb_accuracy_and_macro_f1() -> None:
    # Per-class F1: class 0 -> 1, class 1 -> 2/3, class 2 -> 0.
    out = compute_metrics("cb", [0, 1, 1, 0], [0, 1, 2, 0])
    assert out["accuracy"] == 0.75
    assert out["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert out["score"] == pytest.approx((0.75 + (1 + 2 / 3) / 3) / 2)


def test_logits_are_argmaxed() -> None:
    logits = np.array([[2.0, -1.0, 0.0], [0.0, 0.1, 3.0], [0.0, 5.0, 1.0]])
    assert compute_metrics("mnli", logits, [0, 2, 0])["accuracy"] == pytest.approx(2 / 3)


def test_agrees_with_scikit_learn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    out = compute_metrics("qqp", preds, labels)
    assert out["f1"] == pytest.approx(sklearn_metrics.f1_score(labels, preds))
    assert compute_metrics("cola", preds, labels)["matthews_correlation"] == pytest.approx(
        sklearn_metrics.matthews_corrcoef(labels, preds)
    )
    labels3, preds3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert compute_metrics("cb", preds3, labels3)["f1_macro"] == pytest.approx(
        sklearn_metrics.f1_score(labels3, preds3, average="macro")
    )


def test_degenerate_inputs_give_zero_not_nan() -> None:
    assert compute_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["score"] == 0.0
    assert compute_metrics("cola", [1, 1, 1], [0, 1, 0])["matthews_correlation"] == 0.0
    assert compute_metrics("mrpc", [0, 0], [0, 0])["f1"] == 0.0


@pytest.mark.parametrize(
    ("predictions", "labels", "field"),
    [([0, 1, 1], [0, 1], "labels"), ([], [], "labels"), (np.zeros((3, 3)), [0, 1, 0], "predictions"),
     (np.zeros((2, 2, 2)), [0, 1], "predictions")],
)  # fmt: skip
def test_shape_errors_name_the_field(predictions: object, labels: object, field: str) -> None:
    with pytest.raises(TaskError, match=f"`{field}`"):
        compute_metrics("rte", predictions, labels)
