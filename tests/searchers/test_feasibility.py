"""The feasibility model: fitted once a trial fails, a constraint of qLogNEHVI, part of the state."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives import FAILED
from autopeft_ray.searchers import AutoPEFTSearcher
from autopeft_ray.searchers.records import (
    FAILED_VALUE,
    RAN_VALUE,
    TrialRecord,
    feasibility_observations,
)
from autopeft_ray.searchers.surrogate import DTYPE, build_acquisition, build_model
from autopeft_ray.space import PeftConfiguration, SearchSpace
from autopeft_ray.space.encoding import canonical_encoding
from autopeft_ray.testing.synthetic import SyntheticPeftProblem

#: MAP and a small acquisition: a model-based step in about a second.
QUICK_MAP = {"surrogate": "saas-map", "num_initial": 0, "num_restarts": 4, "raw_samples": 64}


def fails(config: PeftConfiguration) -> bool:
    """The failing region: parallel adapters of size 16 or more, what the score likes most
    (as an out-of-memory error would strike the largest modules)."""
    return config.pa_size >= 16


def with_history(
    searcher: AutoPEFTSearcher, problem: SyntheticPeftProblem, n: int = 30, seed: int = 0
) -> AutoPEFTSearcher:
    """``n`` random configurations evaluated beforehand: those in the region failed."""
    rng = random.Random(seed)
    added: set[PeftConfiguration] = set()
    while len(added) < n:
        config = problem.space.sample(rng)
        if config.model_key() in added:
            continue
        added.add(config.model_key())
        if fails(config):
            searcher.add_evaluated_point(config.to_dict(), 0.0, error=True)
        else:
            searcher.add_evaluated_point(config.to_dict(), problem.score(config))
    return searcher


def suggestions(searcher: AutoPEFTSearcher, space: SearchSpace, k: int) -> list[PeftConfiguration]:
    """``k`` suggestions in a row, each pending for the next (one fit)."""
    out = []
    for i in range(k):
        config = searcher.suggest(f"next-{i}")
        assert isinstance(config, dict)
        out.append(space.from_trial_config(config))
    return out


def test_feasibility_observations_are_one_per_configuration_failed_or_ran(space):
    ran, failed = space.configuration(pa_size=4), space.configuration(pa_size=64)
    records = [
        TrialRecord("a", ran, "completed", 0.7),
        TrialRecord("b", space.configuration(sa_size=2), "early_stopped", 0.5),
        TrialRecord("c", failed, FAILED),
    ]
    data = feasibility_observations(records)
    assert [(c, v) for c, v, _ in data] == [
        (ran, RAN_VALUE),
        (space.configuration(sa_size=2), RAN_VALUE),
        (failed, FAILED_VALUE),
    ]


@pytest.fixture(scope="module")
def constrained(
    space: SearchSpace, problem: SyntheticPeftProblem
) -> tuple[AutoPEFTSearcher, list[PeftConfiguration]]:
    """A searcher (defaults: failures fitted and the feasibility model) after 30 results,
    a third of them failed, and its next 4 suggestions (local search, one fit)."""
    searcher = with_history(AutoPEFTSearcher(space, problem.cost, seed=0, **QUICK_MAP), problem)
    return searcher, suggestions(searcher, space, 4)


def test_feasibility_model_is_fitted_once_a_trial_fails_and_suggestions_avoid_the_region(
    constrained, space
):
    searcher, picked = constrained
    failed = sum(r.status == FAILED for r in searcher.records)
    assert failed >= 5 and len(searcher.records) == 30
    assert searcher.score_model.feasibility is not None
    assert searcher.score_model.feasibility[0] == (30, failed)  # one row per configuration
    steps = [t for t in searcher.timings if t.get("fallback", "") is None]
    assert len(steps) == 4 and all(t["feasibility_fit_s"] is not None for t in steps)
    assert not any(fails(c) for c in picked), [c.describe() for c in picked]

    # The model learned the region: a failing configuration is likelier to fail.
    model = searcher._saas._feasibility(searcher._snapshot())  # on encodings, the cached fit
    probe = [space.configuration(pa_size=64, layers=[1] * 4), space.configuration(sa_size=4)]
    X = torch.tensor([canonical_encoding(space, c) for c in probe], dtype=DTYPE)
    with torch.no_grad():
        mean = model.posterior(X).mean.squeeze(-1)
    assert mean[0] > 0 > mean[1]


def test_without_the_feasibility_model_the_score_model_chases_the_failing_region(space, problem):
    """The contrast: fitting completed results only, the model likes the failing region."""
    searcher = AutoPEFTSearcher(
        space, problem.cost, seed=0, model_failures=False, model_feasibility=False, **QUICK_MAP
    )
    picked = suggestions(with_history(searcher, problem), space, 4)
    assert searcher.score_model.feasibility is None
    assert any(fails(c) for c in picked)


def test_no_feasibility_model_while_no_trial_has_failed(space, problem, driver):
    searcher = AutoPEFTSearcher(space, problem.cost, seed=0, **{**QUICK_MAP, "num_initial": 4})
    driver(searcher).run(6, concurrency=2)
    steps = [t for t in searcher.timings if "feasibility_fit_s" in t]
    assert steps and all(t["feasibility_fit_s"] is None for t in steps)
    assert searcher.score_model.feasibility is None


def test_constrained_acquisition_takes_the_third_output_as_constraint(constrained, space):
    searcher, _ = constrained
    assert searcher.score_model.fitted is not None
    score, feasibility = (
        searcher.score_model.fitted[1],
        searcher._saas._feasibility(searcher._snapshot()),
    )
    completed = [r.config for r in searcher.records if r.status != FAILED]
    X = torch.tensor([canonical_encoding(space, c) for c in completed], dtype=DTYPE)
    known = searcher.score_model.known()
    plain = build_acquisition(build_model(space, score, known), (0.0, -1.0), X, None, 8, 0)
    weighed = build_acquisition(
        build_model(space, score, known, feasibility), (0.0, -1.0), X, None, 8, 0
    )
    assert plain.constraints is None and weighed.constraints is not None
    failing = space.configuration(pa_size=64, layers=[1] * 4)
    x = torch.tensor([[canonical_encoding(space, failing)]], dtype=DTYPE)
    with torch.no_grad():
        assert weighed(x) < plain(x) - 1.0  # weighed by its small chance of running
    # The baseline is pruned under the constraint too (max_baseline).
    pruned = build_acquisition(
        build_model(space, score, known, feasibility), (0.0, -1.0), X, None, 8, 0, 4
    )
    assert len(pruned.X_baseline) <= 4
    with torch.no_grad():
        assert torch.isfinite(pruned(x)).all()


def test_model_feasibility_is_in_the_settings_and_the_state_round_trips(space, problem):
    searcher = with_history(
        AutoPEFTSearcher(space, problem.cost, seed=0, model_feasibility=False, **QUICK_MAP),
        problem,
        n=8,
    )
    state = searcher.get_state()
    assert state["settings"]["model_feasibility"] is False
    restored = AutoPEFTSearcher(space, problem.cost, seed=0, model_feasibility=False, **QUICK_MAP)
    restored.set_state(state)
    assert restored.get_state() == state
    assert AutoPEFTSearcher(space, problem.cost).get_state()["settings"]["model_feasibility"]

    # A state saved before the option restores (the records are what matter).
    old: dict[str, Any] = {**state, "settings": dict(state["settings"])}
    del old["settings"]["model_feasibility"]
    fresh = AutoPEFTSearcher(space, problem.cost, seed=0, **QUICK_MAP)
    fresh.set_state(old)
    assert fresh.records == searcher.records and fresh.model_feasibility is True


def test_model_feasibility_must_be_a_bool(space, problem):
    with pytest.raises(ConfigurationError, match="model_feasibility"):
        AutoPEFTSearcher(space, problem.cost, model_feasibility="yes")  # type: ignore[arg-type]
