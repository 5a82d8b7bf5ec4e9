"""``run_search``'s checks before Ray starts (the searches themselves run in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft_ray.config import SearchOptions
from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.experiment.search import check_not_moved, run_search
from autopeft_ray.run import RunFolder


@pytest.mark.parametrize("saved", ["runs/rel", "./run", "../x/run"])
def test_a_relative_folder_in_the_options_is_not_resumed(tmp_path, saved):
    with pytest.raises(ConfigurationError, match=r"names its absolute path.*says"):
        check_not_moved(saved, RunFolder(tmp_path))


def test_the_same_folder_by_another_path_resumes(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    real = RunFolder(tmp_path / "real")
    check_not_moved(str(tmp_path / "link"), real)
    check_not_moved(str(tmp_path / "real" / ".." / "real"), real)
    with pytest.raises(ConfigurationError, match="move it back"):
        check_not_moved(str(tmp_path / "elsewhere"), real)


def test_a_bucket_folder_resumes_at_the_same_uri_only(tmp_path):
    """The same bucket and path resumes whatever the endpoint option; another path does not."""
    run = RunFolder("s3://bucket/runs/a?region=us-west-2&endpoint_override=http://127.0.0.1:1")
    check_not_moved("s3://bucket/runs/a?region=us-west-2", run)
    with pytest.raises(ConfigurationError, match="move it back to s3://bucket/runs/b"):
        check_not_moved("s3://bucket/runs/b?region=us-west-2", run)
    with pytest.raises(ConfigurationError, match="move it back"):
        check_not_moved(str(tmp_path / "runs" / "a"), run)


def test_resume_refuses_a_folder_others_can_write_before_ray(tmp_path):
    import ray

    run = RunFolder(tmp_path / "run")
    # Unloadable settings: were the check to pass, the search would fail at once, not run.
    run.write_options(SearchOptions(output=str(run.path), settings=_unloadable()))
    run.tune_dir.mkdir()
    run.tune_dir.chmod(0o777)
    was_running = ray.is_initialized()
    with pytest.raises(ConfigurationError, match=r"cannot be resumed safely.*--trust-run-folder"):
        run_search(SearchOptions(output=str(run.path)), resume=True)
    assert ray.is_initialized() == was_running


def test_a_new_search_into_a_file_fails_first(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(ConfigurationError, match="is a file"):
        run_search(SearchOptions(output=str(target), settings=_unloadable()))


def _unloadable():
    """Settings whose data preparation would fail: the output check must come first."""
    from autopeft_ray.config import TrainingSettings

    return TrainingSettings(task="rte", data_files=str(Path("/no/such/folder")))


@pytest.mark.parametrize(
    ("searcher", "cls"),
    [("autopeft", "AutoPEFTSearcher"), ("ax", "AxPEFTSearcher"), ("random", "RandomPEFTSearcher")],
)
def test_each_searcher_name_builds_its_searcher_with_the_options(searcher, cls):
    from autopeft_ray.experiment.search import make_searcher
    from autopeft_ray.objectives import ParamCost
    from autopeft_ray.space import SearchSpace

    options = SearchOptions(
        searcher=searcher, num_initial=7, nuts=(8, 5, 1), surrogate="saas-map", seed=3
    )
    space = SearchSpace(num_layers=2, hidden_size=8)
    built = make_searcher(options, space, ParamCost(8, 10_000))
    assert type(built).__name__ == cls and built.seed == 3
    if searcher != "random":
        assert (built.num_initial, built.surrogate, built.nuts.warmup_steps) == (7, "saas-map", 8)


def test_background_suggestions_reach_the_autopeft_searcher_only():
    from autopeft_ray.experiment.search import make_searcher
    from autopeft_ray.objectives import ParamCost
    from autopeft_ray.space import SearchSpace

    space = SearchSpace(num_layers=2, hidden_size=8)
    built = make_searcher(SearchOptions(background=True), space, ParamCost(8, 10_000))
    assert built.background and not make_searcher(SearchOptions(), space, built.cost_fn).background
    with pytest.raises(ConfigurationError, match=r"--searcher ax computes its suggestions on"):
        SearchOptions(searcher="ax", background=True)
    assert built.queue_size == 2
    filled = SearchOptions(background=True, fill_with_random=True, concurrency=8)
    eight = make_searcher(filled, space, built.cost_fn)
    assert eight.fill_with_random and eight.queue_size == 8
    with pytest.raises(
        ConfigurationError, match=r"`fill_with_random` .*without `background` there is none"
    ):
        SearchOptions(fill_with_random=True)


def test_make_searcher_passes_cost_input_on_and_other_searchers_refuse_it():
    from autopeft_ray.experiment.search import make_searcher
    from autopeft_ray.objectives import ParamCost
    from autopeft_ray.space import SearchSpace

    space = SearchSpace(num_layers=2, hidden_size=8)
    built = make_searcher(SearchOptions(cost_input=True), space, ParamCost(8, 10_000))
    assert built.cost_input is True and built.get_state()["settings"]["cost_input"] is True
    with pytest.raises(ConfigurationError, match=r"`cost_input` .* --searcher random has no"):
        SearchOptions(searcher="random", cost_input=True)
    with pytest.raises(ConfigurationError, match=r"`cost_input` should be one of True, False"):
        SearchOptions(cost_input="yes")


def test_make_searcher_passes_max_baseline_on_and_other_searchers_refuse_it():
    from autopeft_ray.experiment.search import make_searcher
    from autopeft_ray.objectives import ParamCost
    from autopeft_ray.space import SearchSpace

    space = SearchSpace(num_layers=2, hidden_size=8)
    built = make_searcher(SearchOptions(max_baseline=32), space, ParamCost(8, 10_000))
    assert built.max_baseline == 32 and built.get_state()["settings"]["max_baseline"] == 32
    with pytest.raises(ConfigurationError, match=r"`max_baseline` .* --searcher ax has none"):
        SearchOptions(searcher="ax", max_baseline=32)
    with pytest.raises(ConfigurationError, match=r"`max_baseline` should be a positive integer"):
        SearchOptions(max_baseline=0)


def test_multi_fidelity_needs_the_autopeft_searcher_and_an_early_stopping_scheduler():
    from autopeft_ray.config import TrainingSettings
    from autopeft_ray.experiment.search import make_searcher
    from autopeft_ray.objectives import ParamCost
    from autopeft_ray.space import SearchSpace

    settings = TrainingSettings(num_evaluations=3)
    options = SearchOptions(
        settings=settings, scheduler="asha", surrogate="saas-map", multi_fidelity=True
    )
    built = make_searcher(options, SearchSpace(num_layers=2, hidden_size=8), ParamCost(8, 10_000))
    assert built.multi_fidelity and built.get_state()["settings"]["multi_fidelity"]
    assert SearchOptions.from_dict(options.to_dict()) == options
    with pytest.raises(ConfigurationError, match=r"with --scheduler fifo there are none to fit"):
        SearchOptions(surrogate="saas-map", multi_fidelity=True)
    with pytest.raises(
        ConfigurationError, match=r"`surrogate` .*got 'saas-nuts'. `multi_fidelity` fits a MAP"
    ):
        SearchOptions(
            settings=settings, scheduler="asha", surrogate="saas-nuts", multi_fidelity=True
        )
    with pytest.raises(ConfigurationError, match=r"with --searcher random there are none"):
        SearchOptions(
            settings=settings, searcher="random", scheduler="hyperband", multi_fidelity=True
        )


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ({}, ("saas-nuts", False, False)),
        ({"scheduler": "asha"}, ("saas-map", True, True)),
        ({"scheduler": "hyperband", "cost_input": False}, ("saas-map", True, False)),
        ({"scheduler": "asha", "surrogate": "saas-nuts"}, ("saas-nuts", False, False)),
        ({"scheduler": "asha", "multi_fidelity": False}, ("saas-nuts", False, False)),
        ({"scheduler": "asha", "searcher": "ax"}, ("saas-nuts", False, False)),
        ({"scheduler": "asha", "searcher": "random"}, ("saas-nuts", False, False)),
        ({"surrogate": "saas-map", "cost_input": True}, ("saas-map", False, True)),
    ],
)
def test_a_scheduler_that_stops_trials_defaults_to_fitting_them(given, resolved):
    """Unset, the surrogate, multi_fidelity and cost_input follow the scheduler; given, kept."""
    from autopeft_ray.config import TrainingSettings

    options = SearchOptions(settings=TrainingSettings(num_evaluations=3), **given)
    assert (options.surrogate, options.multi_fidelity, options.cost_input) == resolved
    saved = options.to_dict()
    assert (saved["surrogate"], saved["multi_fidelity"], saved["cost_input"]) == resolved
    assert SearchOptions.from_dict(saved) == options


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("background", True, "--background-suggestions"),
        ("cost_input", True, "--cost-input"),
        ("max_baseline", 32, "--max-baseline"),
    ],
)
def test_autopeft_only_options_name_their_flag_and_the_fix(field, value, flag):
    with pytest.raises(ConfigurationError, match=rf"^`{field}`.* --searcher random .*Use "):
        SearchOptions(searcher="random", **{field: value})
    with pytest.raises(ConfigurationError, match=rf"or drop {flag}\.$"):
        SearchOptions(searcher="random", **{field: value})


@pytest.mark.parametrize(
    "field", ["background", "fill_with_random", "multi_fidelity", "cost_input"]
)
def test_switches_must_be_booleans(field):
    with pytest.raises(
        ConfigurationError, match=rf"^`{field}` should be one of True, False, got 'yes'"
    ):
        SearchOptions(**{field: "yes"})


def test_a_search_whose_every_trial_failed_raises_saying_why(tmp_path):
    from autopeft_ray.exceptions import SearchFailed
    from autopeft_ray.experiment.search import check_something_was_measured
    from autopeft_ray.run import trial_record

    error = tmp_path / "error.txt"
    error.write_text("Traceback (most recent call last):\n  ...\nOverflowError: seed too big\n")
    config = {"sa_size": 8, "pa_size": 0, "pt_length": 0, "layer_0": 1}
    records = [trial_record(t, config, None, "failed", str(error)) for t in ("a", "b")]
    with pytest.raises(SearchFailed, match=r"Every trial of the search failed \(2 of 2\)"):
        check_something_was_measured(records, "runs/x")
    with pytest.raises(SearchFailed, match="OverflowError: seed too big"):
        check_something_was_measured(records, "runs/x")
    done = trial_record("c", config, {"score": 0.7, "param_fraction": 0.1}, "completed")
    check_something_was_measured([*records, done], "runs/x")  # one measured: no error
    check_something_was_measured([], "runs/x")  # nothing ended (interrupted): not this error
