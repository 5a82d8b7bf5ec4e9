"""Task data for a trial's settings: loaded, tokenised once (Arrow cache), subset.

The driver calls :func:`prepare_data` before Ray starts (it validates the task
and data files and fills the cache), and each trial calls it again (a cache
hit). ``settings`` is anything with the data fields of
:class:`autopeft_ray.config.TrainingSettings`.

Batches are padded per batch by the collator: ``DataCollatorWithPadding`` for
sequence classification, :class:`CausalLMCollator` for a causal-LM task (its
per-token targets padded with ``IGNORE_INDEX``). A decoder's tokenizer without
a pad token pads with its end-of-sequence token
(:func:`autopeft_ray.models.fill_pad_token`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class DataSettings(Protocol):
    """The fields of ``TrainingSettings`` that say which data a trial sees."""

    @property
    def model(self) -> str: ...
    @property
    def task(self) -> str | dict[str, Any]: ...
    @property
    def data_files(self) -> Any: ...
    @property
    def max_length(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def cache_dir(self) -> str | None: ...
    @property
    def train_examples(self) -> int | None: ...
    @property
    def train_fraction(self) -> float: ...
    @property
    def max_eval_examples(self) -> int | None: ...


@dataclass
class PreparedData:
    """Tokenised splits (memory-mapped Arrow) and what the loop needs to batch them."""

    train: Any
    validation: Any
    test: Any
    task: Any
    collator: Any


@dataclass
class CausalLMCollator:
    """Pad a causal-LM batch on the right: ids with the pad token, targets with ``IGNORE_INDEX``.

    Takes a dict of columns (``dataset[rows]``) or a list of examples, and
    returns tensors ``input_ids``, ``attention_mask`` and ``labels``. Right
    padding keeps every real token at the position it had alone, so padding
    changes neither the loss nor the predictions.
    """

    tokenizer: Any

    def __call__(self, batch: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> Any:
        import torch

        from .tokenization import IGNORE_INDEX, LABELS

        if not isinstance(batch, Mapping):
            batch = {key: [example[key] for example in batch] for key in batch[0]}
        ids, targets = batch["input_ids"], batch[LABELS]
        width = max(len(row) for row in ids)
        pad = int(self.tokenizer.pad_token_id)

        def padded(rows: Sequence[Sequence[int]], value: int) -> Any:
            return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows])

        return {
            "input_ids": padded(ids, pad),
            "attention_mask": padded([[1] * len(row) for row in ids], 0),
            LABELS: padded(targets, IGNORE_INDEX),
        }


def prepare_data(settings: DataSettings) -> PreparedData:
    """Load and tokenise the task once (cached as Arrow), then take the training subset."""
    import datasets
    from transformers import DataCollatorWithPadding

    from autopeft_ray.models import load_tokenizer, resolve_model

    from .loading import load_task
    from .registry import get_task
    from .tokenization import tokenize_task, training_subset

    datasets.disable_progress_bars()  # one bar per split per trial floods Ray's logs
    task = get_task(settings.task)
    model_path = resolve_model(settings.model)
    raw = load_task(task, data_files=settings.data_files, seed=settings.seed)
    tokenized = tokenize_task(
        raw, task, model_path, settings.max_length, cache_dir=settings.cache_dir
    )
    train = tokenized["train"]
    if settings.train_examples is not None:
        train = training_subset(
            train, count=min(settings.train_examples, len(train)), seed=settings.seed
        )
    elif settings.train_fraction < 1:
        train = training_subset(train, fraction=settings.train_fraction, seed=settings.seed)
    validation = tokenized["validation"]
    if settings.max_eval_examples is not None and len(validation) > settings.max_eval_examples:
        validation = validation.select(range(settings.max_eval_examples))
    tokenizer = load_tokenizer(model_path)
    collator = (
        CausalLMCollator(tokenizer)
        if task.is_causal_lm
        else DataCollatorWithPadding(tokenizer, return_tensors="pt")
    )
    return PreparedData(
        train=train,
        validation=validation,
        test=tokenized["test"],
        task=task,
        collator=collator,
    )
