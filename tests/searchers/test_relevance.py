"""Which dimensions matter: SAAS GP relevance on the synthetic problem where the truth is known."""

from __future__ import annotations

import random

import pytest
import torch

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.searchers import fit_relevance
from autopeft_ray.searchers.relevance import model_relevance
from autopeft_ray.searchers.surrogate import fit_map_score_model
from autopeft_ray.testing.synthetic import SyntheticPeftProblem


def _results(problem: SyntheticPeftProblem, count: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    configs = [problem.space.sample(rng) for _ in range(count)]
    return [(c, problem.score(c)) for c in configs]


@pytest.mark.parametrize(
    "relevant", [("pa_size", "layer_3"), ("sa_size",), ("pt_length", "layer_0")]
)
def test_the_dimensions_that_matter_rank_first(space, relevant):
    problem = SyntheticPeftProblem(space, seed=1, noise=0.002, relevant=relevant)
    relevance = fit_relevance(space, _results(problem, 40), seed=0)
    ranked = [row["name"] for row in relevance["dimensions"]]
    assert set(ranked[: len(relevant)]) == set(relevant), relevance
    assert sorted(ranked) == sorted(d.name for d in space.dimensions)
    assert relevance["source"] == "saas-map refit" and relevance["n_observations"] == 40
    top, rest = relevance["dimensions"][len(relevant) - 1], relevance["dimensions"][len(relevant)]
    assert top["median"] > 2 * rest["median"], relevance
    assert all(r["low"] == r["median"] == r["high"] for r in relevance["dimensions"])  # MAP


def test_the_variant_ignores_other_dimensions(space):
    problem = SyntheticPeftProblem(space, noise=0.0, relevant=("sa_size",))
    base = space.configuration(sa_size=8, layers=[1, 0, 0, 0])
    moved = space.configuration(sa_size=8, pa_size=32, layers=[0, 1, 1, 0])
    larger = space.configuration(sa_size=32, layers=[1, 0, 0, 0])
    assert problem.noiseless_score(base) == problem.noiseless_score(moved)
    assert problem.noiseless_score(base) != problem.noiseless_score(larger)
    with pytest.raises(ConfigurationError, match="`relevant`.*'layer_9'"):
        SyntheticPeftProblem(space, relevant=("layer_9",))


def test_one_result_is_not_enough(space):
    problem = SyntheticPeftProblem(space)
    with pytest.raises(ConfigurationError, match="at least 2 completed trials; got 1"):
        fit_relevance(space, _results(problem, 1))


def test_the_searcher_reports_its_nuts_model(make_searcher, driver):
    searcher = make_searcher("autopeft")
    assert searcher.relevance() is None  # no model yet
    driver(searcher).run(7)
    relevance = searcher.relevance()
    assert relevance["source"] == "saas-nuts" and relevance["n_observations"] >= 5
    assert [r["name"] for r in relevance["dimensions"]] != []
    assert any(r["low"] < r["high"] for r in relevance["dimensions"])  # spread over samples
    assert all(r["low"] <= r["median"] <= r["high"] for r in relevance["dimensions"])


def test_a_model_of_another_space_is_refused(space):
    X, Y = torch.rand(4, 3, dtype=torch.float64), torch.rand(4, 1, dtype=torch.float64)
    model = fit_map_score_model(X, Y, seed=0)
    with pytest.raises(
        ConfigurationError, match="of 7 inputs, one per dimension.*got .a model of 3 inputs"
    ):
        model_relevance(space, model, source="saas-map", n_observations=4)
