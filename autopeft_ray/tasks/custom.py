"""Your own task: any dataset with one or two text columns and a label column.

:func:`task_from_data` builds a :class:`TaskSpec` from a local file or folder
(csv, tsv, json, jsonl, parquet), a task-spec JSON file, or a hub dataset name.
It reads the training split once to check the columns and to fix the labels:
string labels map to their sorted order (``label_names``), integer labels are
ids. The spec records where the data lives (``data_files`` or ``hub_path``), so
it alone says what a trial trains on: ``TrainingSettings(task=spec)`` carries it
to Ray workers, and ``search.json`` keeps it for ``evaluate`` and ``report``.

A missing validation split is cut from train (seeded), a missing test split
from validation, as for registered tasks; every split needs at least
``MIN_SPLIT_ROWS`` rows, and the training split at least two classes.

With ``causal_lm=True`` the task is causal-LM fine-tuning instead: no label
column; one text column (the loss on every token) or a prompt and a response
column (the loss on the response only). :func:`causal_lm_task` makes the same
of a registered task's text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import TaskError, invalid_value, shorten
from autopeft_ray.models import CAUSAL_LM
from autopeft_ray.network import ensure_hub, offline_hint

from .files import path_exists, read_table, resolve_data_files
from .registry import (
    CAUSAL_LM_METRICS,
    CLASSIFICATION_METRICS,
    LABEL,
    REGRESSION_METRICS,
    TASKS,
    TaskSpec,
)

#: Text columns used when none are named, in this order of preference.
DEFAULT_TEXT_COLUMNS = (("sentence1", "sentence2"), ("text",), ("sentence",))
#: The same for a causal-LM task: a prompt and its response, or one text.
DEFAULT_LM_COLUMNS = (("prompt", "response"), ("text",), ("sentence",))
METRICS = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS, *CAUSAL_LM_METRICS)


def is_task_name(value: str) -> bool:
    """True for a registered task's name (or alias)."""
    from .registry import get_task

    try:
        get_task(value)
    except TaskError:
        return False
    return True


def task_from_data(
    source: str | Path,
    *,
    text_columns: tuple[str, ...] | list[str] | None = None,
    label_column: str | None = None,
    metric: str | None = None,
    regression: bool = False,
    name: str | None = None,
    causal_lm: bool = False,
) -> TaskSpec:
    """A task for your own data (see the module docstring).

    Args:
        source: a data file or folder (``train.<ext>``, optional
            ``validation.<ext>``/``dev.<ext>`` and ``test.<ext>``), a task-spec
            JSON file (``TaskSpec.to_dict()``), or a hub dataset name.
        text_columns: one or two text columns; default ``sentence1, sentence2``,
            ``text`` or ``sentence``, whichever the data has.
        label_column: default ``label``.
        metric: the score (accuracy, f1, f1_macro, matthews_correlation,
            pearson, spearman); default accuracy, or pearson and spearman for
            ``regression``.
        regression: numeric labels, one output.
        name: the task's name in reports (default: from the source).
        causal_lm: causal-LM fine-tuning: no labels; ``text_columns`` are a
            text, or a prompt and a response (default ``prompt, response``,
            ``text`` or ``sentence``); ``metric`` is ``token_accuracy``
            (default) or ``neg_loss``.

    Raises:
        TaskError: a missing column (naming those found), a single class, a
            non-numeric label with ``regression``, an unreadable or empty file.
    """
    path = Path(source).expanduser()
    local = path_exists(path)
    if local and path.suffix.lower() == ".json" and _is_spec_file(path):
        return TaskSpec.from_dict(json.loads(path.read_text()))
    if metric is not None and metric not in METRICS:
        raise invalid_value("metric", metric, valid=METRICS, cls=TaskError)
    if causal_lm:
        _check_causal_lm_options(metric, regression, label_column)
    columns, labels, where = _read_train(path) if local else _read_hub_train(str(source))
    texts = _text_columns(
        text_columns, columns, where, DEFAULT_LM_COLUMNS if causal_lm else DEFAULT_TEXT_COLUMNS
    )
    origin: dict[str, Any] = (
        {"data_files": str(path.resolve())} if local else {"hub_path": (str(source), "")}
    )
    task_name = name or _name_of(path.stem if local else str(source))
    if causal_lm:
        return TaskSpec(
            name=task_name,
            text_columns=texts,
            num_labels=0,
            metrics=CAUSAL_LM_METRICS,
            score_metrics=(metric or CAUSAL_LM_METRICS[0],),
            description=f"Your data, causal-LM fine-tuning: {shorten(str(source))}",
            user_data=True,
            kind=CAUSAL_LM,
            **origin,
        )
    label = label_column or LABEL
    if label not in columns:
        raise TaskError(
            f"The label column {shorten(repr(label))} is not in {where}; columns found: "
            f"{shorten(str(sorted(columns)), 300)}. Name it with --label-column."
        )
    values = labels(label)
    spec_fields: dict[str, Any] = {
        "name": task_name,
        "text_columns": texts,
        "label_column": label,
        "description": f"Your data: {shorten(str(source))}",
        "user_data": True,
        **origin,
    }
    if regression:
        _check_numeric(values, where)
        metrics = (metric,) if metric else REGRESSION_METRICS
        return TaskSpec(num_labels=1, metrics=metrics, score_metrics=metrics, **spec_fields)
    label_names, num_labels = _classes(values, where)
    metrics = (metric,) if metric else ("accuracy",)
    return TaskSpec(
        num_labels=num_labels,
        metrics=metrics,
        score_metrics=metrics,
        label_names=label_names,
        **spec_fields,
    )


def causal_lm_task(task: TaskSpec, metric: str | None = None) -> TaskSpec:
    """Causal-LM fine-tuning on ``task``'s text, from the same source (its labels unused).

    One text column: the loss on every token; two: the first is the prompt,
    the second the response (the loss on the response only). The task is
    named ``<name>_lm``.

    Args:
        task: a task (registered or your own) whose text to model.
        metric: the score, ``token_accuracy`` (default) or ``neg_loss``.
    """
    if task.is_causal_lm:
        return task
    _check_causal_lm_options(metric, False, None)
    data = task.to_dict()
    data.update(
        name=f"{task.name}_lm",
        num_labels=0,
        metrics=list(CAUSAL_LM_METRICS),
        score_metrics=[metric or CAUSAL_LM_METRICS[0]],
        label_names=[],
        description=f"Causal-LM fine-tuning on the text of {task.name}. {task.description}",
        kind=CAUSAL_LM,
    )
    return TaskSpec.from_dict(data)


def _check_causal_lm_options(metric: str | None, regression: bool, label_column: Any) -> None:
    if metric is not None and metric not in CAUSAL_LM_METRICS:
        raise invalid_value(
            "metric",
            metric,
            valid=CAUSAL_LM_METRICS,
            fix="A causal-LM task is scored on its target tokens.",
            cls=TaskError,
        )
    if regression:
        raise TaskError(
            "`regression` predicts a number per text; a causal-LM task predicts the next "
            "tokens. Drop one of --regression and --causal-lm."
        )
    if label_column is not None:
        raise TaskError(
            f"`label_column` {shorten(repr(label_column))} was given, but a causal-LM task has "
            f"no labels: it models its text columns (a text, or a prompt and a response). "
            f"Drop --label-column, or drop --causal-lm to classify."
        )


def _is_spec_file(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "text_columns" in data


def _name_of(text: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "custom"
    return f"{name}_data" if name in TASKS else name


def _read_train(path: Path) -> tuple[list[str], Any, str]:
    train = resolve_data_files(path, require_validation=False)["train"]
    try:
        frame = read_table(train)
    except (OSError, ValueError) as exc:
        raise TaskError(
            f"Could not read {str(train)!r}: {exc.__class__.__name__}: "
            f"{shorten(str(exc).splitlines()[0] if str(exc) else '')}"
        ) from None
    if frame.empty:
        raise TaskError(f"{str(train)!r} holds no rows.")
    return [str(c) for c in frame.columns], lambda c: frame[c].tolist(), repr(str(train))


def _read_hub_train(name: str) -> tuple[list[str], Any, str]:
    if not path_exists(Path(name)):  # a local dataset folder needs no hub
        ensure_hub()  # one short probe: without a network, offline at once instead of retries
    try:
        from datasets import load_dataset

        train = load_dataset(name, split="train")
    except Exception as exc:  # offline, network, auth and not-found errors share no base
        raise TaskError(
            f"`task` {shorten(repr(name))} is not a registered task ({', '.join(TASKS)}), "
            f"not an existing file or folder, and no hub dataset of that name could be "
            f"loaded ({exc.__class__.__name__}: "
            f"{shorten(str(exc).splitlines()[0] if str(exc) else '')}).{offline_hint()} "
            f"Check the name or the path."
        ) from None
    features = train.features

    def labels(column: str) -> list[Any]:
        feature = features[column]
        names = getattr(feature, "names", None)
        values = train[column]
        return [names[v] for v in values] if names else values

    return list(train.column_names), labels, f"hub dataset {name!r} (train split)"


def _text_columns(
    given: Any,
    columns: list[str],
    where: str,
    defaults: tuple[tuple[str, ...], ...] = DEFAULT_TEXT_COLUMNS,
) -> tuple[str, ...]:
    found = shorten(str(sorted(columns)), 300)
    if given:
        missing = [c for c in given if c not in columns]
        if missing:
            raise TaskError(
                f"Text column(s) {shorten(str(missing))} not in {where}; columns found: {found}."
            )
        return tuple(given)
    for candidate in defaults:
        if all(c in columns for c in candidate):
            return candidate
    raise TaskError(
        f"No text column in {where}: none of {[list(c) for c in defaults]}; "
        f"columns found: {found}. Name one or two with --text-columns."
    )


def _check_numeric(values: list[Any], where: str) -> None:
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if number != number or isinstance(value, bool):  # NaN: not a number
            raise TaskError(
                f"Label {shorten(repr(value))} in {where} is not a number, and the task is a "
                f"regression (--regression). Drop --regression for class labels."
            )


def _classes(values: list[Any], where: str) -> tuple[tuple[str, ...], int]:
    """``(label_names, num_labels)``: sorted strings, or integer ids as they are."""
    present = [v for v in values if v is not None and v == v]  # NaN != NaN
    if len(present) < len(values):
        raise TaskError(f"The label column of {where} has empty cells; every row needs a label.")
    as_ints = [_as_int(v) for v in present]
    strings = [v for v in present if isinstance(v, str)]
    numbers = [v for v in present if not isinstance(v, str)]
    if strings and numbers and any(i is None for i in as_ints):
        raise TaskError(
            f"The labels of {where} mix types (numbers and strings), such as "
            f"{shorten(repr(numbers[0]))} and {shorten(repr(strings[0]))}: a label is a class id "
            f"or a class name, not both. Write every label as a name (a quoted string) or every "
            f"label as an integer id."
        )
    fractional = [v for v in numbers if _as_int(v) is None]
    if fractional:
        raise TaskError(
            f"Label {shorten(repr(fractional[0]))} in {where} is a number with a fraction; class "
            f"labels are integer ids or names. Pass --regression to predict numbers, or write "
            f"the labels as names (quoted strings)."
        )
    if all(i is not None for i in as_ints):
        ids = sorted({int(i) for i in as_ints if i is not None})
        if ids[0] < 0:
            raise TaskError(f"Label {ids[0]} in {where} is negative; ids start at 0.")
        if len(ids) < 2:
            raise TaskError(f"The training split of {where} has a single class ({ids[0]}).")
        return (), ids[-1] + 1
    names = sorted({str(v).strip() for v in present})
    if len(names) < 2:
        raise TaskError(
            f"The training split of {where} has a single class ({shorten(repr(names[0]))})."
        )
    return tuple(names), len(names)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
