"""Suggestions computed in a background thread (``AutoPEFTSearcher(background=True)``).

Real fits (MAP SAAS on the 4-layer space, seconds each) in a real thread. The
tests hold the worker at a gate to show that ``suggest`` does not wait for it;
timing is left to ``benchmarks/driver_idle.py``.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time

import pytest

from autopeft_ray.exceptions import ConfigurationError
from autopeft_ray.searchers.background import _stop_workers
from autopeft_ray.searchers.saas import SaasProposer

BACKGROUND = {"background": True, "surrogate": "saas-map", "num_initial": 5}


@pytest.fixture(autouse=True)
def no_worker_outlives_its_test():
    """Stop every worker after each test. A worker left computing its queue could
    otherwise call the next test's monkeypatched method (seen under load: an old
    worker took the one planned death of the next test, whose worker then lived)."""
    yield
    _stop_workers()


def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the background worker did not deliver in time"
        time.sleep(0.02)


def suggest_when_ready(run, timeout: float = 120.0):
    """Ask as Tune does, again and again, until the searcher gives a configuration."""
    deadline = time.monotonic() + timeout
    while True:
        config = run.suggest()
        if config is not None:
            return config
        assert time.monotonic() < deadline, "no suggestion in time"
        time.sleep(0.02)


@pytest.fixture
def gate(monkeypatch):
    """Holds every background model step until ``gate.set()``."""
    event = threading.Event()
    original = SaasProposer._model_based

    def gated(self, snapshot, step):
        assert event.wait(120), "test gate never opened"
        return original(self, snapshot, step)

    monkeypatch.setattr(SaasProposer, "_model_based", gated)
    yield event
    event.set()


@pytest.mark.slow
def test_suggest_returns_at_once_while_the_worker_fits(make_searcher, driver, gate):
    searcher = make_searcher("autopeft", **BACKGROUND)
    run = driver(searcher)
    run.run(5, concurrency=5)  # the initial design, on the event loop
    assert searcher._background.worker is None, "random suggestions need no worker"
    assert run.suggest() is None, "the fit is held at the gate: suggest must not wait for it"
    assert searcher._background.worker.queued == 0 and not searcher._background.worker.idle
    gate.set()
    wait_until(lambda: searcher._background.worker.queued == searcher.queue_size)
    first, second = run.suggest(), run.suggest()
    assert isinstance(first, dict) and isinstance(second, dict)
    assert run.suggested[-1].model_key() != run.suggested[-2].model_key()
    model_steps = searcher.timings[-2:]
    assert all(t["background"] and t["fallback"] is None for t in model_steps)
    # The second candidate was computed with the first as pending, in one snapshot.
    assert [t["n_pending"] for t in model_steps] == [0, 1]
    assert searcher.score_model.fitted is not None, "the worker fits the searcher's model"


@pytest.mark.slow
def test_a_background_search_never_repeats_and_learns_from_every_result(
    make_searcher, driver, problem
):
    searcher = make_searcher("autopeft", **BACKGROUND)
    run = driver(searcher)
    run.run(5, concurrency=5)
    while len(run.suggested) < 11:
        if len(run.running) < 2:
            suggest_when_ready(run)
        else:
            run.finish_oldest()
    while run.running:
        run.finish_oldest()
    canonical = [c.model_key() for c in run.suggested]
    assert len(set(canonical)) == len(canonical) == 11
    assert len(searcher.completed) == 11
    background = [t for t in searcher.timings if t.get("background")]
    assert len(background) == 6
    observed = [t["n_observations"] for t in background]
    assert observed == sorted(observed) and observed[-1] > observed[0], (
        f"later candidates must fit later results: {observed}"
    )


@pytest.mark.slow
def test_save_restore_and_pickle_with_a_live_worker(make_searcher, driver, tmp_path):
    searcher = make_searcher("autopeft", **BACKGROUND)
    run = driver(searcher)
    run.run(5, concurrency=5)
    suggest_when_ready(run)
    assert searcher._background.worker is not None
    clone = pickle.loads(pickle.dumps(searcher))  # Tuner pickles its searcher
    assert clone._background.worker is None and clone.background
    searcher.save(str(tmp_path / "state.json"))

    restored = make_searcher("autopeft", **BACKGROUND)
    restored.restore(str(tmp_path / "state.json"))
    assert restored.pending == searcher.pending and restored._background.worker is None
    resumed = driver(restored)
    resumed.running, resumed.counter = list(run.running), run.counter
    resumed.finish_oldest()
    config = suggest_when_ready(resumed)
    seen = {c.model_key() for c in run.suggested}
    assert restored.space.from_trial_config(config).model_key() not in seen
    assert restored.timings[-1]["background"] and restored.timings[-1]["n_observations"] == 6


@pytest.mark.slow
def test_a_failing_fit_in_the_worker_falls_back_to_random(
    make_searcher, driver, monkeypatch, caplog
):
    def broken(self, snapshot, step):
        raise RuntimeError("numerical trouble in the fit")

    monkeypatch.setattr(SaasProposer, "_model_based", broken)
    searcher = make_searcher("autopeft", **BACKGROUND)
    run = driver(searcher)
    run.run(5, concurrency=5)
    with caplog.at_level(logging.ERROR):
        suggest_when_ready(run)
    assert searcher.timings[-1]["fallback"] == "error" and searcher.timings[-1]["background"]
    assert "Model-based step failed; sampling at random instead." in caplog.text
    assert searcher._background.worker.restarts == 0, "a handled failure does not kill the worker"


@pytest.mark.slow
def test_a_dead_worker_is_restarted_and_nothing_repeats(make_searcher, driver, monkeypatch, caplog):
    original = SaasProposer.propose
    deaths = []

    def dies_once(self, snapshot, rng):
        if not deaths:
            deaths.append(1)
            raise KeyError("a bug in the worker")
        return original(self, snapshot, rng)

    monkeypatch.setattr(SaasProposer, "propose", dies_once)
    searcher = make_searcher("autopeft", **BACKGROUND)
    run = driver(searcher)
    run.run(5, concurrency=5)
    with caplog.at_level(logging.WARNING):
        assert run.suggest() is None
        wait_until(searcher._background.worker.died)
        assert isinstance(run.suggest(), dict), "a dead worker: this suggestion is random"
    assert "The background suggestion worker failed" in caplog.text
    assert "died (restart 1); restarting it" in caplog.text
    assert searcher._background.worker.restarts == 1
    config = suggest_when_ready(run)
    assert isinstance(config, dict) and searcher.timings[-1]["background"]
    canonical = [c.model_key() for c in run.suggested]
    assert len(set(canonical)) == len(canonical) == 7


@pytest.mark.slow
def test_fill_with_random_gives_a_free_slot_a_random_configuration_while_the_worker_fits(
    make_searcher, driver, gate
):
    searcher = make_searcher("autopeft", **BACKGROUND, fill_with_random=True)
    run = driver(searcher)
    run.run(5, concurrency=5)
    assert isinstance(run.suggest(), dict), "the fit is held at the gate: a random one"
    assert searcher.timings[-1] == {
        "n_observations": 5,
        "fallback": "none ready",
        "background": True,
    }
    gate.set()
    wait_until(lambda: searcher._background.worker.queued == searcher.queue_size)
    assert isinstance(run.suggest(), dict)
    assert searcher.timings[-1]["fallback"] is None and "total_s" in searcher.timings[-1]
    canonical = [c.model_key() for c in run.suggested]
    assert len(set(canonical)) == len(canonical) == 7


def test_fill_with_random_does_not_wait_for_the_first_results(make_searcher, driver):
    searcher = make_searcher("autopeft", **BACKGROUND, fill_with_random=True)
    run = driver(searcher)
    for _ in range(6):  # 5 random, then no result yet: a random one instead of waiting
        assert isinstance(run.suggest(), dict)
    assert searcher._background.worker is None


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"background": "yes"}, r"`background` should be one of True, False, got 'yes'"),
        ({"queue_size": 0}, r"`queue_size` should be"),
        ({"fill_with_random": True, "background": False}, r"Set `background` too"),
        ({"fill_with_random": 1}, r"`fill_with_random` should be one of True, False"),
    ],
)
def test_bad_background_arguments(make_searcher, overrides, match):
    with pytest.raises(ConfigurationError, match=match):
        make_searcher("autopeft", **overrides)


@pytest.mark.slow
def test_the_process_exits_cleanly_while_the_worker_fits(tmp_path):
    """A daemon thread inside torch at interpreter exit aborted the process (exit 134)."""
    import subprocess
    import sys

    script = tmp_path / "exit_mid_fit.py"
    script.write_text(
        "from autopeft_ray.searchers import AutoPEFTSearcher\n"
        "from autopeft_ray.space import SearchSpace\n"
        "from autopeft_ray.testing.synthetic import SyntheticPeftProblem\n"
        "space = SearchSpace(4, 64)\n"
        "problem = SyntheticPeftProblem(space)\n"
        "searcher = AutoPEFTSearcher(space, problem.cost, num_initial=5, seed=0,\n"
        "    surrogate='saas-map', background=True, jax_cache_dir=None)\n"
        "for i in range(5):\n"
        "    config = searcher.suggest(f't{i}')\n"
        "    searcher.on_trial_complete(f't{i}', problem.evaluate_trial_config(config))\n"
        "assert searcher.suggest('t5') is None  # the fit has started in the background\n"
        "print('exiting')\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exiting" in done.stdout and "terminate called" not in done.stderr
