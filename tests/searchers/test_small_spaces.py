"""A narrowed space nearly used up is enumerated, and param_space errors show Tune's domains."""

from __future__ import annotations

import logging

import pytest
from ray import tune

from autopeft_ray.exceptions import ConfigurationError

#: Serial adapters of size 0 or 8, layers 0 and 1 on: 8 lattice points, 5 distinct models.
NARROW = {"sa_size": tune.choice([0, 8]), "pa_size": 0, "pt_length": 0, "layer_0": 1, "layer_1": 1}


def test_a_nearly_used_up_space_is_enumerated_without_a_traceback(make_searcher, driver, caplog):
    # The default num_restarts: more local-search starts than unseen lattice points.
    searcher = make_searcher("autopeft", num_initial=3, surrogate="saas-map", num_restarts=10)
    searcher.set_search_properties("score", "max", dict(NARROW))
    assert searcher.num_distinct == 5
    run = driver(searcher)
    with caplog.at_level(logging.INFO):
        run.run(10, concurrency=1)
    assert len({c.model_key() for c in run.suggested}) == len(run.suggested) == 5
    assert searcher.suggest("one more") == "FINISHED"
    # Both model-based suggestions came from the model: no error, no fallback.
    assert [t["fallback"] for t in searcher.timings] == [None, None]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "initial conditions" not in caplog.text


@pytest.mark.parametrize(
    "value, shown",
    [
        (tune.choice([0, 3]), "tune.choice([0, 3])"),
        (tune.uniform(0, 8), "tune.uniform(0, 8)"),
        (tune.qrandint(0, 64, 4), "tune.qrandint(0, 64, 4)"),
        (tune.randint(0, 4), "tune.randint(0, 4)"),
    ],
)
def test_param_space_errors_show_the_domain(make_searcher, value, shown):
    searcher = make_searcher("random")
    with pytest.raises(ConfigurationError) as raised:
        searcher.set_search_properties("score", "max", {"sa_size": value})
    message = str(raised.value)
    assert shown in message and "object at 0x" not in message
    assert "param_space['sa_size']" in message
