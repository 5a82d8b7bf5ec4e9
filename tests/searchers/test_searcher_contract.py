"""One contract, every searcher: the Ray Tune Searcher steps driven without Ray.

The AutoPEFT searcher runs here with a tiny NUTS budget and the Ax-backed one
with Ax's MAP SAAS model, each for only a couple of model-based steps; their
model-specific behaviour is in test_autopeft_searcher.py and test_axsearch.py.
"""

from __future__ import annotations

import json
import pickle
import random

import pytest
from ray.tune.search import Searcher

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.objectives import (
    COMPLETED,
    EARLY_STOPPED,
    FAILED,
    FIDELITY,
    PARAM_FRACTION,
    SCORE,
    TARGET_FIDELITY,
)
from autopeft_ray.space import SearchSpace
from autopeft_ray.testing.synthetic import SyntheticPeftProblem

# Runs of 7 trials: 5 random + 2 model-based suggestions for the model-based searchers.
KINDS = [
    pytest.param("random", 7, id="random"),
    pytest.param("autopeft", 7, id="autopeft", marks=pytest.mark.slow),
    pytest.param("ax", 7, id="ax", marks=pytest.mark.slow),
]
# Steps that stay in the random initial design: fast for all.
FAST_KINDS = [
    pytest.param("random", 0, id="random"),
    pytest.param("autopeft", 0, id="autopeft"),
    pytest.param("ax", 0, id="ax"),
]


SA8 = SearchSpace(num_layers=4, hidden_size=64).configuration(sa_size=8).to_dict()


@pytest.fixture(scope="module", params=["full", "full-lora"])
def space(request: pytest.FixtureRequest) -> SearchSpace:
    """The paper's space and the one with LoRA: every searcher keeps the contract on both."""
    return SearchSpace(num_layers=4, hidden_size=64, variant=request.param)


@pytest.fixture(scope="module")
def problem(space: SearchSpace) -> SyntheticPeftProblem:
    return SyntheticPeftProblem(space, seed=0)


def canonical_keys(configs):
    return [c.model_key() for c in configs]


@pytest.mark.parametrize("kind, trials", KINDS)
def test_no_configuration_is_suggested_twice(make_searcher, driver, kind, trials):
    run = driver(make_searcher(kind))
    run.run(trials, concurrency=3)
    keys = canonical_keys(run.suggested)
    assert len(run.suggested) == trials
    assert len(set(keys)) == len(keys)
    assert len(run.searcher.completed) == trials
    assert run.searcher.pending == {}


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_fixed_config_is_merged_into_every_trial(make_searcher, driver, kind, trials):
    run = driver(make_searcher(kind, fixed_config={"task": "sst2", "settings": {"epochs": 1}}))
    config = run.suggest()
    assert config["task"] == "sst2" and config["settings"] == {"epochs": 1}
    assert {"sa_size", "pa_size", "pt_length", "layer_0"} <= set(config)


@pytest.mark.parametrize("kind, trials", KINDS)
def test_errored_trial_is_failed_not_pending_and_never_proposed_again(
    make_searcher, driver, kind, trials
):
    run = driver(make_searcher(kind))
    run.suggest()
    failed_config = run.suggested[0]
    failed_id = run.finish_oldest(error=True)
    assert failed_id not in run.searcher.pending
    assert [r.trial_id for r in run.searcher.failed] == [failed_id]
    assert run.searcher.failed[0].status == FAILED
    run.run(trials - 1, concurrency=2)
    assert failed_config.model_key() not in canonical_keys(run.suggested[1:])


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_results_are_classified_by_fidelity(make_searcher, driver, kind, trials):
    searcher = make_searcher(kind, min_fidelity=80)
    run = driver(searcher)
    for _ in range(5):
        run.suggest()
    base = {PARAM_FRACTION: 0.01, TARGET_FIDELITY: 100}
    run.finish_oldest({SCORE: 0.7, FIDELITY: 100, **base})  # full budget
    run.finish_oldest({SCORE: 0.6, FIDELITY: 30, **base})  # stopped by ASHA
    run.finish_oldest({SCORE: 0.65, FIDELITY: 80, **base})  # stopped, >= min_fidelity
    run.finish_oldest({SCORE: float("nan"), FIDELITY: 100, **base})  # diverged
    run.finish_oldest({"loss": 1.0})  # no score at all
    statuses = [r.status for r in searcher.records]
    assert statuses == [COMPLETED, EARLY_STOPPED, COMPLETED, FAILED, FAILED]
    assert [r.score for r in searcher.completed] == [0.7, 0.65]
    assert searcher.early_stopped[0].fidelity == 30


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_without_a_reported_target_the_largest_fidelity_is_the_target(
    make_searcher, driver, kind, trials, caplog
):
    """Ray's own ASHAScheduler(time_attr="fidelity") with a trainable that reports no target."""
    searcher = make_searcher(kind)
    run = driver(searcher)
    for _ in range(4):
        run.suggest()
    run.finish_oldest({SCORE: 0.6, FIDELITY: 1, PARAM_FRACTION: 0.01})
    run.finish_oldest({SCORE: 0.62, FIDELITY: 1, PARAM_FRACTION: 0.01})
    # Nothing went further yet: the largest fidelity seen is the target.
    assert [r.status for r in searcher.records] == [COMPLETED, COMPLETED]
    run.finish_oldest({SCORE: 0.7, FIDELITY: 9, PARAM_FRACTION: 0.01})
    run.finish_oldest({SCORE: 0.65, FIDELITY: 3, PARAM_FRACTION: 0.01})
    statuses = [r.status for r in searcher.records]
    assert statuses == [EARLY_STOPPED, EARLY_STOPPED, COMPLETED, EARLY_STOPPED]
    warnings = [r for r in caplog.records if "not 'target_fidelity'" in r.getMessage()]
    assert len(warnings) == 1 and "largest fidelity seen" in warnings[0].getMessage()


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_max_t_is_the_target_when_none_is_reported(make_searcher, driver, kind, trials, caplog):
    searcher = make_searcher(kind, max_t=9)
    run = driver(searcher)
    for _ in range(2):
        run.suggest()
    run.finish_oldest({SCORE: 0.6, FIDELITY: 1, PARAM_FRACTION: 0.01})
    run.finish_oldest({SCORE: 0.7, FIDELITY: 9, PARAM_FRACTION: 0.01})
    assert [r.status for r in searcher.records] == [EARLY_STOPPED, COMPLETED]
    assert "max_t=9" in caplog.text
    restored = make_searcher(kind, max_t=9)
    restored.set_state(searcher.get_state())
    assert restored.max_fidelity_seen == 9


@pytest.mark.parametrize(
    ("domain", "match"),
    [
        ({"pa_size": "randint(0, 4)"}, r"param_space\['pa_size'\].*not \[3\]"),
        ({"sa_size": "uniform(0, 8)"}, r"param_space\['sa_size'\].*continuous or grid"),
        ({"sa_size": "choice([3, 8])"}, r"param_space\['sa_size'\].*not \[3\]"),
        ({"layer_0": 2}, r"param_space\['layer_0'\].*not \[2\]"),
    ],
)
def test_param_space_narrowing_that_cannot_be_honoured_names_the_key(make_searcher, domain, match):
    import ray.tune

    key, value = next(iter(domain.items()))
    if isinstance(value, str):
        value = eval(f"tune.{value}", {"tune": ray.tune})  # noqa: S307 (test table)
    with pytest.raises(ConfigurationError, match=match):
        make_searcher("random").set_search_properties("score", "max", {key: value})


def test_param_space_narrows_sampling_and_counting(make_searcher, driver, space):
    from ray import tune

    searcher = make_searcher("random")
    narrowing = {"sa_size": tune.choice([0, 8]), "pt_length": 0, "layer_3": 1}
    if space.variant == "full-lora":
        narrowing["lora_rank"] = 0
    searcher.set_search_properties("score", "max", narrowing)
    assert searcher.space.values("sa_size") == (0, 8) and searcher.space.values("pt_length") == (0,)
    run = driver(searcher)
    run.run(40)
    assert {c.sa_size for c in run.suggested} <= {0, 8}
    assert {c.pt_length for c in run.suggested} == {0}
    assert all(c.layers[3] for c in run.suggested)
    # sizes: 2 x 8 x 1 combinations, 15 with a module; layers 0-2 free, 3 on: 8 masks.
    assert searcher.space.num_distinct == 15 * 8 + 1
    with pytest.raises(ConfigurationError, match="already suggested"):
        searcher.set_search_properties("score", "max", {"sa_size": 8})


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_last_result_is_used_when_complete_has_none(make_searcher, driver, kind, trials):
    searcher = make_searcher(kind)
    run = driver(searcher)
    run.suggest()
    trial_id = run.running[0][0]
    searcher.on_trial_result(trial_id, {SCORE: 0.5, FIDELITY: 10, TARGET_FIDELITY: 100})
    searcher.on_trial_result(trial_id, {SCORE: 0.8, FIDELITY: 100, TARGET_FIDELITY: 100})
    run.running.pop(0)
    searcher.on_trial_complete(trial_id, None)
    assert searcher.records[0].status == COMPLETED
    assert searcher.records[0].score == 0.8


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_max_concurrency_returns_none(make_searcher, driver, kind, trials):
    searcher = make_searcher(kind, max_concurrent=2)
    run = driver(searcher)
    assert isinstance(run.suggest(), dict) and isinstance(run.suggest(), dict)
    assert run.suggest() is None
    assert searcher.set_max_concurrency(3) is True
    assert isinstance(run.suggest(), dict)
    with pytest.raises(ConfigurationError, match="max_concurrent"):
        searcher.set_max_concurrency(0)


@pytest.mark.parametrize("kind, trials", KINDS)
def test_save_restore_mid_run_then_continue_identically(
    make_searcher, driver, kind, trials, tmp_path
):
    original = driver(make_searcher(kind))
    original.run(4, concurrency=2)
    original.suggest()
    original.suggest()  # two trials pending at the checkpoint
    path = tmp_path / "searcher-state-x.pkl"
    original.searcher.save(str(path))
    json.loads(path.read_text())  # portable JSON, no pickled objects

    restored = driver(make_searcher(kind, seed=123))  # the seed comes from the state
    restored.searcher.restore(str(path))
    restored.counter = original.counter
    restored.running = list(original.running)
    restored.suggested = list(original.suggested)
    assert restored.searcher.pending == original.searcher.pending
    assert restored.searcher.records == original.searcher.records

    original.run(trials - 6, concurrency=3)
    restored.run(trials - 6, concurrency=3)
    assert restored.suggested == original.suggested
    keys = canonical_keys(restored.suggested)
    assert len(set(keys)) == len(keys) == trials


@pytest.mark.parametrize("kind, trials", KINDS)
def test_same_seed_same_suggestions(make_searcher, driver, kind, trials):
    first, second = driver(make_searcher(kind)), driver(make_searcher(kind))
    first.run(trials, concurrency=2)
    second.run(trials, concurrency=2)
    assert first.suggested == second.suggested
    other = driver(make_searcher(kind, seed=1))
    other.run(3)
    assert other.suggested != first.suggested[:3]


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_points_to_evaluate_come_first(make_searcher, driver, space, kind, trials):
    points = [space.configuration(sa_size=8), space.configuration(pa_size=4).to_dict()]
    run = driver(make_searcher(kind, points_to_evaluate=points))
    run.suggest()
    run.suggest()
    assert run.suggested[0] == points[0]
    assert run.suggested[1] == space.configuration(pa_size=4)


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_search_properties_accept_tune_calls(make_searcher, space, kind, trials):
    searcher = make_searcher(kind)
    assert searcher.set_search_properties(None, None, {}) is True
    assert (searcher.metric, searcher.mode) == (SCORE, "max")
    both = [PARAM_FRACTION, "accuracy"]
    assert searcher.set_search_properties(both, ["min", "max"], space.to_param_space())
    assert (searcher.metric, searcher.mode) == ("accuracy", "max")
    assert searcher.set_search_properties("score", None, {"task": "rte"})
    assert (searcher.metric, searcher.mode) == ("score", "max")


@pytest.mark.parametrize(
    "metric, mode, config, match",
    [
        (["score", PARAM_FRACTION], ["max", "max"], {}, "param_fraction"),
        (["score", "loss", PARAM_FRACTION], ["max", "min", "min"], {}, "one score metric"),
        (["score", PARAM_FRACTION], "max", {}, "mode"),
        ("score", "best", {}, "mode"),
        (PARAM_FRACTION, "min", {}, "known objective"),
        ("score", "max", {"lr": {"grid_search": [1e-3, 1e-4]}}, "lr"),
    ],
)
def test_search_properties_reject_conflicts(make_searcher, metric, mode, config, match):
    with pytest.raises(ConfigurationError, match=match):
        make_searcher("random").set_search_properties(metric, mode, config)


def test_tune_domains_outside_the_peft_keys_are_refused(make_searcher):
    from ray import tune

    with pytest.raises(ConfigurationError, match="learning_rate"):
        make_searcher("random").set_search_properties(
            "score", "max", {"learning_rate": tune.loguniform(1e-5, 1e-3)}
        )
    with pytest.raises(ConfigurationError, match="fixed_config"):
        make_searcher("random", fixed_config={"task": "rte"}).set_search_properties(
            "score", "max", {"task": "sst2"}
        )


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"fixed_config": {"sa_size": 8}}, "fixed_config"),
        ({"fixed_config": {"fn": object()}}, "JSON"),
        ({"fixed_config": ["task"]}, "fixed_config"),
        ({"points_to_evaluate": [dict(SA8, sa_size=3)]}, "sa_size"),
        ({"points_to_evaluate": [SA8, SA8]}, "duplicate"),
        ({"points_to_evaluate": SA8}, "points_to_evaluate"),
        ({"metric": "score", "mode": "maximum"}, "mode"),
        ({"min_fidelity": "high"}, "min_fidelity"),
        ({"cost_fn": 0.5}, "cost_fn"),
    ],
)
@pytest.mark.parametrize("kind", ["random", "autopeft", "ax"])
def test_bad_arguments_raise_clear_errors(make_searcher, kind, overrides, match):
    with pytest.raises(ConfigurationError, match=match):
        make_searcher(kind, **overrides)


def test_bad_space_and_unknown_keyword_are_refused(make_searcher):
    from autopeft_ray.searchers import RandomPEFTSearcher

    with pytest.raises(ConfigurationError, match="space"):
        RandomPEFTSearcher({"num_layers": 4})
    with pytest.raises(TypeError, match="num_initial"):
        make_searcher("random", num_initial=5)  # random search has no initial design


def test_space_exhaustion_reports_finished(driver, problem):
    from autopeft_ray.searchers import RandomPEFTSearcher

    tiny = SearchSpace(num_layers=2, hidden_size=1, variant="sa-layer")  # sizes 0, 1
    searcher = RandomPEFTSearcher(tiny, seed=0)
    assert searcher.space.num_distinct == 4  # 3 layer masks + head only
    configs = []
    for i in range(4):
        config = searcher.suggest(f"t{i}")
        configs.append(tiny.from_trial_config(config).model_key())
        searcher.on_trial_complete(f"t{i}", {SCORE: 0.5})
    assert len(set(configs)) == 4
    assert searcher.suggest("t4") == Searcher.FINISHED


def test_restore_refuses_another_space_or_searcher(make_searcher, tmp_path):
    from autopeft_ray.searchers import RandomPEFTSearcher

    path = tmp_path / "state.json"
    make_searcher("random").save(str(path))
    with pytest.raises(ConfigurationError, match="space"):
        RandomPEFTSearcher(SearchSpace(num_layers=2, hidden_size=64)).restore(str(path))
    with pytest.raises(ConfigurationError, match="RandomPEFTSearcher"):
        make_searcher("autopeft").restore(str(path))
    with pytest.raises(ConfigurationError, match="checkpoint_path"):
        make_searcher("random").restore(str(tmp_path / "missing.json"))


def test_searchers_pickle_for_tuner(make_searcher, driver):
    run = driver(make_searcher("random"))
    run.run(3)
    clone = pickle.loads(pickle.dumps(run.searcher))
    assert clone.records == run.searcher.records


@pytest.mark.parametrize("kind, trials", FAST_KINDS)
def test_restarted_errored_trial_replaces_its_failure(make_searcher, driver, space, kind, trials):
    """Tuner.restore(restart_errored=True) reruns a trial under a new id, unasked."""
    searcher = make_searcher(kind)
    run = driver(searcher)
    run.suggest()
    run.suggest()
    failed_config = run.suggested[0]
    run.finish_oldest(error=True)
    run.finish_oldest()
    flat = {f"config/{k}": v for k, v in failed_config.to_dict().items()}
    searcher.on_trial_complete("new-id", {SCORE: 0.75, "config/task": "rte", **flat})
    assert [r.status for r in searcher.records] == [COMPLETED, COMPLETED]
    assert searcher.records[-1].trial_id == "new-id" and searcher.records[-1].score == 0.75
    # A configuration already completed is not counted twice; unknown results are ignored.
    searcher.on_trial_complete("again", {SCORE: 0.1, "config": run.suggested[1].to_dict()})
    searcher.on_trial_complete("stranger", {SCORE: 0.1})
    assert len(searcher.records) == 2
    # A configuration never seen (run outside the searcher) is recorded and not proposed.
    outside = space.configuration(pt_length=2, active_layers=[3])
    searcher.on_trial_complete("outside", {SCORE: 0.6, "config": outside.to_dict()})
    assert searcher.records[-1].config == outside
    run.run(3)  # still the random design for AutoPEFT: fast
    assert outside.model_key() not in {c.model_key() for c in run.suggested}


# -- candidates: search only among given configurations ---------------------------------


def _pool(space: SearchSpace, count: int) -> list:
    rng = random.Random(5)
    pool: dict = {}
    while len(pool) < count:
        config = space.sample(rng)
        pool.setdefault(config.model_key(), config)
    return list(pool.values())


@pytest.mark.parametrize("kind", ["random", "autopeft", "ax"])
def test_candidates_restrict_every_suggestion_until_finished(
    make_searcher, driver, space, kind, tmp_path
):
    pool = _pool(space, 9)
    extra = {"surrogate": "saas-map"} if kind != "random" else {}
    # A duplicate model counts once.
    searcher = make_searcher(kind, candidates=[*pool, pool[0].to_dict()], **extra)
    assert searcher.num_distinct == 9 and searcher.candidates == pool
    run = driver(searcher)
    run.run(7, concurrency=2)
    path = tmp_path / "state.pkl"
    searcher.save(str(path))
    restored = make_searcher(kind, **extra)
    restored.restore(str(path))
    assert restored.candidates == pool
    run.searcher = restored
    run.run(5, concurrency=2)
    assert run.suggest() == Searcher.FINISHED
    keys = canonical_keys(run.suggested)
    assert len(keys) == len(set(keys)) == 9 and set(keys) == {c.model_key() for c in pool}
    steps = [t for t in restored.timings if "total_s" in t]
    if kind == "autopeft":  # the model chose among the candidates after the initial design
        assert [t["fallback"] for t in steps] == [None] * 4
    if kind == "ax":  # Ax proposed over the space; what ran is the nearest unseen candidate
        assert [t["fallback"] for t in steps] == [None] * 4
        assert any(t["mapped"] for t in steps)
        # Ax's experiment holds the candidates that ran, not its replaced proposals.
        arms = {
            space.from_trial_config(trial.arm.parameters).model_key()
            for trial in restored.client._experiment.trials.values()  # noqa: SLF001
            if trial.status.is_completed
        }
        measured = {r.config.model_key() for r in restored.records if r.status == COMPLETED}
        assert arms == measured and measured <= {c.model_key() for c in pool}


def test_the_nearest_unseen_candidate_stands_for_a_proposal_outside_them(space):
    from autopeft_ray.searchers.proposers import RandomProposer
    from autopeft_ray.space.encoding import canonical_encoding

    pool = _pool(space, 6)
    proposer = RandomProposer(space, pool)
    keys = {c.model_key() for c in pool}
    outside = next(c for c in _pool(space, 60) if c.model_key() not in keys)

    def l1(a, b) -> float:
        pairs = zip(canonical_encoding(space, a), canonical_encoding(space, b), strict=True)
        return sum(abs(x - y) for x, y in pairs)

    nearest = proposer.nearest_unseen_candidate(outside, set())
    assert nearest in pool and l1(nearest, outside) == min(l1(c, outside) for c in pool)
    assert proposer.nearest_unseen_candidate(pool[2], set()) is pool[2]  # a candidate: itself
    assert proposer.nearest_unseen_candidate(pool[2], {pool[2].model_key()}) != pool[2]
    assert proposer.nearest_unseen_candidate(outside, keys) is None  # none left


def test_bad_candidates_name_the_field(make_searcher, space):
    pool = _pool(space, 3)
    outside = _pool(space, 4)[-1]
    with pytest.raises(ConfigurationError, match=r"`points_to_evaluate\[0\]`.*one of `candidates`"):
        make_searcher("random", candidates=pool, points_to_evaluate=[outside])
    with pytest.raises(ConfigurationError, match="`candidates` should be at least one"):
        make_searcher("random", candidates=[])
    with pytest.raises(ConfigurationError, match=r"`candidates\[0\]`"):
        make_searcher("random", candidates=[42])
    with pytest.raises(ConfigurationError, match="`sa_size`"):
        make_searcher("random", candidates=[{**pool[0].to_dict(), "sa_size": 3}])
