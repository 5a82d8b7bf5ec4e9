"""``search_callbacks``: what a ``Tuner`` of your own adds to be as complete as the CLI."""

from __future__ import annotations

import json
import logging

import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.experiment import MultiObjectiveASHA
from autopeft_ray.objectives import SCORE
from autopeft_ray.objectives.pareto import reference_point_for
from autopeft_ray.run import RunLog, SearchSummary, search_callbacks
from autopeft_ray.searchers import AutoPEFTSearcher, RandomPEFTSearcher
from autopeft_ray.space import SearchSpace
from autopeft_ray.testing.synthetic import SyntheticPeftProblem

SPACE = SearchSpace(num_layers=4, hidden_size=64)
PROBLEM = SyntheticPeftProblem(SPACE, seed=0)
NOTE = "The scheduler stops trials early"


def _notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if NOTE in r.getMessage()]


def test_the_callbacks_are_the_run_log_and_the_summary(tmp_path):
    from ray.tune.search import ConcurrencyLimiter

    searcher = AutoPEFTSearcher(SPACE, PROBLEM.cost, seed=0)
    run_log, summary = search_callbacks(searcher, tmp_path / "run")
    assert isinstance(run_log, RunLog) and isinstance(summary, SearchSummary)
    assert run_log.reference_point == searcher.reference and run_log.searcher is searcher
    assert str(run_log.run) == str(tmp_path / "run")
    # A searcher without a reference point of its own: its space's largest configuration.
    random_searcher = RandomPEFTSearcher(SPACE, cost_fn=PROBLEM.cost, seed=0)
    limited = ConcurrencyLimiter(random_searcher, max_concurrent=2)
    run_log, summary = search_callbacks(limited, tmp_path / "other", reference_point=None)
    assert run_log.reference_point == reference_point_for(SPACE, PROBLEM.cost)
    assert summary.searcher is random_searcher


def test_a_scheduler_that_stops_trials_is_noted_at_the_start_once(caplog):
    from ray.tune.schedulers import FIFOScheduler

    searcher = AutoPEFTSearcher(SPACE, PROBLEM.cost, seed=0)
    with caplog.at_level(logging.WARNING):
        SearchSummary(searcher, FIFOScheduler()).setup(num_samples=8)
        assert _notes(caplog) == []
        summary = SearchSummary(searcher, MultiObjectiveASHA(max_t=4, grace_period=1))
        summary.setup(num_samples=8)
        summary.setup(num_samples=8)  # a resumed search: said once
    (note,) = _notes(caplog)
    assert "multi_fidelity=True" in note and "--multi-fidelity" in note
    # A searcher that fits stopped trials has nothing to say.
    caplog.clear()
    fits_them = AutoPEFTSearcher(
        SPACE, PROBLEM.cost, seed=0, multi_fidelity=True, surrogate="saas-map"
    )
    with caplog.at_level(logging.WARNING):
        SearchSummary(fits_them, MultiObjectiveASHA(max_t=4)).setup(num_samples=8)
    assert _notes(caplog) == []


def test_without_the_callbacks_the_first_stopped_trial_says_it(caplog):
    searcher = AutoPEFTSearcher(SPACE, PROBLEM.cost, seed=0)
    with caplog.at_level(logging.WARNING):
        for i, fidelity in enumerate([4, 1, 1]):
            searcher.suggest(f"t{i}")
            searcher.on_trial_complete(
                f"t{i}", {SCORE: 0.5, "fidelity": fidelity, "target_fidelity": 4}
            )
    assert len(_notes(caplog)) == 1


def make_trainable():
    """A function trainable defined at run time, so Ray ships it by value: it reports the
    synthetic score at fidelities 1..4, without a target (as a user's trainable may)."""

    def trainable(config):
        from ray import tune

        from autopeft_ray.space import SearchSpace
        from autopeft_ray.testing.synthetic import SyntheticPeftProblem

        problem = SyntheticPeftProblem(SearchSpace(num_layers=4, hidden_size=64), seed=0)
        for fidelity in range(1, 5):
            result = problem.evaluate_trial_config(config)
            result.pop("target_fidelity", None)
            tune.report({**result, "fidelity": fidelity})

    return trainable


@pytest.mark.slow
def test_a_plain_tuner_with_the_callbacks_is_exported_to_ax(ray_session, tmp_path):
    from ax.api.client import Client
    from ray import tune

    from autopeft_ray.experiment.insight import export_ax

    searcher = RandomPEFTSearcher(SPACE, cost_fn=PROBLEM.cost, seed=0, max_t=4)
    scheduler = MultiObjectiveASHA(max_t=4, grace_period=1, reduction_factor=2)
    tuner = tune.Tuner(
        make_trainable(),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, metric=SCORE, mode="max", num_samples=6
        ),
        run_config=tune.RunConfig(
            name="plain",
            storage_path=str(tmp_path),
            verbose=0,
            callbacks=search_callbacks(searcher, tmp_path / "run", scheduler=scheduler),
        ),
    )
    results = tuner.fit()
    assert len(results) == 6 and not results.errors
    # The run log recorded every trial, with the searcher's rule for its status.
    records = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").open()]
    assert len(records) == 6
    statuses = {r["trial_id"]: r["status"] for r in records}
    by_searcher = {r.trial_id: r.status for r in searcher.records}
    assert statuses == by_searcher
    # Ax takes the ResultGrid, the Tune folder and the run folder, given the space.
    for source in (results, tmp_path / "plain", tmp_path / "run"):
        path = export_ax(source, tmp_path / "ax" / "experiment.json", space=SPACE, max_t=4)
        client = Client.load_from_json_file(str(path))
        assert len(client._experiment.trials) == 6  # noqa: SLF001
    with pytest.raises(ConfigurationError, match="`space`.*SearchSpace.from_model_config"):
        export_ax(tmp_path / "plain")
