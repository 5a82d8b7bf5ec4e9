"""A trainable's own ``param_fraction`` against ``cost_fn``'s: which one counts, and a warning."""

from __future__ import annotations

import logging

import pytest

from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION, SCORE, TARGET_FIDELITY
from autopeft_ray.searchers import AutoPEFTSearcher, PeftSearcherBase


def _result(fraction: float) -> dict[str, float]:
    return {SCORE: 0.7, PARAM_FRACTION: fraction, FIDELITY: 4, TARGET_FIDELITY: 4}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cost_fn gives" in r.getMessage()]


@pytest.mark.parametrize("kind", ["random", "autopeft"])
def test_a_disagreeing_fraction_is_warned_once_naming_both(make_searcher, driver, caplog, kind):
    searcher = make_searcher(kind)
    run = driver(searcher)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            run.suggest()
            run.finish_oldest(_result(0.5))
    (message,) = _warnings(caplog)
    computed = searcher.cost_fn(searcher.records[0].config)
    assert "param_fraction=0.5," in message and f"cost_fn gives {computed:.6g}" in message
    # cost_fn's value is the one recorded (and fitted), as the docstring says.
    assert all(
        r.param_fraction == pytest.approx(searcher.cost_fn(r.config)) for r in searcher.records
    )


def test_a_fraction_equal_up_to_rounding_is_not_warned(make_searcher, driver, caplog):
    searcher = make_searcher("random")
    run = driver(searcher)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            config = run.suggest()
            exact = searcher.cost_fn(searcher.space.from_trial_config(config))
            run.finish_oldest(_result(float(f"{exact:.3g}")))  # three significant digits
    assert _warnings(caplog) == []


def test_the_docstrings_say_which_fraction_is_used():
    for cls in (PeftSearcherBase, AutoPEFTSearcher):
        doc = " ".join((cls.__doc__ or "").split())
        assert "not a ``param_fraction`` the trainable reports" in doc or (
            "also when the trainable reports its own ``param_fraction``" in doc
        ), cls
