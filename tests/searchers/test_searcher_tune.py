"""The searchers inside a real Ray Tune run (2 CPUs, synthetic objective)."""

from __future__ import annotations

import pytest

from autopeft_ray.objectives import COMPLETED, PARAM_FRACTION, SCORE
from autopeft_ray.searchers import AutoPEFTSearcher, AxPEFTSearcher, RandomPEFTSearcher

pytestmark = pytest.mark.slow


def make_trainable(space_dict):
    """A function trainable defined at run time, so Ray ships it by value."""

    def trainable(config):
        from ray import tune

        from autopeft_ray.space import SearchSpace
        from autopeft_ray.testing.synthetic import SyntheticPeftProblem

        problem = SyntheticPeftProblem(SearchSpace.from_dict(space_dict), seed=0)
        assert config["task"] == "synthetic"  # fixed_config reached the trial
        tune.report(problem.evaluate_trial_config(config))

    return trainable


def test_autopeft_searcher_in_a_tuner(ray_session, space, problem, jax_cache, tmp_path):
    from ray import tune

    searcher = AutoPEFTSearcher(
        space,
        problem.cost,
        num_initial=4,
        nuts_warmup=8,
        nuts_samples=5,
        nuts_thinning=1,
        num_restarts=4,
        raw_samples=64,
        mc_samples=16,
        seed=0,
        fixed_config={"task": "synthetic"},
        jax_cache_dir=jax_cache,
    )
    tuner = tune.Tuner(
        make_trainable(space.to_dict()),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=8,
            max_concurrent_trials=2,
            metric=SCORE,
            mode="max",
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="autopeft", verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 8 and not results.errors
    configs = [space.from_trial_config(r.config).model_key() for r in results]
    assert len(set(configs)) == 8

    # The searcher saw every result: check the state Tune saved for it.
    restored = AutoPEFTSearcher(space, problem.cost, jax_cache_dir=jax_cache)
    restored.restore_from_dir(str(tmp_path / "autopeft"))
    assert len(restored.records) == 8 and restored.pending == {}
    assert all(r.status == COMPLETED for r in restored.records)
    by_config = {r.config.model_key(): r.score for r in restored.records}
    for result in results:
        key = space.from_trial_config(result.config).model_key()
        assert by_config[key] == pytest.approx(result.metrics[SCORE])
    model_steps = [t for t in restored.timings if "fit_s" in t]
    assert len(model_steps) == 4 and all(t["fallback"] is None for t in model_steps)


def test_random_searcher_with_tune_run(ray_session, space, problem, tmp_path):
    from ray import tune

    searcher = RandomPEFTSearcher(
        space, cost_fn=problem.cost, seed=1, fixed_config={"task": "synthetic"}
    )
    analysis = tune.run(
        make_trainable(space.to_dict()),
        search_alg=searcher,
        num_samples=5,
        max_concurrent_trials=2,
        metric=SCORE,
        mode="max",
        storage_path=str(tmp_path),
        name="random",
        verbose=0,
    )
    assert len(analysis.trials) == 5
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    restored = RandomPEFTSearcher(space, cost_fn=problem.cost)
    restored.restore_from_dir(str(tmp_path / "random"))
    assert len(restored.completed) == 5
    fractions = sorted(t.last_result[PARAM_FRACTION] for t in analysis.trials)
    assert fractions == pytest.approx(sorted(r.param_fraction for r in restored.completed))


def test_param_space_narrows_the_search_and_the_grid_gives_the_pareto_set(
    ray_session, space, problem, jax_cache, tmp_path
):
    from ray import tune

    from autopeft_ray.objectives.pareto import pareto_frame

    searcher = AutoPEFTSearcher(
        space,
        problem.cost,
        num_initial=3,
        nuts_warmup=8,
        nuts_samples=5,
        nuts_thinning=1,
        num_restarts=4,
        raw_samples=64,
        mc_samples=16,
        seed=0,
        fixed_config={"task": "synthetic"},
        jax_cache_dir=jax_cache,
    )
    tuner = tune.Tuner(
        make_trainable(space.to_dict()),
        param_space={"sa_size": tune.choice([0, 8]), "pa_size": tune.randint(0, 3), "layer_0": 1},
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=6, max_concurrent_trials=2, metric=SCORE, mode="max"
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="narrowed", verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 6 and not results.errors
    configs = [r.config for r in results]
    assert {c["sa_size"] for c in configs} <= {0, 8}
    assert {c["pa_size"] for c in configs} <= {0, 1, 2}
    assert all(c["layer_0"] == 1 for c in configs)
    front = pareto_frame(results)
    assert not front.empty and set(front["config/sa_size"]) <= {0, 8}
    best = results.get_best_result(metric=SCORE, mode="max")
    assert best.metrics[SCORE] == max(r.metrics[SCORE] for r in results)


def test_ax_searcher_in_a_tuner(ray_session, space, problem, tmp_path):
    """Ax proposes inside Tune, and the Ax experiment rebuilt from Tune's state matches."""
    from ray import tune

    searcher = AxPEFTSearcher(
        space,
        problem.cost,
        num_initial=3,
        surrogate="saas-map",
        seed=0,
        fixed_config={"task": "synthetic"},
        num_restarts=4,
        raw_samples=64,
    )
    tuner = tune.Tuner(
        make_trainable(space.to_dict()),
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=5, max_concurrent_trials=2, metric=SCORE, mode="max"
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="ax", verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 5 and not results.errors

    restored = AxPEFTSearcher(space, problem.cost, surrogate="saas-map")
    restored.restore_from_dir(str(tmp_path / "ax"))
    assert len(restored.completed) == 5 and restored.pending == {}
    model_steps = [t for t in restored.timings if "total_s" in t]
    assert len(model_steps) == 2 and all(t["fallback"] is None for t in model_steps)
    summary = restored.client.summarize()
    assert sorted(summary["arm_name"]) == sorted(r.metrics["trial_id"] for r in results)
    assert set(summary["trial_status"]) == {"COMPLETED"}
    by_arm = dict(zip(summary["arm_name"], summary[SCORE], strict=True))
    for result in results:
        assert by_arm[result.metrics["trial_id"]] == pytest.approx(result.metrics[SCORE])
