"""The default initial design fits Ray budgets, and a search without a model step says so."""

from __future__ import annotations

import logging

import pytest

from autopeft_ray.config import SearchOptions, initial_design_size
from autopeft_ray.run import SearchSummary
from autopeft_ray.searchers import AutoPEFTSearcher
from autopeft_ray.space import SearchSpace

#: MiniLM-L6's full space: 3 sizes and 6 layer bits.
MINILM = SearchSpace(num_layers=6, hidden_size=384)


@pytest.mark.parametrize(
    "space, num_trials, expected",
    [
        (MINILM, None, 10),  # 2 x 9 dimensions, at most a fifth of 50 assumed trials
        (MINILM, 12, 5),  # Ax's floor: a usual num_samples leaves 7 to the model
        (MINILM, 200, 18),  # twice the dimensions
        (SearchSpace(num_layers=12, hidden_size=768), 40, 8),  # a fifth of the trials
        (SearchSpace(num_layers=12, hidden_size=768, variant="sa"), 200, 5),  # 1 dimension
        (MINILM.narrow({"sa_size": [0, 8], "pa_size": [0], "pt_length": [0]}), 200, 14),
    ],
)
def test_initial_design_size_is_scaled_to_the_space_and_the_budget(space, num_trials, expected):
    assert initial_design_size(space, num_trials) == expected


def test_the_searcher_default_follows_the_budget_tune_reports(make_searcher, space):
    searcher = make_searcher("autopeft", num_initial=None)
    assert searcher.num_initial == initial_design_size(space) == 10  # 7 dimensions
    SearchSummary(searcher).setup(num_samples=12, total_num_samples=12)
    assert searcher.num_initial == 5
    # Tune passes num_samples with a param_space too, and a given size wins.
    fresh = make_searcher("autopeft", num_initial=None)
    fresh.set_search_properties("score", "max", {"pt_length": 0}, num_samples=30)
    assert fresh.num_initial == initial_design_size(fresh.space, 30) == 6
    assert make_searcher("autopeft", num_initial=3).num_initial == 3
    # The budget travels with the state.
    restored = make_searcher("autopeft", num_initial=None)
    restored.set_state(searcher.get_state())
    assert restored.num_trials == 12 and restored.num_initial == 5


def test_the_default_is_none_in_one_place(space):
    import inspect

    default = inspect.signature(AutoPEFTSearcher).parameters["num_initial"].default
    options = SearchOptions()
    assert default is None and options.num_initial is None
    assert options.with_initial_design(MINILM).num_initial == initial_design_size(MINILM)
    assert SearchOptions(num_initial=7).with_initial_design(MINILM).num_initial == 7


def test_the_cli_help_says_what_an_unset_initial_design_is(capsys):
    from autopeft_ray.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "unset: twice the searched dimensions, from 5 to 10" in help_text


def test_a_search_without_a_model_step_says_so_once_with_the_fix(make_searcher, driver, caplog):
    searcher = make_searcher("autopeft", num_initial=None)
    summary = SearchSummary(searcher)
    summary.setup(num_samples=4, total_num_samples=4)
    run = driver(searcher)
    run.run(4)
    assert searcher.timings == [] and searcher.num_model_based == 0
    with caplog.at_level(logging.WARNING):
        summary.on_experiment_end([])
    (message,) = [r.getMessage() for r in caplog.records if "model-based" in r.getMessage()]
    assert "all 4 trials were random" in message
    assert "num_initial=5" in message and "4 trials" in message  # what it was, and why
    assert "num_initial=2 for num_samples=4" in message and "--initial 2" in message


def test_a_search_with_a_model_step_ends_quietly(make_searcher, driver, caplog):
    searcher = make_searcher("autopeft", num_initial=2, surrogate="saas-map")
    run = driver(searcher)
    run.run(3, concurrency=1)
    assert searcher.num_model_based == 1
    with caplog.at_level(logging.WARNING):
        SearchSummary(searcher).on_experiment_end([])
    assert not [r for r in caplog.records if "model-based" in r.getMessage()]


def test_too_few_full_results_name_the_multi_fidelity_fix(make_searcher, driver):
    searcher = make_searcher("autopeft", num_initial=2)
    run = driver(searcher)
    for _ in range(3):  # every trial stopped early: nothing to fit, so random draws
        run.suggest()
        run.finish_oldest({"score": 0.5, "fidelity": 1, "target_fidelity": 4})
    message = searcher.search_summary()
    assert message is not None and "0 (0 completed, 3 early stopped, 0 failed)" in message
    assert "multi_fidelity=True" in message and "--multi-fidelity" in message
