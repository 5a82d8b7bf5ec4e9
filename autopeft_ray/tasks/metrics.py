"""Task metrics and the single ``score`` a search maximises.

Small numpy implementations that match scikit-learn's definitions (checked in
the tests); correlations come from scipy, a dependency of BoTorch. Degenerate
inputs return 0.0 rather than NaN, because a NaN objective would poison the
searcher's model: a constant prediction has no correlation with the labels,
and F1 with no predicted and no true positives is 0 (scikit-learn's default).

A causal-LM task is scored from sums over its target tokens, accumulated batch
by batch (:func:`causal_lm_metrics`): no per-example predictions are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autopeft_ray.exceptions import TaskError, invalid_value
from autopeft_ray.objectives import SCORE
from autopeft_ray.tasks.registry import TaskSpec, get_task

Array = NDArray[Any]


def accuracy(predictions: Array, labels: Array) -> float:
    """Fraction of exact matches."""
    return float(np.mean(predictions == labels))


def _f1_for(predictions: Array, labels: Array, positive: int) -> float:
    true_pos = float(np.sum((predictions == positive) & (labels == positive)))
    predicted = float(np.sum(predictions == positive))
    actual = float(np.sum(labels == positive))
    if predicted + actual == 0:
        return 0.0
    return 2.0 * true_pos / (predicted + actual)


def f1(predictions: Array, labels: Array) -> float:
    """Binary F1 of the positive class (label 1)."""
    return _f1_for(predictions, labels, 1)


def f1_macro(predictions: Array, labels: Array) -> float:
    """Unweighted mean of per-class F1 over the classes in labels or predictions."""
    classes = np.union1d(predictions, labels)
    return float(np.mean([_f1_for(predictions, labels, int(c)) for c in classes]))


def matthews_correlation(predictions: Array, labels: Array) -> float:
    """Matthews correlation coefficient (multi-class form, as scikit-learn)."""
    classes = np.union1d(predictions, labels)
    index = {int(c): i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)))
    for true, pred in zip(labels, predictions, strict=True):
        confusion[index[int(true)], index[int(pred)]] += 1
    true_totals = confusion.sum(axis=1)
    pred_totals = confusion.sum(axis=0)
    correct = np.trace(confusion)
    samples = confusion.sum()
    cov_yp = correct * samples - np.dot(true_totals, pred_totals)
    cov_pp = samples**2 - np.dot(pred_totals, pred_totals)
    cov_yy = samples**2 - np.dot(true_totals, true_totals)
    if cov_pp == 0 or cov_yy == 0:
        return 0.0
    return float(cov_yp / np.sqrt(cov_yy * cov_pp))


def _constant(values: Array) -> bool:
    return bool(np.all(values == values[0]))


def pearson(predictions: Array, labels: Array) -> float:
    """Pearson correlation; 0.0 when either side is constant."""
    from scipy.stats import pearsonr

    if len(labels) < 2 or _constant(predictions) or _constant(labels):
        return 0.0
    return float(pearsonr(predictions, labels)[0])


def spearman(predictions: Array, labels: Array) -> float:
    """Spearman rank correlation (ties get average ranks); 0.0 when either side is constant."""
    from scipy.stats import spearmanr

    if len(labels) < 2 or _constant(predictions) or _constant(labels):
        return 0.0
    return float(spearmanr(predictions, labels)[0])


METRIC_FUNCTIONS: dict[str, Callable[[Array, Array], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "f1_macro": f1_macro,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearman": spearman,
}


def _as_predictions(task: TaskSpec, predictions: Any) -> Array:
    values = np.asarray(predictions)
    if task.is_regression:
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise invalid_value(
                "predictions",
                f"array of shape {values.shape}",
                expected="shape (n,) or (n, 1) for a regression task",
                cls=TaskError,
            )
        return values.astype(np.float64)
    if values.ndim == 2:
        if values.shape[1] != task.num_labels:
            raise invalid_value(
                "predictions",
                f"logits of shape {values.shape}",
                expected=f"shape (n, {task.num_labels}) for task {task.name!r}",
                cls=TaskError,
            )
        return values.argmax(axis=1)
    if values.ndim != 1:
        raise invalid_value(
            "predictions",
            f"array of shape {values.shape}",
            expected="class ids of shape (n,) or logits of shape (n, num_labels)",
            cls=TaskError,
        )
    return values.astype(np.int64)


def causal_lm_metrics(
    task: TaskSpec | str, *, correct: float, tokens: float, loss_sum: float
) -> dict[str, float]:
    """Every metric of a causal-LM task and its ``score``, from sums over its target tokens.

    Args:
        task: a causal-LM :class:`TaskSpec` (or its dict).
        correct: target tokens whose greedy next-token prediction was right.
        tokens: target tokens scored (the response's, or every token but the first).
        loss_sum: summed next-token cross-entropy over them, in nats.

    Returns:
        ``{"score": ..., "token_accuracy": correct / tokens, "neg_loss": -loss_sum / tokens}``.

    Raises:
        TaskError: not a causal-LM task, or no target token (every response empty
            or cut off by ``max_length``).
    """
    spec = get_task(task)
    if not spec.is_causal_lm:
        raise invalid_value("task", spec.name, expected="a causal-LM task", cls=TaskError)
    if tokens <= 0:
        raise TaskError(
            f"Task {spec.name!r} has no target token to score in this split: every response is "
            f"empty or was cut off. Raise `max_length`, or check the response column."
        )
    out = {"token_accuracy": float(correct) / tokens, "neg_loss": -float(loss_sum) / tokens}
    result = {SCORE: float(np.mean([out[name] for name in spec.score_metrics]))}
    result.update({name: out[name] for name in spec.metrics})
    return result


def compute_metrics(task: TaskSpec | str, predictions: Any, labels: Any) -> dict[str, float]:
    """Every metric of ``task`` and its ``score`` (the mean of ``task.score_metrics``).

    Args:
        task: a :class:`TaskSpec` or a registered task name.
        predictions: class ids ``(n,)`` or logits ``(n, num_labels)`` for
            classification; values ``(n,)`` or ``(n, 1)`` for regression.
        labels: true labels, shape ``(n,)``.

    Returns:
        ``{"score": ..., "<metric>": ...}`` for each of ``task.metrics``, as floats.

    Raises:
        TaskError: shapes do not match or there is nothing to score.
    """
    spec = get_task(task)
    preds = _as_predictions(spec, predictions)
    truth = np.asarray(labels)
    if truth.ndim != 1 or len(truth) != len(preds) or len(truth) == 0:
        raise invalid_value(
            "labels",
            f"array of shape {truth.shape}",
            expected=f"a non-empty 1-D array as long as the predictions ({len(preds)})",
            cls=TaskError,
        )
    truth = truth.astype(np.float64 if spec.is_regression else np.int64)
    out = {name: METRIC_FUNCTIONS[name](preds, truth) for name in spec.metrics}
    result = {SCORE: float(np.mean([out[name] for name in spec.score_metrics]))}
    result.update(out)
    return result
