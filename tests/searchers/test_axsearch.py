"""The Ax-backed searcher: the Ax experiment mirrors the search, and Ax's faults are contained.

Its Searcher contract (no repeats, failures, save/restore, seeds) is tested
with every searcher in test_searcher_contract.py.
"""

from __future__ import annotations

import logging

import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives import FIDELITY, PARAM_FRACTION, SCORE
from autopeft_ray.searchers import AxPEFTSearcher


def statuses(searcher):
    summary = searcher.client.summarize()
    return dict(zip(summary["arm_name"], summary["trial_status"], strict=True))


def test_the_ax_experiment_holds_every_trial_with_its_status(make_searcher, driver):
    run = driver(make_searcher("ax", num_initial=3))
    run.suggest()
    run.suggest()
    run.suggest()
    failed = run.finish_oldest(error=True)
    early = dict(run.problem.evaluate_trial_config(run.running[0][1]), fidelity=10)
    stopped = run.finish_oldest(result=dict(early, target_fidelity=100))
    assert statuses(run.searcher) == {
        failed: "FAILED",
        stopped: "ABANDONED",
        "trial_0002": "RUNNING",
    }
    run.finish_oldest()
    run.run(2)
    assert statuses(run.searcher)[failed] == "FAILED"
    summary = run.searcher.client.summarize()
    keys = [d.name for d in run.problem.space.dimensions]  # what Ax holds as parameters
    rows = {tuple(int(row[k]) for k in keys): row for _, row in summary.iterrows()}
    assert len(run.searcher.completed) == 3  # trial_0002 and two model-based trials
    for record in run.searcher.completed:
        row = rows[tuple(record.config.to_dict()[k] for k in keys)]
        assert row["trial_status"] == "COMPLETED"
        assert row[SCORE] == pytest.approx(record.score)
        assert row[PARAM_FRACTION] == pytest.approx(record.param_fraction)


def test_model_based_suggestions_come_from_the_ax_node_with_running_trials_pending(
    make_searcher, driver
):
    run = driver(make_searcher("ax", num_initial=3))
    run.run(3)
    run.suggest()  # model-based, stays running
    run.suggest()  # model-based, with the first one pending in Ax
    summary = run.searcher.client.summarize()
    running = summary[summary["trial_status"] == "RUNNING"]
    assert len(running) == 2
    # Each step proposes from a client rebuilt from the records and the running trials
    # (what a restored searcher does too): the newest trial comes from the Ax node, the
    # one it saw pending was attached.
    assert running["generation_node"].iloc[-1] == "SAAS+qLogNEHVI"
    steps = [t for t in run.searcher.timings if "total_s" in t]
    assert [t["n_pending"] for t in steps] == [0, 1]
    assert all(t["fallback"] is None for t in steps)
    # Where the time went, as Ax timed it: a model fit and an acquisition per step.
    for step in steps:
        assert step["fit_s"] > 0 and step["acquisition_s"] > 0
        assert step["fit_s"] + step["acquisition_s"] <= step["total_s"]


def test_the_acquisition_optimiser_settings_reach_ax(make_searcher, driver):
    run = driver(make_searcher("ax", num_initial=2, num_restarts=3, raw_samples=32))
    (spec,) = run.searcher._ax._generation_strategy()._nodes[0].generator_specs
    options = {"optimizer_kwargs": {"num_restarts": 3, "raw_samples": 32}}
    assert spec.generator_gen_kwargs == {"model_gen_options": options}
    run.run(3)  # Ax accepts them: the model step did not fall back
    assert [t["fallback"] for t in run.searcher.timings] == [None]
    assert run.searcher.get_state()["settings"]["raw_samples"] == 32
    default = make_searcher("ax", num_restarts=None, raw_samples=None)
    (spec,) = default._ax._generation_strategy()._nodes[0].generator_specs
    assert spec.generator_gen_kwargs == {}  # Ax's own defaults
    with pytest.raises(ConfigurationError, match="num_restarts"):
        make_searcher("ax", num_restarts=0)


def test_a_status_change_rebuilds_the_experiment(make_searcher, driver):
    """A result later found to be below the target fidelity stops counting as complete."""
    run = driver(make_searcher("ax", num_initial=3))
    run.suggest()
    low = {SCORE: 0.7, FIDELITY: 50}  # no target fidelity reported
    first = run.finish_oldest(result=low)  # no target: the largest fidelity seen (50)
    assert statuses(run.searcher)[first] == "COMPLETED"
    run.suggest()
    full = {SCORE: 0.8, FIDELITY: 100}
    second = run.finish_oldest(result=full)
    assert statuses(run.searcher) == {first: "ABANDONED", second: "COMPLETED"}


@pytest.mark.parametrize("variant", ["sa-layer", "sa"])
def test_an_ablated_space_gives_ax_only_its_searched_keys(driver, variant):
    from autopeft_ray.space import SearchSpace
    from autopeft_ray.testing.synthetic import SyntheticPeftProblem

    space = SearchSpace(num_layers=3, hidden_size=16, variant=variant)
    synthetic = SyntheticPeftProblem(space, seed=0)
    run = driver(AxPEFTSearcher(space, synthetic.cost, num_initial=3, surrogate="saas-map"))
    run.problem = synthetic
    run.run(5)
    assert set(run.searcher.client.summarize().columns) >= {d.name for d in space.dimensions}
    assert not {"pa_size", "pt_length"} & set(run.searcher.client.summarize().columns)
    # Both model steps ran Ax on the ablated space without an error (an error is
    # logged without "total_s"). In a space this small Ax may offer only seen
    # configurations ("no unseen candidate", then a random one): numerics differ
    # between CPUs, so which step does that is not fixed.
    steps = [t for t in run.searcher.timings if "total_s" in t]
    assert len(steps) == 2
    assert "error" not in {t["fallback"] for t in run.searcher.timings}
    keys = [c.model_key() for c in run.suggested]
    assert len(set(keys)) == 5


def test_a_failing_ax_step_falls_back_to_random_and_is_logged(
    make_searcher, driver, monkeypatch, caplog
):
    from ax.api.client import Client
    from ax.exceptions.core import DataRequiredError

    def broken(self, *args, **kwargs):
        raise DataRequiredError("injected")

    run = driver(make_searcher("ax", num_initial=2))
    run.run(2)
    monkeypatch.setattr(Client, "get_next_trials", broken)
    with caplog.at_level(logging.ERROR, logger="autopeft_ray"):
        assert isinstance(run.suggest(), dict)
    assert "Ax step failed" in caplog.text
    assert run.searcher.timings[-1]["fallback"] == "error"


@pytest.mark.slow
def test_the_nuts_surrogate_proposes(space, problem, driver, jax_cache):
    searcher = AxPEFTSearcher(
        space,
        problem.cost,
        num_initial=3,
        nuts_warmup=8,
        nuts_samples=5,
        nuts_thinning=1,
        seed=0,
        jax_cache_dir=jax_cache,
    )
    run = driver(searcher)
    run.run(4)
    steps = [t for t in searcher.timings if "total_s" in t]
    assert len(steps) == 1 and steps[0]["fallback"] is None


def test_a_minimised_score_needs_a_reference_point(space, problem):
    with pytest.raises(ConfigurationError, match="reference_point"):
        AxPEFTSearcher(space, problem.cost, metric="loss", mode="min")
    searcher = AxPEFTSearcher(
        space, problem.cost, metric="loss", mode="min", reference_point=(2.0, 0.5), num_initial=0
    )
    config = searcher.client._experiment.optimization_config  # noqa: SLF001
    assert "-score, -param_fraction" in str(config.objective)
    assert "score <= 2.0" in str(config.objective_thresholds)
