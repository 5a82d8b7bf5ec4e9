"""AutoPEFT searcher specifics: what is fitted, pending points, waiting, reference point."""

from __future__ import annotations

import pickle

import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION, SCORE, TARGET_FIDELITY
from autopeft_ray.objectives.pareto import largest_configuration
from autopeft_ray.searchers import AutoPEFTSearcher
from autopeft_ray.space.encoding import canonical_encoding as encode


def encodings(space, configs):
    return {tuple(encode(space, c)) for c in configs}


@pytest.mark.slow
def test_early_stopped_results_are_not_fitted_and_not_proposed_again(
    make_searcher, driver, space, problem
):
    searcher = make_searcher("autopeft", num_initial=5)
    run = driver(searcher)
    for _ in range(5):
        run.suggest()
    stopped = []
    for i in range(5):
        config = run.suggested[i]
        if i % 2:  # stopped by ASHA after 10 of 100 steps
            run.finish_oldest(problem.evaluate(config, fidelity=10))
            stopped.append(config)
        else:
            run.finish_oldest()
    assert len(searcher.completed) == 3 and len(searcher.early_stopped) == 2
    assert all(r.fidelity == 10 and r.target_fidelity == 100 for r in searcher.early_stopped)

    run.suggest()  # first model-based suggestion
    fitted_model = searcher.score_model.fitted[1]
    fitted_X = {tuple(x) for x in fitted_model.train_inputs[0].tolist()}
    assert fitted_X == encodings(space, [r.config for r in searcher.completed])
    assert not fitted_X & encodings(space, stopped)
    assert searcher.timings[-1]["n_observations"] == 3
    assert searcher.timings[-1]["fallback"] is None
    run.run(2, concurrency=3)
    proposed = {c.model_key() for c in run.suggested[5:]}
    assert not proposed & {c.model_key() for c in stopped}


@pytest.mark.slow
def test_concurrent_suggestions_use_pending_points_and_one_fit(make_searcher, driver):
    searcher = make_searcher("autopeft", num_initial=5)
    run = driver(searcher)
    run.run(5, concurrency=5)
    for _ in range(3):
        assert isinstance(run.suggest(), dict)
    model_steps = searcher.timings[-3:]
    assert [t["n_pending"] for t in model_steps] == [0, 1, 2]
    assert all(t["fallback"] is None for t in model_steps)
    # One NUTS fit for the batch: later steps reuse the cached model.
    assert model_steps[1]["fit_s"] < 0.1 and model_steps[2]["fit_s"] < 0.1
    batch = [c.model_key() for c in run.suggested[5:]]
    assert len(set(batch)) == 3
    assert not set(batch) & {c.model_key() for c in run.suggested[:5]}
    assert set(searcher.pending) == {tid for tid, _ in run.running}


@pytest.mark.slow
def test_waits_for_results_before_the_first_model_step(make_searcher, driver):
    searcher = make_searcher("autopeft", num_initial=2)
    run = driver(searcher)
    run.suggest()
    run.suggest()
    run.finish_oldest()
    assert run.suggest() is None  # one result; another trial is still running
    run.finish_oldest()
    assert isinstance(run.suggest(), dict)
    assert len(searcher.timings) == 1 and searcher.timings[0]["n_observations"] == 2


def test_samples_when_nothing_could_arrive(make_searcher, driver):
    searcher = make_searcher("autopeft", num_initial=2)
    run = driver(searcher)
    run.suggest()
    run.suggest()
    run.finish_oldest(error=True)
    run.finish_oldest(error=True)
    assert isinstance(run.suggest(), dict)  # no data and nothing running: random
    assert searcher.timings == []


@pytest.mark.slow
def test_pickles_without_the_fitted_model(make_searcher, driver):
    run = driver(make_searcher("autopeft", num_initial=3))
    run.run(4)
    assert run.searcher.score_model.fitted is not None
    clone = pickle.loads(pickle.dumps(run.searcher))
    assert clone.score_model.fitted is None
    assert clone.records == run.searcher.records


def test_default_reference_point_is_score_zero_and_the_largest_fraction(
    make_searcher, space, problem
):
    searcher = make_searcher("autopeft")
    fraction = problem.cost(largest_configuration(space))
    assert searcher.reference_max == (0.0, -fraction)
    custom = make_searcher("autopeft", reference_point=(0.7, 0.26))
    assert custom.reference_max == (0.7, -0.26)


def test_minimised_metric_needs_a_reference_point(make_searcher):
    with pytest.raises(ConfigurationError, match="reference_point"):
        make_searcher("autopeft", metric="loss", mode="min")
    searcher = make_searcher("autopeft", metric="loss", mode="min", reference_point=(2.0, 0.1))
    assert searcher.reference_max == (-2.0, -0.1)  # loss 2.0 is the worst acceptable
    with pytest.raises(ConfigurationError, match="reference_point"):
        make_searcher("autopeft").set_search_properties("loss", "min", {})


def test_state_records_the_model_settings(make_searcher):
    state = make_searcher("autopeft", nuts_warmup=16).get_state()
    settings = state["settings"]
    assert settings["nuts_warmup"] == 16 and settings["num_initial"] == 5
    assert settings["space"] == {"num_layers": 4, "hidden_size": 64, "variant": "full"}


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"cost_fn": None}, "cost_fn"),
        ({"num_initial": -1}, "num_initial"),
        ({"nuts_warmup": 0}, "nuts_warmup"),
        ({"nuts_samples": 4, "nuts_thinning": 8}, "nuts_thinning"),
        ({"num_restarts": 0}, "num_restarts"),
        ({"raw_samples": -1}, "raw_samples"),
        ({"mc_samples": 0}, "mc_samples"),
        ({"reference_point": (0.5,)}, "reference_point"),
        ({"reference_point": (0.5, float("nan"))}, "reference_point"),
        ({"reference_point": (0.5, 0.0)}, "reference_point"),
        ({"pad_multiple": 0}, "pad_multiple"),
        ({"jax_cache_dir": 3}, "jax_cache_dir"),
        ({"cost_fn": lambda config: float("inf")}, "cost_fn"),
    ],
)
def test_bad_model_arguments_raise_clear_errors(make_searcher, overrides, match):
    with pytest.raises(ConfigurationError, match=match):
        make_searcher("autopeft", **overrides)


def test_unknown_keyword_is_not_dropped(space, problem):
    with pytest.raises(TypeError, match="nuts_warmup_steps"):
        AutoPEFTSearcher(space, problem.cost, nuts_warmup_steps=8)


def test_degenerate_duplicates_are_refused_in_points_to_evaluate(make_searcher, space):
    head_only = [
        space.configuration(sa_size=8, layers=[0, 0, 0, 0]),
        space.configuration(layers=[1, 1, 0, 0]),
    ]
    with pytest.raises(ConfigurationError, match="duplicate"):
        make_searcher("autopeft", points_to_evaluate=head_only)


def test_add_evaluated_point_feeds_the_records(make_searcher, space):
    searcher = make_searcher("autopeft")
    config = space.configuration(pa_size=4)
    searcher.add_evaluated_point(config.to_dict(), 0.8)
    searcher.add_evaluated_point(space.configuration(sa_size=2).to_dict(), 0.6, pruned=True)
    assert [r.status for r in searcher.records] == ["completed", "early_stopped"]
    assert searcher.records[0].param_fraction == pytest.approx(searcher.cost_fn(config))
    with pytest.raises(ConfigurationError, match="not yet evaluated"):
        searcher.add_evaluated_point(config.to_dict(), 0.8)


def test_results_report_fraction_from_cost_not_from_the_result(make_searcher, driver, problem):
    searcher = make_searcher("autopeft")
    run = driver(searcher)
    run.suggest()
    config = run.suggested[0]
    run.finish_oldest({SCORE: 0.7, PARAM_FRACTION: 99.0, FIDELITY: 5, TARGET_FIDELITY: 5})
    assert searcher.records[0].param_fraction == pytest.approx(problem.cost(config))
    assert searcher.records[0].score == 0.7


def test_map_surrogate_fits_one_saas_gp_and_proposes_unseen_configurations(
    make_searcher, driver, space
):
    searcher = make_searcher("autopeft", num_initial=6, surrogate="saas-map")
    run = driver(searcher)
    run.run(6, concurrency=1)
    run.run(3, concurrency=2)
    model = searcher.score_model.fitted[1]
    assert type(model).__name__ == "SingleTaskGP" and len(model.train_inputs[0]) >= 6
    assert all(t["fallback"] is None for t in searcher.timings)
    canon = [c.model_key() for c in run.suggested]
    assert len(canon) == len(set(canon)) == 9
    assert searcher.get_state()["settings"]["surrogate"] == "saas-map"


def test_unknown_surrogate_is_rejected_with_the_valid_values(make_searcher):
    with pytest.raises(ConfigurationError, match=r"surrogate.*saas-nuts.*saas-map.*saas-gp"):
        make_searcher("autopeft", surrogate="saas-gp")


def test_map_fits_start_from_the_last_fit_and_a_restore_refits_the_same_model(
    make_searcher, driver
):
    """Each MAP fit starts from the last one's hyperparameters (saved with the state);
    a restored searcher refitting the same data starts where that fit started, so it
    proposes what the searcher it was saved from proposes."""
    searcher = make_searcher("autopeft", num_initial=6, surrogate="saas-map")
    run = driver(searcher)
    run.run(6, concurrency=1)
    run.suggest()  # the first fit: from the prior's defaults
    first = searcher.score_model.map_fit
    assert first["n"] == 6 and first["start"] is None and first["result"]
    run.finish_oldest()
    run.suggest()  # one result more: starts from the first fit's mode
    assert (
        searcher.score_model.map_fit["n"] == 7
        and searcher.score_model.map_fit["start"] == first["result"]
    )

    restored = make_searcher("autopeft", num_initial=6, surrogate="saas-map")
    restored.set_state(pickle.loads(pickle.dumps(searcher.get_state())))
    assert (
        restored.score_model.map_fit == searcher.score_model.map_fit
        and restored.score_model.fitted is None
    )
    assert restored.suggest("next") == searcher.suggest("next")


def test_max_baseline_keeps_the_likeliest_pareto_points_only(space, problem):
    import random

    import torch

    from autopeft_ray.searchers.surrogate import (
        DTYPE,
        KnownCost,
        build_acquisition,
        build_model,
        fit_map_score_model,
    )

    rng = random.Random(0)
    configs = {c.model_key(): c for c in (space.sample(rng) for _ in range(40))}.values()
    X = torch.tensor([encode(space, c) for c in configs], dtype=DTYPE)
    Y = torch.tensor([[problem.score(c)] for c in configs], dtype=DTYPE)
    model = build_model(space, fit_map_score_model(X, Y, seed=0), KnownCost(space, problem.cost))
    reference = (0.0, -1.0)
    kept = build_acquisition(model, reference, X, None, 8, seed=0).X_baseline
    capped = build_acquisition(model, reference, X, None, 8, seed=0, max_baseline=3).X_baseline
    assert len(capped) <= 3 < len(kept)
    assert {tuple(x) for x in capped.tolist()} <= {tuple(x) for x in X.tolist()}
    with pytest.raises(ConfigurationError, match="`max_baseline`"):
        AutoPEFTSearcher(space, problem.cost, max_baseline=0)


def test_an_inferred_reference_is_the_fronts_nadir_moved_out_by_a_tenth(make_searcher, driver):
    from autopeft_ray.searchers.model_based import inferred_reference

    points = [(0.7, 0.01), (0.8, 0.05), (0.6, 0.001), (0.65, 0.02)]  # (0.65, 0.02) dominated
    score, fraction = inferred_reference(points)
    assert score == pytest.approx(0.6 - 0.1 * 0.2) and fraction == pytest.approx(0.05 + 0.1 * 0.049)
    assert inferred_reference(points[:1]) is None
    assert inferred_reference([(-p[0], p[1]) for p in points], "min")[0] == pytest.approx(-0.58)
    searcher = make_searcher("autopeft", reference_point="auto", surrogate="saas-map")
    default = make_searcher("autopeft", surrogate="saas-map").reference
    assert searcher.reference == default  # nothing observed yet
    run = driver(searcher)
    run.run(7, concurrency=2)
    done = [(r.score, r.param_fraction) for r in searcher.completed]
    assert searcher.reference == inferred_reference(done) != default
    assert [t["fallback"] for t in searcher.timings if "total_s" in t] == [None, None]
    with pytest.raises(ConfigurationError, match="`reference_point`.*'auto'"):
        make_searcher("autopeft", reference_point="nadir")
