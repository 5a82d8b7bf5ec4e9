"""Multi-objective ASHA: the rung rule, and a real Ray Tune run with it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.experiment.schedulers import (
    MultiObjectiveASHA,
    crowding_distance,
    nondominated_ranks,
    survives,
)


def test_nondominated_ranks_known_answer():
    # maximise both: (3,1),(1,3) front 0; (2,0.5),(0.5,2) front 1; (0,0) front 2
    points = np.array([[3, 1], [1, 3], [2, 0.5], [0.5, 2], [0, 0]], dtype=float)
    assert nondominated_ranks(points).tolist() == [0, 0, 1, 1, 2]


def test_crowding_distance_prefers_isolated_points():
    points = np.array([[0, 3], [1, 2], [1.1, 1.9], [3, 0]], dtype=float)
    d = crowding_distance(points)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] > 0 and d[2] > 0


def test_cheap_configuration_survives_where_score_only_asha_would_stop_it():
    # (score, -fraction): three expensive good trials recorded, one cheap worse trial arrives.
    recorded = [(0.80, -0.10), (0.79, -0.09), (0.78, -0.11)]
    cheap = (0.70, -0.001)
    assert survives(cheap, recorded, rf=3)
    # It would be cut by the score-only quantile rule (below the 67th percentile).
    assert cheap[0] < np.percentile([r[0] for r in recorded], (1 - 1 / 3) * 100)


def test_dominated_trial_is_stopped():
    recorded = [(0.80, -0.01), (0.79, -0.02), (0.78, -0.005)]
    assert not survives((0.60, -0.05), recorded, rf=3)


def test_first_trial_at_a_rung_continues():
    assert survives((0.1, -0.9), [], rf=3)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reduction_factor": 1}, "reduction_factor"),
        ({"grace_period": 0}, "grace_period"),
        ({"max_t": 0}, "max_t"),
        ({"brackets": 0}, "brackets"),
        ({"mode": "up"}, "mode"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigurationError, match=f"`{field}`"):
        MultiObjectiveASHA(**kwargs)


@pytest.mark.slow
def test_real_tuner_stops_dominated_trials_and_keeps_cheap_ones(ray_session, tmp_path):
    from ray import tune

    # (quality, cost): a known Pareto front plus dominated configurations.
    grid = [(0.9, 0.5), (0.6, 0.01), (0.3, 0.6), (0.2, 0.7), (0.8, 0.2), (0.1, 0.9)]

    def trainable(config):
        quality, cost = grid[config["i"]]
        for step in range(1, 5):
            tune.report({"score": quality * step / 4, "param_fraction": cost, "fidelity": step})

    scheduler = MultiObjectiveASHA(max_t=4, grace_period=1, reduction_factor=2)
    results = tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search(list(range(len(grid))))},
        tune_config=tune.TuneConfig(
            scheduler=scheduler, metric="score", mode="max", max_concurrent_trials=1
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    fidelity = {grid[r.config["i"]]: r.metrics["fidelity"] for r in results}
    assert fidelity[(0.6, 0.01)] == 4, "the cheap Pareto-optimal trial must run to the end"
    assert fidelity[(0.9, 0.5)] == 4
    assert min(fidelity.values()) < 4, "some dominated trial must be stopped early"
