"""The synthetic problem has the structure its docstring promises."""

from __future__ import annotations

import random

import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION, SCORE, TARGET_FIDELITY
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.space import SearchSpace
from autopeft_ray.testing.synthetic import (
    SyntheticPeftProblem,
    bert_like_base_params,
    successive_halving,
)


@pytest.fixture
def bert():
    return SyntheticPeftProblem(SearchSpace(12, 768), seed=0)


def test_base_params_match_bert_base_and_minilm():
    assert bert_like_base_params(12, 768) == pytest.approx(109_482_240, rel=0.01)
    assert bert_like_base_params(6, 384) == pytest.approx(22_713_216, rel=0.01)


def test_fraction_is_the_exact_param_cost(bert):
    config = bert.space.configuration(sa_size=64, pa_size=8, active_layers=[10, 11])
    assert bert.param_fraction(config) == ParamCost(768, bert.cost.base_params)(config)


def test_noise_is_seeded_per_configuration(bert):
    config = bert.space.configuration(pa_size=16)
    assert bert.score(config) == bert.score(config)
    other = SyntheticPeftProblem(bert.space, seed=1)
    assert other.score(config) != bert.score(config)
    assert abs(other.score(config) - bert.score(config)) < 10 * bert.noise


def test_degenerate_configurations_score_alike(bert):
    head = [
        bert.space.configuration(sa_size=8, active_layers=[]),
        bert.space.configuration(),
    ]
    assert bert.score(head[0]) == bert.score(head[1])
    assert bert.noiseless_score(head[0]) == bert.head_score


def test_upper_layers_matter_more(bert):
    space = bert.space
    low = space.configuration(pa_size=16, active_layers=[0, 1])
    high = space.configuration(pa_size=16, active_layers=[10, 11])
    assert bert.noiseless_score(high) > bert.noiseless_score(low)
    assert bert.param_fraction(high) == bert.param_fraction(low)


def test_capacity_has_diminishing_returns(bert):
    score = {
        size: bert.noiseless_score(bert.space.configuration(pa_size=size)) for size in (1, 8, 64)
    }
    assert score[1] < score[8] < score[64]
    assert score[8] - score[1] > score[64] - score[8]


def test_modules_differ_in_value_for_cost(bert):
    values = {
        key: bert.noiseless_score(bert.space.configuration(**{key: 16}))
        for key in ("sa_size", "pa_size", "pt_length")
    }
    assert values["pa_size"] > values["sa_size"] > values["pt_length"]


def test_best_score_is_not_at_the_largest_configuration(bert):
    largest = bert.space.configuration(sa_size=512, pa_size=512, pt_length=512)
    medium = bert.space.configuration(sa_size=64, pa_size=64)
    assert bert.noiseless_score(medium) > bert.noiseless_score(largest)


def test_lower_fidelity_gives_lower_scores(bert):
    config = bert.space.configuration(sa_size=32)
    result = bert.evaluate(config, fidelity=20)
    assert result[FIDELITY] == 20 and result[TARGET_FIDELITY] == 100
    assert result[SCORE] < bert.score(config)
    assert bert.evaluate_trial_config(config.to_dict())[PARAM_FRACTION] == result[PARAM_FRACTION]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise": -0.1}, "noise"),
        ({"head_score": 0.95}, "head_score"),
        ({"target_fidelity": 0}, "target_fidelity"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        SyntheticPeftProblem(SearchSpace(2, 16), **kwargs)


def test_successive_halving_promotes_the_best_and_reports_every_rung():
    space = SearchSpace(4, 64)
    problem = SyntheticPeftProblem(space, seed=0, target_fidelity=9)
    rng = random.Random(0)
    configs = [space.sample(rng) for _ in range(9)]
    ended = successive_halving(problem, configs, (1, 3, 9), (5, 2, 2))
    assert sorted(map(id, (c for c, _ in ended))) == sorted(map(id, configs))
    assert [[f for f, _ in reported] for _, reported in ended] == [[1]] * 5 + [[1, 3]] * 2 + [
        [1, 3, 9]
    ] * 2
    first = {id(c): reported[0][1] for c, reported in ended}
    stopped, promoted = [first[id(c)] for c, _ in ended[:5]], [first[id(c)] for c, _ in ended[5:]]
    assert max(stopped) <= min(promoted)
    assert ended[-1][1][-1] == (9, problem.score(ended[-1][0], 9))
    with pytest.raises(ConfigurationError, match="`stops`.*adding up to 9"):
        successive_halving(problem, configs, (1, 3, 9), (5, 2))
