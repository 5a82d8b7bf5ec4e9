"""Pareto fronts and hypervolumes: known answers and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives.cost import ParamCost
from autopeft_ray.objectives.pareto import (
    DEFAULT_REFERENCE_POINT,
    ParetoFront,
    hypervolume,
    hypervolume_trace,
    largest_configuration,
    pareto_mask,
    reference_point_for,
)
from autopeft_ray.space import SearchSpace

# (score, param_fraction): score maximised, fraction minimised.
A, B, C = (0.8, 0.2), (0.6, 0.1), (0.5, 0.3)  # C is dominated by A


@pytest.mark.parametrize(
    "points, reference, expected",
    [
        ([A], (0.0, 1.0), 0.8 * 0.8),
        ([A, B], (0.0, 1.0), 0.8 * 0.8 + 0.6 * 0.1),  # B adds the strip 0.1 < f < 0.2
        ([A, B, C], (0.0, 1.0), 0.70),
        ([B, A], (0.5, 0.25), 0.3 * 0.05 + 0.1 * 0.1),
        ([(0.65, 0.1)], (0.7, 0.26), 0.0),  # score below the reference
        ([(0.8, 0.3)], (0.7, 0.26), 0.0),  # fraction above the reference
        ([(0.7, 0.1)], (0.7, 0.26), 0.0),  # on the reference: no area
        ([(0.8, 0.1), (0.65, 0.01)], (0.7, 0.26), 0.1 * 0.16),
        ([], (0.0, 1.0), 0.0),
    ],
)
def test_hypervolume_known_answers(points, reference, expected):
    assert hypervolume(points, reference) == pytest.approx(expected, abs=1e-12)


def test_default_reference_point_is_score_zero_and_full_fine_tuning():
    assert DEFAULT_REFERENCE_POINT == (0.0, 1.0)
    assert hypervolume([A]) == pytest.approx(0.64)


def test_pareto_mask_and_trace_known_answers():
    assert pareto_mask([A, B, C, A]).tolist() == [True, True, False, True]
    assert pareto_mask([]).tolist() == []
    assert hypervolume_trace([C, A, B], (0.0, 1.0)) == pytest.approx([0.35, 0.64, 0.70])


def test_pareto_front_keeps_payloads_cheapest_first():
    front = ParetoFront(reference_point=(0.0, 1.0))
    assert front.add(*A, payload="a") is True
    assert front.add(*C, payload="c") is False
    front.extend([(B[0], B[1], "b")])
    assert len(front) == 3
    assert [m.payload for m in front.members] == ["b", "a"]
    assert front.points.tolist() == [list(B), list(A)]
    assert front.all_points.shape == (3, 2)
    assert front.hypervolume() == pytest.approx(0.70)


@pytest.mark.parametrize(
    "points, reference, match",
    [
        ([(0.5, float("nan"))], (0.0, 1.0), "finite"),
        ([(0.5, 0.1, 3.0)], (0.0, 1.0), "n x 2"),
        ([A], (0.0,), "reference_point"),
        ([A], (0.0, float("inf")), "reference_point"),
    ],
)
def test_bad_input_raises(points, reference, match):
    with pytest.raises(ConfigurationError, match=match):
        hypervolume(points, reference)


def test_reference_point_for_a_space_is_its_largest_configuration():
    space = SearchSpace(num_layers=6, hidden_size=384)
    cost = ParamCost(384, 22_713_216)
    largest = largest_configuration(space)
    assert (largest.sa_size, largest.pa_size, largest.pt_length) == (256, 256, 256)
    assert all(largest.layers)
    assert reference_point_for(space, cost) == (0.0, cost(largest))
    assert reference_point_for(space, cost, score=0.5)[0] == 0.5
    with pytest.raises(ConfigurationError, match="cost_fn"):
        reference_point_for(space, lambda config: 0.0)


# -- properties ---------------------------------------------------------------
REF = (0.0, 1.0)
point = st.tuples(
    st.floats(min_value=-0.2, max_value=1.0, allow_nan=False),
    st.floats(min_value=0.0, max_value=1.2, allow_nan=False),
)
points = st.lists(point, min_size=1, max_size=12)
fraction = st.floats(min_value=0.0, max_value=0.5, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(points=points, index=st.integers(min_value=0), worse=st.tuples(fraction, fraction))
def test_a_dominated_point_never_changes_the_hypervolume(points, index, worse):
    score, frac = points[index % len(points)]
    dominated = (score - worse[0], frac + worse[1])
    before = hypervolume(points, REF)
    assert hypervolume([*points, dominated], REF) == pytest.approx(before, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(points=points, extra=point)
def test_adding_a_point_never_lowers_the_hypervolume(points, extra):
    assert hypervolume([*points, extra], REF) >= hypervolume(points, REF) - 1e-12


@settings(max_examples=40, deadline=None)
@given(points=points)
def test_trace_is_non_decreasing_and_ends_at_the_total(points):
    trace = hypervolume_trace(points, REF)
    assert len(trace) == len(points)
    assert all(b >= a - 1e-12 for a, b in zip(trace, trace[1:], strict=False))
    assert trace[-1] == pytest.approx(hypervolume(points, REF), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(points=points, seed=st.integers(min_value=0, max_value=2**16))
def test_hypervolume_ignores_order_and_is_bounded_by_the_box(points, seed):
    shuffled = list(np.random.default_rng(seed).permutation(np.array(points)))
    value = hypervolume(points, REF)
    assert hypervolume(shuffled, REF) == pytest.approx(value, abs=1e-12)
    best_score = max(max(p[0] for p in points), REF[0])
    assert 0.0 <= value <= (best_score - REF[0]) * (REF[1] - 0.0) + 1e-12


@settings(max_examples=40, deadline=None)
@given(points=points)
def test_points_worse_than_the_reference_contribute_nothing(points):
    outside = [(s, f) for s, f in points if s <= REF[0] or f >= REF[1]]
    inside = [(s, f) for s, f in points if s > REF[0] and f < REF[1]]
    assert hypervolume(points, REF) == pytest.approx(hypervolume(inside, REF), abs=1e-12)
    if outside:
        assert hypervolume(outside, REF) == 0.0


# -- the Pareto set of a Ray Tune run ------------------------------------------------------


def _frame():
    import pandas as pd

    return pd.DataFrame(
        {
            "score": [0.8, 0.7, 0.9, 0.6, float("nan"), 0.95],
            "param_fraction": [0.01, 0.001, 0.05, 0.02, 0.0001, 0.0001],
            "fidelity": [4, 4, 4, 4, 4, 1],
            "target_fidelity": [4, 4, 4, 4, 4, 4],
            "config/sa_size": [8, 1, 64, 16, 0, 2],
        }
    )


def test_pareto_frame_keeps_the_non_dominated_completed_trials():
    from autopeft_ray.objectives.pareto import pareto_frame

    front = pareto_frame(_frame())
    assert front["config/sa_size"].tolist() == [1, 8, 64]  # cheapest first
    with_stopped = pareto_frame(_frame(), completed_only=False)
    assert with_stopped["config/sa_size"].tolist() == [2]  # 0.95 at the lowest cost
    lowest_loss = pareto_frame(
        _frame().assign(loss=lambda f: 1 - f["score"]), metric="loss", mode="min"
    )
    assert lowest_loss["config/sa_size"].tolist() == [1, 8, 64]


def test_pareto_frame_reads_a_result_grid_or_an_analysis():
    from types import SimpleNamespace

    from autopeft_ray.objectives.pareto import pareto_frame

    grid = SimpleNamespace(get_dataframe=_frame)
    analysis = SimpleNamespace(dataframe=_frame)
    assert pareto_frame(grid).equals(pareto_frame(analysis))
    with pytest.raises(ConfigurationError, match="`results` should be a ResultGrid"):
        pareto_frame([1, 2])
    with pytest.raises(ConfigurationError, match="columns 'score' and 'cost'"):
        pareto_frame(_frame(), cost="cost")
