"""The trainable on a tiny BERT built from a config and the 200-sentence real task, tiny budgets.

Whether training learns is checked on the real offline model elsewhere (the README and
CLI end-to-end runs, the learning tests); here: reports, fidelity, a bit-exact resume.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from autopeft_ray.config import trial_config
from autopeft_ray.exceptions import ConfigurationError, TrialFailedError
from autopeft_ray.objectives import BEST_SCORE, FIDELITY, PARAM_FRACTION, SCORE, TARGET_FIDELITY
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.space import SearchSpace
from autopeft_ray.tasks import prepare_data
from autopeft_ray.trainables import (
    TrainingRun,
    run_training,
    trial_settings,
    with_resources,
)

SPACE = SearchSpace(6, 32)
CONFIG = SPACE.configuration(sa_size=8, pa_size=4, pt_length=2, active_layers=[3, 4, 5])


def _collect(results: list, checkpoints: list | None = None):
    def report(result, folder):
        results.append(result)
        if checkpoints is not None:
            copy = f"{folder}_copy{len(results)}"
            shutil.copytree(folder, copy)
            checkpoints.append(copy)

    return report


def test_reports_both_objectives_and_fidelity(settings):
    results: list = []
    run_training(trial_config(CONFIG, settings), _collect(results))
    assert [r[FIDELITY] for r in results] == [2, 4, 6]
    assert all(r[TARGET_FIDELITY] == 6 for r in results)
    last = results[-1]
    assert 0.0 <= last[SCORE] <= 1.0 and "metric_accuracy" in last
    assert last[BEST_SCORE] == max(r[SCORE] for r in results)
    assert last[PARAM_FRACTION] == pytest.approx(ParamCost.from_model(settings.model)(CONFIG))
    assert last["train_samples_per_second"] > 0 and last["seconds_to_first_step"] > 0
    assert (last["device"], last["precision"]) == ("cpu", "fp32"), "auto is fp32 on a CPU"
    assert "gpu_memory_fraction" not in last, "only a trial on a shared GPU caps its memory"


def test_resume_from_checkpoint_matches_uninterrupted_training(settings, tmp_path):
    config = trial_config(CONFIG, settings)
    straight: list = []
    full_run = run_training(config, _collect(straight))

    class Interrupt(Exception):
        pass

    first: list = []
    saved: list = []

    def stop_after_first(result, folder):
        _collect(first, saved)(result, folder)
        raise Interrupt

    with pytest.raises(Interrupt):
        run_training(config, stop_after_first)
    resumed: list = []
    resumed_run = run_training(config, _collect(resumed), restore_from=saved[0])
    assert [r[FIDELITY] for r in resumed] == [4, 6], "resumed training must not start from zero"
    assert resumed[-1][SCORE] == straight[-1][SCORE]
    for (name, a), (_, b) in zip(
        full_run.model.named_parameters(), resumed_run.model.named_parameters(), strict=True
    ):
        if a.requires_grad:
            torch.testing.assert_close(a, b, msg=f"parameter {name} differs after resume")


def test_nan_loss_ends_the_trial_with_a_clear_error(settings):
    run = TrainingRun(settings, CONFIG, prepare_data(settings))
    with torch.no_grad():
        run.model.classifier.weight.fill_(float("nan"))
    with pytest.raises(
        TrialFailedError, match=r"loss became nan at step 1 .*Lower `learning_rate`"
    ):
        run.train_until(1)


def test_missing_trial_settings_is_a_clear_error():
    with pytest.raises(ConfigurationError, match=r"no TrainingSettings: bind them with"):
        run_training(CONFIG.to_dict(), lambda r, f: None)
    with pytest.raises(ConfigurationError, match=r"Got settings=42"):
        trial_settings(CONFIG.to_dict(), 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"`settings` should be a TrainingSettings"):
        with_resources(cpus=1, settings={"task": "rte"})  # type: ignore[arg-type]


def test_settings_in_the_config_win_over_bound_settings(settings):
    bound = settings.replace(seed=1)
    assert trial_settings(CONFIG.to_dict(), bound) is bound
    assert trial_settings(CONFIG.to_dict(), bound.to_dict()) == bound
    per_trial = settings.replace(seed=2)
    assert trial_settings(trial_config(CONFIG, per_trial), bound) == per_trial


@pytest.mark.slow
def test_real_tuner_runs_two_trials(ray_session, settings, tmp_path):
    from ray import tune

    from autopeft_ray.searchers import FixedConfigurations

    short = settings.replace(max_steps=3, num_evaluations=1)
    other = SPACE.configuration(sa_size=0, pa_size=16, pt_length=0, active_layers=[0, 5])
    # CONFIG trains with the bound settings; other with its own, in its config.
    points = [CONFIG.to_dict(), trial_config(other, short.replace(max_steps=2))]
    results = tune.Tuner(
        with_resources(cpus=1, settings=short),
        tune_config=tune.TuneConfig(
            search_alg=FixedConfigurations(points),
            num_samples=2,
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert results.num_errors == 0 and len(results) == 2
    by_steps = {}
    for result in results:
        assert result.metrics["threads"] == 1 and result.checkpoint is not None
        by_steps[result.metrics[FIDELITY]] = result.config
    assert by_steps[3] == CONFIG.to_dict(), "bound settings stay out of the trial config"
    assert SPACE.from_trial_config(by_steps[2]) == other
    fractions = sorted(r.metrics[PARAM_FRACTION] for r in results)
    cost = ParamCost.from_model(settings.model)
    assert fractions == pytest.approx(sorted([cost(CONFIG), cost(other)]))


@pytest.mark.slow
def test_failing_trial_does_not_stop_tune_run(ray_session, settings, tmp_path):
    from ray import tune

    from autopeft_ray.searchers import FixedConfigurations
    from autopeft_ray.trainables import peft_trainable

    short = settings.replace(max_steps=2, num_evaluations=1)
    bad = trial_config("no-such-preset", short)
    good = trial_config(CONFIG, short)
    analysis = tune.run(
        peft_trainable,
        search_alg=FixedConfigurations([bad, good]),
        num_samples=2,
        resources_per_trial={"cpu": 1},
        storage_path=str(tmp_path),
        raise_on_failed_trial=False,
        verbose=0,
    )
    statuses = sorted(t.status for t in analysis.trials)
    assert statuses == ["ERROR", "TERMINATED"]
    errored = next(t for t in analysis.trials if t.status == "ERROR")
    with open(errored.error_file) as f:
        assert "no-such-preset" in f.read()
