"""One rule for trials stopped early: the searchers, ``pareto_frame`` and the run folder."""

from __future__ import annotations

import pandas as pd
import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives import EARLY_STOPPED, stopped_early
from autopeft_ray.objectives.pareto import pareto_frame
from autopeft_ray.run import ended_status
from autopeft_ray.searchers import RandomPEFTSearcher
from autopeft_ray.space import SearchSpace
from autopeft_ray.testing.synthetic import SyntheticPeftProblem

SPACE = SearchSpace(num_layers=4, hidden_size=64)


def _frame(**extra: list[float]) -> pd.DataFrame:
    """Four trials at fidelity 4 and a cheaper, better one stopped at fidelity 1."""
    return pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d", "stopped"],
            "score": [0.8, 0.7, 0.9, 0.6, 0.95],
            "param_fraction": [0.01, 0.001, 0.05, 0.02, 0.0001],
            "fidelity": [4, 4, 4, 4, 1],
            **extra,
        }
    )


@pytest.mark.parametrize(
    "kwargs, early",
    [
        ({"fidelity": 1, "target_fidelity": 4}, True),
        ({"fidelity": 4, "target_fidelity": 4}, False),
        ({"fidelity": 1, "max_t": 4}, True),  # no target reported: the scheduler's max_t
        ({"fidelity": 1, "largest_fidelity": 4}, True),  # else the largest fidelity seen
        ({"fidelity": 1, "target_fidelity": 1, "max_t": 4}, False),  # a reported target wins
        ({"fidelity": 2, "max_t": 4, "min_fidelity": 2}, False),  # fitted from min_fidelity
        ({"fidelity": None, "target_fidelity": 4}, False),  # no fidelity: a full result
        ({"fidelity": 1}, False),  # no target known at all
    ],
)
def test_the_rule(kwargs, early):
    fidelity = kwargs.pop("fidelity")
    target = kwargs.pop("target_fidelity", None)
    assert stopped_early(fidelity, target, **kwargs) is early


def test_pareto_frame_drops_a_trial_stopped_at_fidelity_1_without_a_target():
    front = pareto_frame(_frame())
    assert "stopped" not in front["trial_id"].tolist()
    assert front["trial_id"].tolist() == ["b", "a", "c"]
    # With the scheduler's max_t, and with a reported target, the same answer.
    assert pareto_frame(_frame(), max_t=4)["trial_id"].tolist() == ["b", "a", "c"]
    reported = _frame(target_fidelity=[4, 4, 4, 4, 4])
    assert pareto_frame(reported)["trial_id"].tolist() == ["b", "a", "c"]
    # A max_t at or below the fidelity reached keeps it (it did reach its target).
    assert pareto_frame(_frame(), max_t=1)["trial_id"].tolist() == ["stopped"]
    with pytest.raises(ConfigurationError, match="`max_t`"):
        pareto_frame(_frame(), max_t=0)


@pytest.mark.parametrize("max_t", [None, 4])
def test_the_searcher_and_pareto_frame_agree(max_t):
    """The same results through a searcher and through pareto_frame: same stopped trials."""
    problem = SyntheticPeftProblem(SPACE, seed=0)
    searcher = RandomPEFTSearcher(SPACE, cost_fn=problem.cost, seed=0, max_t=max_t)
    frame = _frame()
    for row in frame.itertuples():
        config = searcher.suggest(row.trial_id)
        assert isinstance(config, dict)
        searcher.on_trial_complete(
            row.trial_id,
            {"score": row.score, "param_fraction": row.param_fraction, "fidelity": row.fidelity},
        )
    stopped_by_searcher = {r.trial_id for r in searcher.records if r.status == EARLY_STOPPED}
    kept = set(pareto_frame(frame, max_t=max_t, completed_only=True)["trial_id"])
    everything = set(pareto_frame(frame, completed_only=False)["trial_id"])
    assert stopped_by_searcher == {"stopped"}
    assert "stopped" in everything and "stopped" not in kept
    # The run folder's records use it too (the target: reported, else the searcher's max_t).
    assert ended_status({"fidelity": 1}, max_t=4) == EARLY_STOPPED
