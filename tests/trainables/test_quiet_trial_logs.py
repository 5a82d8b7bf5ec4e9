"""The trainable drops two library lines on the Python path too (the CLI hides all trial
output): transformers' "newly initialized" warning and Ray's checkpoint line."""

from __future__ import annotations

import logging

import pytest

from autopeft_ray.space import SearchSpace
from autopeft_ray.trainables import quiet_trial_logs, run_training


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines():
    """What the two loggers let through (handlers on the loggers themselves)."""
    handler = _Lines()
    names = ("transformers.modeling_utils", "ray.train._internal.storage")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler.lines
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_trial_does_not_print_newly_initialized(settings, lines):
    """A real training run on a base model checkpoint: its task head is new."""
    reports: list[dict] = []
    configuration = SearchSpace(6, 32).configuration(sa_size=8, pa_size=0, pt_length=0)
    run_training(
        configuration.to_dict(),
        lambda result, folder: reports.append(result),
        settings=settings.replace(max_steps=2, num_evaluations=1),
    )
    assert reports
    assert not [line for line in lines if "newly initialized" in line], lines


def test_only_the_two_lines_are_dropped(lines):
    quiet_trial_logs()
    quiet_trial_logs()  # twice: one filter each
    storage = logging.getLogger("ray.train._internal.storage")
    storage.info("Checkpoint successfully created at: Checkpoint(filesystem=local, path=/x)")
    storage.info("Something else")
    logging.getLogger("transformers.modeling_utils").warning(
        "Some weights of BertForSequenceClassification were not initialized from the model "
        "checkpoint at x and are newly initialized: ['classifier.bias']"
    )
    assert lines == ["Something else"]
    assert len(storage.filters) == 1
